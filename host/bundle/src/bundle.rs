//! Opening a bundle: manifest first, then exactly the listed components,
//! each checked against its size and sha256 before anything is returned.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{Cursor, Read, Seek};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::archive::{self, Kind, TarEntry, TarError};
use crate::error::{BundleError, EntryProblem, PathProblem};
use crate::manifest::{Manifest, RequestedCapabilities, RequestedLimits};
use crate::path::check_entry_path;

/// Name of the manifest at the bundle root.
pub const MANIFEST_FILE: &str = "waymark-bundle.toml";
/// Largest manifest read (1 MiB).
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// Largest component read (256 MiB).
pub const MAX_COMPONENT_BYTES: u64 = 256 << 20;
/// Largest sum of all components (1 GiB).
pub const MAX_TOTAL_BYTES: u64 = 1 << 30;
/// Most entries (headers) read from an archive.
pub const MAX_ARCHIVE_ENTRIES: usize = 10_000;

/// Size limits applied while reading, so that a hostile bundle costs a
/// bounded amount of memory and time. The defaults are the constants above;
/// tests and fuzzing use smaller ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleLimits {
    /// Largest manifest, in bytes.
    pub manifest_bytes: u64,
    /// Largest single component, in bytes.
    pub component_bytes: u64,
    /// Largest sum of all components, in bytes.
    pub total_bytes: u64,
    /// Most entries (headers) read from an archive.
    pub archive_entries: usize,
}

impl Default for BundleLimits {
    fn default() -> Self {
        Self {
            manifest_bytes: MAX_MANIFEST_BYTES,
            component_bytes: MAX_COMPONENT_BYTES,
            total_bytes: MAX_TOTAL_BYTES,
            archive_entries: MAX_ARCHIVE_ENTRIES,
        }
    }
}

/// Where a bundle was read from; errors and reports name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "form", content = "path", rename_all = "snake_case")]
pub enum BundleSource {
    /// A bundle directory at this path.
    Directory(PathBuf),
    /// A `.wmb` file at this path.
    Archive(PathBuf),
    /// Bytes handed to [`Bundle::from_tar_bytes`].
    Memory,
}

impl fmt::Display for BundleSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Directory(p) | Self::Archive(p) => write!(f, "{}", p.display()),
            Self::Memory => f.write_str("<memory>"),
        }
    }
}

/// A bundle whose manifest is valid and whose components all match their
/// recorded size and sha256. Components are not known to be valid wasm:
/// compiling them is the host's job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The validated manifest.
    pub manifest: Manifest,
    /// Component bytes by bundle-relative path (the keys of
    /// `manifest.components`).
    pub components: BTreeMap<String, Vec<u8>>,
    /// Where the bundle was read from.
    pub source: BundleSource,
}

/// A serializable summary for `waymark bundle inspect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleReport {
    /// The bundle id (`[bundle] id`).
    pub id: String,
    /// The bundle version.
    pub version: String,
    /// The manifest's description, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// [`Bundle::digest`].
    pub digest: String,
    /// Where the bundle was read from.
    pub source: BundleSource,
    /// The workflows, in manifest order.
    pub workflows: Vec<WorkflowReport>,
    /// The `[[tools]]` entries (what tools they offer is known only once
    /// the host loads them).
    pub tools: Vec<ToolComponentReport>,
    /// Sum of component sizes in bytes.
    pub total_bytes: u64,
}

/// One workflow in a [`BundleReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkflowReport {
    /// The workflow id.
    pub id: String,
    /// Bundle-relative path of its component.
    pub component: String,
    /// The component's sha256, lowercase hex.
    pub sha256: String,
    /// The component's size in bytes.
    pub size: u64,
    /// The per-step limits it asks for.
    pub limits: RequestedLimits,
    /// The rights it asks for.
    pub capabilities: RequestedCapabilities,
}

/// One tool component in a [`BundleReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolComponentReport {
    /// Bundle-relative path of the component.
    pub component: String,
    /// The component's sha256, lowercase hex.
    pub sha256: String,
    /// The component's size in bytes.
    pub size: u64,
    /// The per-call limits it asks for.
    pub limits: RequestedLimits,
}

impl Bundle {
    /// Opens a bundle directory or `.wmb` archive (told apart by the
    /// filesystem, not by the name) with the default limits.
    pub fn open(path: &Path) -> Result<Bundle, BundleError> {
        Self::open_with(path, &BundleLimits::default())
    }

    /// [`Bundle::open`] with explicit limits.
    pub fn open_with(path: &Path, limits: &BundleLimits) -> Result<Bundle, BundleError> {
        let label = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| BundleError::Io {
            bundle: label.clone(),
            entry: String::new(),
            source,
        })?;
        if meta.is_dir() {
            read_directory(path, &label, limits)
        } else if meta.is_file() {
            let mut file = std::fs::File::open(path).map_err(|source| BundleError::Io {
                bundle: label.clone(),
                entry: String::new(),
                source,
            })?;
            let (manifest, components) = read_archive(&mut file, meta.len(), &label, limits)?;
            Ok(Bundle {
                manifest,
                components,
                source: BundleSource::Archive(path.to_owned()),
            })
        } else {
            Err(BundleError::NotABundle { bundle: label })
        }
    }

    /// Reads a `.wmb` archive held in memory, with the default limits.
    pub fn from_tar_bytes(bytes: &[u8]) -> Result<Bundle, BundleError> {
        Self::from_tar_bytes_with(bytes, &BundleLimits::default())
    }

    /// [`Bundle::from_tar_bytes`] with explicit limits.
    pub fn from_tar_bytes_with(bytes: &[u8], limits: &BundleLimits) -> Result<Bundle, BundleError> {
        let label = BundleSource::Memory.to_string();
        let (manifest, components) =
            read_archive(&mut Cursor::new(bytes), bytes.len() as u64, &label, limits)?;
        Ok(Bundle {
            manifest,
            components,
            source: BundleSource::Memory,
        })
    }

    /// sha256 (lowercase hex) of the canonical manifest text. The manifest
    /// pins every component's sha256, so this names the bundle's whole
    /// content; runs record it to say which bundle they came from.
    pub fn digest(&self) -> String {
        sha256_hex(self.manifest.to_toml().as_bytes())
    }

    /// The component bytes of a workflow.
    pub fn component(&self, workflow_id: &str) -> Option<&[u8]> {
        let w = self.manifest.workflow(workflow_id)?;
        self.components.get(&w.component).map(Vec::as_slice)
    }

    /// The bytes of the tool component at this bundle-relative path, if a
    /// `[[tools]]` entry names it.
    pub fn tool_component(&self, component: &str) -> Option<&[u8]> {
        self.manifest.tool(component)?;
        self.components.get(component).map(Vec::as_slice)
    }

    /// A summary of what the bundle holds and asks for.
    pub fn inspect(&self) -> BundleReport {
        let sha256 = |path: &str| {
            self.manifest
                .components
                .get(path)
                .map(|c| c.sha256.clone())
                .unwrap_or_default()
        };
        let size = |path: &str| self.components.get(path).map_or(0, |c| c.len() as u64);
        let workflows = self
            .manifest
            .workflows
            .iter()
            .map(|w| WorkflowReport {
                id: w.id.clone(),
                component: w.component.clone(),
                sha256: sha256(&w.component),
                size: size(&w.component),
                limits: w.limits.clone(),
                capabilities: w.capabilities.clone(),
            })
            .collect();
        let tools = self
            .manifest
            .tools
            .iter()
            .map(|t| ToolComponentReport {
                component: t.component.clone(),
                sha256: sha256(&t.component),
                size: size(&t.component),
                limits: t.limits.clone(),
            })
            .collect();
        BundleReport {
            id: self.manifest.bundle.id.clone(),
            version: self.manifest.bundle.version.clone(),
            description: self.manifest.bundle.description.clone(),
            digest: self.digest(),
            source: self.source.clone(),
            workflows,
            tools,
            total_bytes: self.components.values().map(|c| c.len() as u64).sum(),
        }
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Compares a component with its manifest entry.
fn verify(label: &str, manifest: &Manifest, path: &str, data: &[u8]) -> Result<(), BundleError> {
    let Some(entry) = manifest.components.get(path) else {
        return Err(BundleError::MissingComponent {
            bundle: label.to_owned(),
            path: path.to_owned(),
        });
    };
    let actual = data.len() as u64;
    if let Some(expected) = entry.size
        && expected != actual
    {
        return Err(BundleError::SizeMismatch {
            bundle: label.to_owned(),
            path: path.to_owned(),
            expected,
            actual,
        });
    }
    let digest = sha256_hex(data);
    if digest != entry.sha256 {
        return Err(BundleError::DigestMismatch {
            bundle: label.to_owned(),
            path: path.to_owned(),
            expected: entry.sha256.clone(),
            actual: digest,
        });
    }
    Ok(())
}

/// Checks one component's size against the limits before it is read.
fn check_sizes(
    label: &str,
    limits: &BundleLimits,
    path: &str,
    size: u64,
    total: &mut u64,
) -> Result<(), BundleError> {
    if size > limits.component_bytes {
        return Err(BundleError::ComponentTooLarge {
            bundle: label.to_owned(),
            path: path.to_owned(),
            size,
            limit: limits.component_bytes,
        });
    }
    *total = total.saturating_add(size);
    if *total > limits.total_bytes {
        return Err(BundleError::BundleTooLarge {
            bundle: label.to_owned(),
            limit: limits.total_bytes,
        });
    }
    Ok(())
}

fn manifest_text(label: &str, bytes: Vec<u8>) -> Result<String, BundleError> {
    String::from_utf8(bytes).map_err(|_| BundleError::ManifestNotUtf8 {
        bundle: label.to_owned(),
    })
}

fn tar_error(label: &str, limits: &BundleLimits, e: TarError) -> BundleError {
    match e {
        TarError::Io(source) => BundleError::Io {
            bundle: label.to_owned(),
            entry: String::new(),
            source,
        },
        TarError::Truncated { offset } => BundleError::TruncatedArchive {
            bundle: label.to_owned(),
            offset,
        },
        TarError::Corrupt { offset, reason } => BundleError::CorruptArchive {
            bundle: label.to_owned(),
            offset,
            reason,
        },
        TarError::TooManyEntries => BundleError::TooManyEntries {
            bundle: label.to_owned(),
            limit: limits.archive_entries,
        },
    }
}

/// Checks every archive entry's name and type, then the manifest, then
/// reads and verifies the listed components.
fn read_archive<R: Read + Seek>(
    r: &mut R,
    len: u64,
    label: &str,
    limits: &BundleLimits,
) -> Result<(Manifest, BTreeMap<String, Vec<u8>>), BundleError> {
    let entries =
        archive::index(r, len, limits.archive_entries).map_err(|e| tar_error(label, limits, e))?;

    // Structure first: names, types, duplicates. Nothing is read yet.
    let mut files: BTreeMap<String, &TarEntry> = BTreeMap::new();
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    for e in &entries {
        let shown = String::from_utf8_lossy(&e.name).into_owned();
        let Ok(name) = std::str::from_utf8(&e.name) else {
            return Err(BundleError::UnsafePath {
                bundle: label.to_owned(),
                path: shown,
                reason: PathProblem::NotUtf8,
            });
        };
        let unexpected = |kind| BundleError::UnexpectedEntry {
            bundle: label.to_owned(),
            entry: shown.clone(),
            kind,
        };
        let bare = match e.kind {
            Kind::Dir => name.strip_suffix('/').unwrap_or(name),
            _ => name,
        };
        check_entry_path(bare).map_err(|reason| BundleError::UnsafePath {
            bundle: label.to_owned(),
            path: shown.clone(),
            reason,
        })?;
        let fresh = match e.kind {
            Kind::File => !dirs.contains(bare) && files.insert(bare.to_owned(), e).is_none(),
            Kind::Dir => {
                if e.size != 0 {
                    return Err(unexpected(EntryProblem::DirectoryWithContent));
                }
                !files.contains_key(bare) && dirs.insert(bare.to_owned())
            }
            Kind::Other(t) => {
                return Err(unexpected(match t {
                    b'1' => EntryProblem::HardLink,
                    b'2' => EntryProblem::Symlink,
                    b'3' | b'4' => EntryProblem::Device,
                    b'6' => EntryProblem::Fifo,
                    t => EntryProblem::UnsupportedType(t),
                }));
            }
        };
        if !fresh {
            return Err(unexpected(EntryProblem::Duplicate));
        }
    }

    // The manifest, parsed and validated before any component is read.
    let Some(m) = files.get(MANIFEST_FILE) else {
        return Err(BundleError::MissingManifest {
            bundle: label.to_owned(),
        });
    };
    if m.size > limits.manifest_bytes {
        return Err(BundleError::ManifestTooLarge {
            bundle: label.to_owned(),
            size: m.size,
            limit: limits.manifest_bytes,
        });
    }
    let text = archive::read_data(r, m.data_offset, m.size, len)
        .map_err(|e| tar_error(label, limits, e))?;
    let manifest = Manifest::parse_in(&manifest_text(label, text)?, label)?;

    // Nothing but the manifest, listed components and their directories.
    for name in files.keys() {
        if name != MANIFEST_FILE && !manifest.components.contains_key(name) {
            return Err(BundleError::UnexpectedEntry {
                bundle: label.to_owned(),
                entry: name.clone(),
                kind: EntryProblem::NotListed,
            });
        }
    }
    for dir in &dirs {
        let holds_component = manifest.components.keys().any(|c| {
            c.strip_prefix(dir.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
        });
        if !holds_component {
            return Err(BundleError::UnexpectedEntry {
                bundle: label.to_owned(),
                entry: format!("{dir}/"),
                kind: EntryProblem::NotListed,
            });
        }
    }

    // Sizes of everything before reading anything.
    let mut total = 0u64;
    for path in manifest.components.keys() {
        let Some(e) = files.get(path) else {
            return Err(BundleError::MissingComponent {
                bundle: label.to_owned(),
                path: path.clone(),
            });
        };
        check_sizes(label, limits, path, e.size, &mut total)?;
    }

    let mut components = BTreeMap::new();
    for path in manifest.components.keys() {
        let Some(e) = files.get(path) else { continue };
        let data = archive::read_data(r, e.data_offset, e.size, len)
            .map_err(|e| tar_error(label, limits, e))?;
        verify(label, &manifest, path, &data)?;
        components.insert(path.clone(), data);
    }
    Ok((manifest, components))
}

/// Reads a bundle directory through a capability handle, so no path can
/// resolve outside it, and refuses symlinks anywhere on a component's path.
/// Only the manifest and the listed components are looked at.
///
/// The checks are made on the files as they are; a directory modified while
/// it is read is not guaranteed to be caught, except that nothing outside the
/// directory is ever opened. Ship `.wmb` archives to hosts you do not control.
fn read_directory(path: &Path, label: &str, limits: &BundleLimits) -> Result<Bundle, BundleError> {
    let io_err = |entry: &str| {
        let entry = entry.to_owned();
        move |source| BundleError::Io {
            bundle: label.to_owned(),
            entry,
            source,
        }
    };
    let dir = cap_std::fs::Dir::open_ambient_dir(path, cap_std::ambient_authority())
        .map_err(io_err(""))?;

    let meta = match dir.symlink_metadata(MANIFEST_FILE) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BundleError::MissingManifest {
                bundle: label.to_owned(),
            });
        }
        Err(e) => return Err(io_err(MANIFEST_FILE)(e)),
    };
    regular_file(label, MANIFEST_FILE, &meta)?;
    if meta.len() > limits.manifest_bytes {
        return Err(BundleError::ManifestTooLarge {
            bundle: label.to_owned(),
            size: meta.len(),
            limit: limits.manifest_bytes,
        });
    }
    let bytes =
        read_bounded(&dir, MANIFEST_FILE, limits.manifest_bytes).map_err(io_err(MANIFEST_FILE))?;
    if bytes.len() as u64 > limits.manifest_bytes {
        return Err(BundleError::ManifestTooLarge {
            bundle: label.to_owned(),
            size: bytes.len() as u64,
            limit: limits.manifest_bytes,
        });
    }
    let manifest = Manifest::parse_in(&manifest_text(label, bytes)?, label)?;

    // Every component's path, type and size before reading any of them.
    let mut total = 0u64;
    for comp in manifest.components.keys() {
        let mut prefix = String::new();
        let segments: Vec<&str> = comp.split('/').collect();
        for (i, seg) in segments.iter().enumerate() {
            if i > 0 {
                prefix.push('/');
            }
            prefix.push_str(seg);
            let meta = match dir.symlink_metadata(&prefix) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(BundleError::MissingComponent {
                        bundle: label.to_owned(),
                        path: comp.clone(),
                    });
                }
                Err(e) => return Err(io_err(&prefix)(e)),
            };
            if i + 1 < segments.len() {
                if meta.file_type().is_symlink() {
                    return Err(BundleError::UnexpectedEntry {
                        bundle: label.to_owned(),
                        entry: prefix.clone(),
                        kind: EntryProblem::Symlink,
                    });
                }
                if !meta.is_dir() {
                    return Err(BundleError::MissingComponent {
                        bundle: label.to_owned(),
                        path: comp.clone(),
                    });
                }
            } else {
                regular_file(label, comp, &meta)?;
                check_sizes(label, limits, comp, meta.len(), &mut total)?;
            }
        }
    }

    let mut components = BTreeMap::new();
    let mut total = 0u64;
    for comp in manifest.components.keys() {
        let data = read_bounded(&dir, comp, limits.component_bytes).map_err(io_err(comp))?;
        check_sizes(label, limits, comp, data.len() as u64, &mut total)?;
        verify(label, &manifest, comp, &data)?;
        components.insert(comp.clone(), data);
    }
    Ok(Bundle {
        manifest,
        components,
        source: BundleSource::Directory(path.to_owned()),
    })
}

fn regular_file(label: &str, entry: &str, meta: &cap_std::fs::Metadata) -> Result<(), BundleError> {
    let ft = meta.file_type();
    if ft.is_file() {
        return Ok(());
    }
    Err(BundleError::UnexpectedEntry {
        bundle: label.to_owned(),
        entry: entry.to_owned(),
        kind: if ft.is_symlink() {
            EntryProblem::Symlink
        } else {
            EntryProblem::NotAFile
        },
    })
}

/// Reads at most `limit + 1` bytes, so the caller can tell "too large" from
/// "exactly at the limit" even if the file grew after it was measured.
fn read_bounded(dir: &cap_std::fs::Dir, path: &str, limit: u64) -> std::io::Result<Vec<u8>> {
    let file = dir.open(path)?;
    let mut buf = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut buf)?;
    Ok(buf)
}
