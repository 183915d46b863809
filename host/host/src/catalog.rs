//! The component catalog beside a store: components saved by content digest
//! (`components/<sha256>.wasm`), the manifest of the bundle each came from
//! (`components/<sha256>.bundle.toml`, absent for a bare component), and an
//! index of which digest is the current version of each workflow id and
//! which tool components the current version of each bundle ships
//! (`components/index.json`). A second process resumes a run with the exact
//! component the run recorded, under the rights its bundle asked for and the
//! current policy allows, and offers the tools of the bundles loaded so far;
//! every file is checked against its digest before it is compiled.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use waymark_bundle::{Bundle, Manifest};
use waymark_core::ledger::sha256_hex;
use waymark_loader::{LoadError, LoadedBundle, LoadedTools, LoadedWorkflow, Loader, ToolOrigin};
use waymark_runtime::{LoaderError, Workflow, WorkflowLoader};

use crate::error::CatalogError;

type Result<T, E = CatalogError> = std::result::Result<T, E>;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    workflows: BTreeMap<String, Entry>,
    /// By bundle id: the tool components of its current version.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    tools: BTreeMap<String, ToolBundle>,
}

/// The tool components of one bundle in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolBundle {
    /// The bundle's version these components are from (the current one).
    pub version: String,
    /// Where the bundle was loaded from (its path, or `<memory>`).
    pub source: String,
    /// Its tool components, in manifest order.
    pub components: Vec<ToolComponent>,
}

/// One tool component: where it is in its bundle, its digest, and the
/// names of its tools (so a clash is found without compiling anything).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolComponent {
    /// The component's path in its bundle.
    pub component: String,
    /// sha256 (hex) of its bytes: the file it is kept in.
    pub digest: String,
    /// The names of its tools.
    pub tools: Vec<String>,
}

/// The current version of one workflow id in the catalog.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// sha256 (hex) of its component: the file it is kept in.
    pub digest: String,
    /// The workflow's version, as its component describes it.
    pub version: String,
    /// Where it was loaded from: the component file, or the bundle's path
    /// (`<memory>` for a bundle given as bytes).
    pub source: String,
    /// `id@version` of the bundle it came from; none for a bare component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
}

/// The components beside a store, by digest, with an index of the current
/// version of each workflow id and the tool components of each bundle. As
/// the runtime's [`WorkflowLoader`], it loads a run's exact component under
/// the current policy.
pub struct Catalog {
    dir: PathBuf,
    loader: Loader,
}

impl Catalog {
    /// The catalog in `dir` (created if missing), loading components with
    /// `loader`.
    pub fn open(dir: PathBuf, loader: Loader) -> Result<Self> {
        std::fs::create_dir_all(&dir).map_err(|source| CatalogError::Io {
            action: "create the component catalog",
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir, loader })
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join("index.json")
    }

    fn read_index(&self) -> Result<Index> {
        let path = self.index_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| CatalogError::Corrupt {
                what: format!("component index {}", path.display()),
                source: source.into(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Index::default()),
            Err(source) => Err(io("read", &path, source)),
        }
    }

    /// Reads, changes and rewrites the index under an exclusive lock, so
    /// that concurrent loads (in this process or others) each see the last
    /// one's changes and none is lost. The rewrite is atomic: a crash
    /// leaves the old index or the new one.
    fn update_index<T>(&self, change: impl FnOnce(&mut Index) -> Result<T>) -> Result<T> {
        let lock_path = self.dir.join(".index.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io("open", &lock_path, e))?;
        lock.lock().map_err(|e| io("lock", &lock_path, e))?;
        let mut index = self.read_index()?;
        let out = change(&mut index)?;
        let bytes = serde_json::to_vec_pretty(&index).map_err(|source| CatalogError::Corrupt {
            what: "the component index being written".to_owned(),
            source: source.into(),
        })?;
        write_atomic(&self.dir, &self.index_path(), &bytes)?;
        // Dropping the file releases the lock.
        drop(lock);
        Ok(out)
    }

    fn component_path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}.wasm"))
    }

    /// Loads a bare component file, saves it in the catalog and makes it
    /// the current version of its workflow id.
    pub fn add_file(&self, path: &Path) -> Result<LoadedWorkflow> {
        let bytes = std::fs::read(path).map_err(|e| io("read component", path, e))?;
        let loaded = self
            .loader
            .load_component(&bytes)
            .map_err(|source| CatalogError::Load {
                what: path.display().to_string(),
                source,
            })?;
        let (id, entry) =
            self.store_workflow(&loaded, &bytes, None, &path.display().to_string())?;
        self.update_index(|index| {
            index.workflows.insert(id, entry);
            Ok(())
        })?;
        Ok(loaded)
    }

    /// Loads every workflow and tool component of a verified bundle and
    /// records them: its tools replace those of any earlier version of the
    /// bundle. Refuses, before recording anything, a tool whose name
    /// another bundle in the catalog already offers.
    pub fn add_bundle(&self, bundle: &Bundle) -> Result<LoadedBundle> {
        let loaded = self
            .loader
            .load_bundle(bundle)
            .map_err(|source| CatalogError::Load {
                what: format!("bundle {}", bundle.source),
                source,
            })?;
        let manifest = &bundle.manifest;
        let source = bundle.source.to_string();
        let mut entries = Vec::with_capacity(loaded.workflows.len());
        for (entry, wf) in manifest.workflows.iter().zip(&loaded.workflows) {
            let bytes = bundle.components.get(&entry.component).ok_or_else(|| {
                CatalogError::MissingBundleComponent {
                    bundle: source.clone(),
                    component: entry.component.clone(),
                }
            })?;
            entries.push(self.store_workflow(wf, bytes, Some(manifest), &source)?);
        }
        let mut components = Vec::with_capacity(loaded.tools.len());
        for t in &loaded.tools {
            let bytes = bundle.tool_component(&t.component).ok_or_else(|| {
                CatalogError::MissingBundleComponent {
                    bundle: source.clone(),
                    component: t.component.clone(),
                }
            })?;
            self.store_component(t.digest(), bytes, Some(manifest))?;
            components.push(ToolComponent {
                component: t.component.clone(),
                digest: t.digest().to_owned(),
                tools: t.tools.tools().iter().map(|i| i.name.clone()).collect(),
            });
        }
        // The components are saved; the index makes them current, in one
        // locked update with the check that no other bundle offers its tools.
        self.update_index(|index| {
            check_tool_names(index, &loaded).map_err(|source| CatalogError::Load {
                what: format!("bundle {}", bundle.source),
                source,
            })?;
            index.workflows.extend(entries);
            if components.is_empty() {
                index.tools.remove(&loaded.id);
            } else {
                index.tools.insert(
                    loaded.id.clone(),
                    ToolBundle {
                        version: loaded.version.clone(),
                        source,
                        components,
                    },
                );
            }
            Ok(())
        })?;
        Ok(loaded)
    }

    /// The tool components of every bundle in the catalog, by bundle id.
    pub fn tool_bundles(&self) -> Result<BTreeMap<String, ToolBundle>> {
        Ok(self.read_index()?.tools)
    }

    /// Loads the tool components of one bundle of [`tool_bundles`] under
    /// the current policy; none when the policy refuses the bundle.
    ///
    /// [`tool_bundles`]: Catalog::tool_bundles
    pub fn load_tools(&self, bundle_id: &str, entry: &ToolBundle) -> Result<Vec<LoadedTools>> {
        let mut out = Vec::with_capacity(entry.components.len());
        for c in &entry.components {
            let bytes = self.read_verified(&c.digest)?.ok_or_else(|| {
                CatalogError::MissingToolComponent {
                    bundle: bundle_id.to_owned(),
                    component: c.component.clone(),
                }
            })?;
            let manifest = self.read_manifest(&c.digest)?.ok_or_else(|| {
                io(
                    "read",
                    &self.manifest_path(&c.digest),
                    std::io::ErrorKind::NotFound.into(),
                )
            })?;
            match self
                .loader
                .load_tools_from_manifest(&manifest, &c.component, &bytes)
            {
                Ok(t) => out.push(t),
                Err(LoadError::Denied(_)) => return Ok(Vec::new()),
                Err(source) => {
                    return Err(CatalogError::Load {
                        what: format!("the tools of bundle '{bundle_id}'"),
                        source,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Saves a workflow's component and returns its index entry (not yet
    /// in the index).
    fn store_workflow(
        &self,
        loaded: &LoadedWorkflow,
        bytes: &[u8],
        manifest: Option<&Manifest>,
        source: &str,
    ) -> Result<(String, Entry)> {
        let wf = &loaded.workflow;
        let digest = wf.digest().unwrap_or_default().to_owned();
        self.store_component(&digest, bytes, manifest)?;
        let entry = Entry {
            digest,
            version: wf.info().version.clone(),
            source: source.to_owned(),
            bundle: manifest.map(|m| format!("{}@{}", m.bundle.id, m.bundle.version)),
        };
        Ok((wf.info().workflow_id.clone(), entry))
    }

    /// Saves a component's bytes under its digest, with the manifest of
    /// the bundle it came from (none for a bare component).
    fn store_component(
        &self,
        digest: &str,
        bytes: &[u8],
        manifest: Option<&Manifest>,
    ) -> Result<()> {
        // Content-addressed: an existing file already holds these bytes (and
        // is re-verified against its name whenever it is loaded).
        let component = self.component_path(digest);
        if !component.exists() {
            write_atomic(&self.dir, &component, bytes)?;
        }
        let manifest_path = self.manifest_path(digest);
        match manifest {
            Some(m) => write_atomic(&self.dir, &manifest_path, m.to_toml().as_bytes())?,
            None => match std::fs::remove_file(&manifest_path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("remove", &manifest_path, e)),
            },
        }
        Ok(())
    }

    /// A component's bytes, checked against the digest they are stored
    /// under; none when absent.
    fn read_verified(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(CatalogError::NotADigest(digest.to_owned()));
        }
        let path = self.component_path(digest);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("read", &path, e)),
        };
        let actual = sha256_hex(&bytes);
        if actual != digest {
            return Err(CatalogError::DigestMismatch {
                path,
                actual,
                expected: digest.to_owned(),
            });
        }
        Ok(Some(bytes))
    }

    fn manifest_path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}.bundle.toml"))
    }

    /// Every workflow id in the catalog with its current version, by id.
    pub fn entries(&self) -> Result<Vec<(String, Entry)>> {
        Ok(self.read_index()?.workflows.into_iter().collect())
    }

    /// The current version of `workflow_id` loaded under the policy, with
    /// what it was granted (limits, effects, child workflows) and refused;
    /// none when the catalog has no such workflow.
    pub fn describe(&self, workflow_id: &str) -> Result<Option<LoadedWorkflow>> {
        match self.read_index()?.workflows.get(workflow_id) {
            Some(entry) => self.load_loaded(workflow_id, &entry.digest.clone()),
            None => Ok(None),
        }
    }

    /// The version `digest` of `workflow_id`, loaded under its bundle's
    /// manifest and the policy: a version runs can be moved onto. Refused
    /// when the catalog does not hold the digest or it is another
    /// workflow's component.
    pub fn load_version(&self, workflow_id: &str, digest: &str) -> Result<LoadedWorkflow> {
        let digest = digest.to_ascii_lowercase();
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(CatalogError::NotADigest(digest));
        }
        let not_this = || CatalogError::NotAVersion {
            workflow_id: workflow_id.to_owned(),
            digest: digest.clone(),
        };
        if let Some(manifest) = self.read_manifest(&digest)?
            && manifest.workflow(workflow_id).is_none()
        {
            return Err(not_this());
        }
        let loaded = self
            .load_loaded(workflow_id, &digest)?
            .ok_or_else(|| CatalogError::UnknownVersion(digest.clone()))?;
        if loaded.workflow.info().workflow_id != workflow_id {
            return Err(not_this());
        }
        Ok(loaded)
    }

    fn load_digest(&self, workflow_id: &str, digest: &str) -> Result<Option<Arc<dyn Workflow>>> {
        Ok(self
            .load_loaded(workflow_id, digest)?
            .map(|loaded| loaded.workflow))
    }

    /// The component of `digest`, loaded as `workflow_id` under its bundle's
    /// manifest (if it came in one) and the policy.
    fn load_loaded(&self, workflow_id: &str, digest: &str) -> Result<Option<LoadedWorkflow>> {
        let Some(bytes) = self.read_verified(digest)? else {
            return Ok(None);
        };
        let loaded = match self.read_manifest(digest)? {
            Some(manifest) => self
                .loader
                .load_from_manifest(&manifest, workflow_id, &bytes),
            None => self.loader.load_component(&bytes),
        }
        .map_err(|source| CatalogError::Load {
            what: self.component_path(digest).display().to_string(),
            source,
        })?;
        Ok(Some(loaded))
    }

    /// The manifest of the bundle a component came from; none for a bare
    /// component.
    fn read_manifest(&self, digest: &str) -> Result<Option<Manifest>> {
        let path = self.manifest_path(digest);
        match std::fs::read_to_string(&path) {
            Ok(text) => Manifest::parse(&text)
                .map(Some)
                .map_err(|source| CatalogError::Corrupt {
                    what: path.display().to_string(),
                    source: source.into(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", &path, e)),
        }
    }
}

impl WorkflowLoader for Catalog {
    fn load(
        &self,
        workflow_id: &str,
        digest: Option<&str>,
    ) -> std::result::Result<Option<Arc<dyn Workflow>>, LoaderError> {
        let digest = match digest {
            Some(d) => d.to_owned(),
            None => match self.read_index()?.workflows.get(workflow_id) {
                Some(entry) => entry.digest.clone(),
                None => return Ok(None),
            },
        };
        Ok(self.load_digest(workflow_id, &digest)?)
    }
}

/// A tool of `loaded` that another bundle of the catalog offers is the
/// loader's [`LoadError::DuplicateTool`]. (Its earlier versions do not
/// count: the new one replaces them.)
fn check_tool_names(index: &Index, loaded: &LoadedBundle) -> Result<(), LoadError> {
    for t in &loaded.tools {
        for info in t.tools.tools() {
            let other = index.tools.iter().find_map(|(id, b)| {
                let c = b.components.iter().find(|c| c.tools.contains(&info.name))?;
                (*id != loaded.id).then(|| (id.clone(), c.component.clone()))
            });
            if let Some((bundle, component)) = other {
                return Err(LoadError::DuplicateTool {
                    name: info.name.clone(),
                    first: ToolOrigin::Bundle { bundle, component },
                    second: ToolOrigin::Bundle {
                        bundle: loaded.id.clone(),
                        component: t.component.clone(),
                    },
                });
            }
        }
    }
    Ok(())
}

/// Writes `path` by way of a temporary file in `dir`, an fsync and a rename,
/// so a crash never leaves a half-written file, and the file is durable
/// once this returns. The temporary name is unique to this process and
/// call: concurrent writers of the same path never share one.
fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let unique = NEXT.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{unique}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("write", &tmp, e));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("replace", path, e));
    }
    // The rename itself is durable once the directory is synced.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("sync", dir, e))
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> CatalogError {
    CatalogError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}
