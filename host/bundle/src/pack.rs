//! Writing bundles. The output appears whole or not at all: it is built
//! under a temporary name beside `out` and renamed into place.

use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::archive;
use crate::bundle::{BundleLimits, MANIFEST_FILE, sha256_hex};
use crate::error::{BundleError, PathProblem};
use crate::manifest::{
    BundleInfo, ComponentEntry, Manifest, RequestedCapabilities, RequestedLimits, SCHEMA_VERSION,
    ToolEntry, WorkflowEntry,
};

/// Folder inside a bundle that `pack` puts components in.
pub const COMPONENTS_DIR: &str = "components";

/// What to pack: the bundle's identity, its workflows and its tool
/// components, with the component files they come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackSpec {
    /// The manifest's `[bundle]` table.
    pub bundle: BundleInfo,
    /// The workflows, in manifest order.
    pub workflows: Vec<PackWorkflow>,
    /// The tool components, in manifest order.
    pub tools: Vec<PackTool>,
}

/// A workflow to pack: a [`WorkflowEntry`] whose component is a file on disk
/// rather than a path inside the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackWorkflow {
    /// The workflow id the component must describe.
    pub id: String,
    /// Stored as `components/<file name>`; workflows may share a file.
    pub component_file: PathBuf,
    /// Per-step limits it asks for.
    pub limits: RequestedLimits,
    /// Rights it asks for.
    pub capabilities: RequestedCapabilities,
}

/// A tool component to pack: a [`ToolEntry`] whose component is a file on
/// disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackTool {
    /// Stored as `components/<file name>`, like a workflow's.
    pub component_file: PathBuf,
    /// Per-call limits it asks for.
    pub limits: RequestedLimits,
}

/// Which of the two bundle forms was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleForm {
    /// A bundle directory.
    Directory,
    /// A `.wmb` archive.
    Archive,
}

/// What `pack` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedBundle {
    /// Where it was written (the `out` passed to `pack`).
    pub path: PathBuf,
    /// Whether it is a directory or an archive.
    pub form: BundleForm,
    /// The manifest written, with each component's sha256 and size.
    pub manifest: Manifest,
    /// Same value as [`Bundle::digest`](crate::Bundle::digest) of the result.
    pub digest: String,
    /// Sum of component sizes in bytes.
    pub total_bytes: u64,
}

/// Packs with the default size limits. `out` ending in `.wmb` gives an
/// archive (replacing an existing file); any other name gives a directory,
/// which must not exist yet.
pub fn pack(spec: &PackSpec, out: &Path) -> Result<PackedBundle, BundleError> {
    pack_with(spec, out, &BundleLimits::default())
}

/// [`pack`] with explicit limits.
pub fn pack_with(
    spec: &PackSpec,
    out: &Path,
    limits: &BundleLimits,
) -> Result<PackedBundle, BundleError> {
    let label = out.display().to_string();
    let io_at = |entry: &Path| {
        let entry = entry.display().to_string();
        let label = label.clone();
        move |source| BundleError::Io {
            bundle: label,
            entry,
            source,
        }
    };

    let mut files = Files {
        label: &label,
        limits,
        files: BTreeMap::new(),
        total: 0,
    };
    let mut workflows = Vec::new();
    for w in &spec.workflows {
        workflows.push(WorkflowEntry {
            id: w.id.clone(),
            component: files.add(&w.component_file)?,
            limits: w.limits.clone(),
            capabilities: w.capabilities.clone(),
        });
    }
    let mut tools = Vec::new();
    for t in &spec.tools {
        tools.push(ToolEntry {
            component: files.add(&t.component_file)?,
            limits: t.limits.clone(),
        });
    }
    let Files { files, total, .. } = files;
    let manifest = Manifest {
        schema: SCHEMA_VERSION,
        bundle: spec.bundle.clone(),
        workflows,
        tools,
        components: files
            .iter()
            .map(|(path, (_, data))| {
                let entry = ComponentEntry {
                    sha256: sha256_hex(data),
                    size: Some(data.len() as u64),
                };
                (path.clone(), entry)
            })
            .collect(),
    };
    manifest.validate_in(&label)?;
    let text = manifest.to_toml();

    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let form = if out.extension().is_some_and(|e| e == "wmb") {
        let mut entries: Vec<(&str, &[u8])> = vec![(MANIFEST_FILE, text.as_bytes())];
        entries.extend(files.iter().map(|(p, (_, d))| (p.as_str(), d.as_slice())));
        write_archive_atomically(out, parent, &entries).map_err(io_at(out))?;
        BundleForm::Archive
    } else {
        if out.symlink_metadata().is_ok() {
            return Err(BundleError::OutputExists {
                path: out.to_owned(),
            });
        }
        let mut entries: Vec<(&str, &[u8])> = vec![(MANIFEST_FILE, text.as_bytes())];
        entries.extend(files.iter().map(|(p, (_, d))| (p.as_str(), d.as_slice())));
        write_directory_atomically(out, parent, &entries).map_err(io_at(out))?;
        BundleForm::Directory
    };
    Ok(PackedBundle {
        path: out.to_owned(),
        form,
        digest: sha256_hex(text.as_bytes()),
        manifest,
        total_bytes: total,
    })
}

/// The component files read so far, by their path in the bundle.
struct Files<'a> {
    label: &'a str,
    limits: &'a BundleLimits,
    files: BTreeMap<String, (PathBuf, Vec<u8>)>,
    /// Sum of the sizes of distinct files.
    total: u64,
}

impl Files<'_> {
    /// Reads `file` (once, however many entries share it) and returns its
    /// path in the bundle, `components/<file name>`.
    fn add(&mut self, file: &Path) -> Result<String, BundleError> {
        let name = match file.file_name() {
            None => Err(PathProblem::Empty),
            Some(n) => n.to_str().ok_or(PathProblem::NotUtf8),
        }
        .map_err(|reason| BundleError::UnsafePath {
            bundle: self.label.to_owned(),
            path: file.display().to_string(),
            reason,
        })?;
        let path = format!("{COMPONENTS_DIR}/{name}");
        let data = read_component(file, &path, self.label, self.limits)?;
        match self.files.get(&path) {
            Some((first, existing)) if *existing != data => {
                return Err(BundleError::ComponentNameClash {
                    name: path,
                    first: first.clone(),
                    second: file.to_owned(),
                });
            }
            Some(_) => {}
            None => {
                self.total = self.total.saturating_add(data.len() as u64);
                if self.total > self.limits.total_bytes {
                    return Err(BundleError::BundleTooLarge {
                        bundle: self.label.to_owned(),
                        limit: self.limits.total_bytes,
                    });
                }
                self.files.insert(path.clone(), (file.to_owned(), data));
            }
        }
        Ok(path)
    }
}

fn read_component(
    file: &Path,
    path: &str,
    label: &str,
    limits: &BundleLimits,
) -> Result<Vec<u8>, BundleError> {
    let io = |source| BundleError::Io {
        bundle: label.to_owned(),
        entry: file.display().to_string(),
        source,
    };
    let f = std::fs::File::open(file).map_err(io)?;
    let mut data = Vec::new();
    f.take(limits.component_bytes.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(io)?;
    if data.len() as u64 > limits.component_bytes {
        let size = std::fs::metadata(file).map_or(data.len() as u64, |m| m.len());
        return Err(BundleError::ComponentTooLarge {
            bundle: label.to_owned(),
            path: path.to_owned(),
            size,
            limit: limits.component_bytes,
        });
    }
    Ok(data)
}

fn write_archive_atomically(
    out: &Path,
    parent: &Path,
    entries: &[(&str, &[u8])],
) -> std::io::Result<()> {
    let mut tmp = tempfile::Builder::new()
        .prefix(".waymark-pack-")
        .suffix(".tmp")
        .tempfile_in(parent)?;
    {
        let mut w = BufWriter::new(tmp.as_file_mut());
        archive::write_archive(&mut w, entries)?;
        w.flush()?;
    }
    set_mode(tmp.path(), 0o644)?;
    tmp.as_file().sync_all()?;
    tmp.persist(out).map_err(|e| e.error)?;
    sync_dir(parent)
}

fn write_directory_atomically(
    out: &Path,
    parent: &Path,
    entries: &[(&str, &[u8])],
) -> std::io::Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix(".waymark-pack-")
        .tempdir_in(parent)?;
    for (name, data) in entries {
        let target = tmp.path().join(name);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::File::create(&target)?;
        f.write_all(data)?;
        f.sync_all()?;
        set_mode(&target, 0o644)?;
    }
    for dir in [tmp.path().to_owned(), tmp.path().join(COMPONENTS_DIR)] {
        if dir.is_dir() {
            set_mode(&dir, 0o755)?;
            sync_dir(&dir)?;
        }
    }
    let built = tmp.keep();
    if let Err(e) = std::fs::rename(&built, out) {
        let _ = std::fs::remove_dir_all(&built);
        return Err(e);
    }
    sync_dir(parent)
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

/// Makes a rename durable; directories cannot be opened for syncing on
/// every platform, so only Unix does it.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}
