//! The component catalog beside a store: components saved by content digest
//! (`components/<sha256>.wasm`), the manifest of the bundle each came from
//! (`components/<sha256>.bundle.toml`, absent for a bare component), and an
//! index of which digest is the current version of each workflow id
//! (`components/index.json`). A second process resumes a run with the exact
//! component the run recorded, under the rights its bundle asked for and the
//! current policy allows; every file is checked against its digest before it
//! is compiled.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use waymark_bundle::{Bundle, Manifest};
use waymark_core::ledger::sha256_hex;
use waymark_loader::{LoadedWorkflow, Loader};
use waymark_runtime::{Workflow, WorkflowLoader};

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    workflows: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub digest: String,
    pub version: String,
    pub source: String,
    /// `id@version` of the bundle it came from; none for a bare component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
}

pub struct Catalog {
    dir: PathBuf,
    loader: Loader,
}

impl Catalog {
    pub fn open(dir: PathBuf, loader: Loader) -> Result<Self> {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the component catalog {}", dir.display()))?;
        Ok(Self { dir, loader })
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join("index.json")
    }

    fn read_index(&self) -> Result<Index> {
        let path = self.index_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("component index {} is corrupt", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    fn write_index(&self, index: &Index) -> Result<()> {
        write_atomic(
            &self.dir,
            &self.index_path(),
            &serde_json::to_vec_pretty(index)?,
        )
    }

    fn component_path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}.wasm"))
    }

    /// Loads a bare component file, saves it in the catalog and makes it
    /// the current version of its workflow id.
    pub fn add_file(&self, path: &Path) -> Result<Arc<dyn Workflow>> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read component {}", path.display()))?;
        let loaded = self
            .loader
            .load_component(&bytes)
            .with_context(|| format!("cannot load {}", path.display()))?;
        self.remember(&loaded, &bytes, None, &path.display().to_string())?;
        Ok(loaded.workflow)
    }

    /// Loads every workflow of a verified bundle and records them. Returns
    /// them in manifest order, with the rights refused by the policy.
    pub fn add_bundle(&self, bundle: &Bundle) -> Result<Vec<LoadedWorkflow>> {
        let loaded = self
            .loader
            .load_bundle(bundle)
            .with_context(|| format!("cannot load bundle {}", bundle.source))?;
        let manifest = &bundle.manifest;
        for (entry, wf) in manifest.workflows.iter().zip(&loaded.workflows) {
            let bytes = bundle
                .components
                .get(&entry.component)
                .context("a loaded bundle lost a component")?;
            self.remember(wf, bytes, Some(manifest), &bundle.source.to_string())?;
        }
        Ok(loaded.workflows)
    }

    fn remember(
        &self,
        loaded: &LoadedWorkflow,
        bytes: &[u8],
        manifest: Option<&Manifest>,
        source: &str,
    ) -> Result<()> {
        let wf = &loaded.workflow;
        let digest = wf.digest().unwrap_or_default().to_owned();
        // Content-addressed: an existing file already holds these bytes (and
        // is re-verified against its name whenever it is loaded).
        let component = self.component_path(&digest);
        if !component.exists() {
            write_atomic(&self.dir, &component, bytes)?;
        }
        let manifest_path = self.manifest_path(&digest);
        match manifest {
            Some(m) => write_atomic(&self.dir, &manifest_path, m.to_toml().as_bytes())?,
            None => match std::fs::remove_file(&manifest_path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot remove {}", manifest_path.display()));
                }
            },
        }
        let mut index = self.read_index()?;
        index.workflows.insert(
            wf.info().workflow_id.clone(),
            Entry {
                digest,
                version: wf.info().version.clone(),
                source: source.to_owned(),
                bundle: manifest.map(|m| format!("{}@{}", m.bundle.id, m.bundle.version)),
            },
        );
        self.write_index(&index)
    }

    fn manifest_path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}.bundle.toml"))
    }

    pub fn entries(&self) -> Result<Vec<(String, Entry)>> {
        Ok(self.read_index()?.workflows.into_iter().collect())
    }

    fn load_digest(&self, workflow_id: &str, digest: &str) -> Result<Option<Arc<dyn Workflow>>> {
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("'{digest}' is not a sha256 digest");
        }
        let path = self.component_path(digest);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let actual = sha256_hex(&bytes);
        if actual != digest {
            bail!(
                "component {} is corrupt: its sha256 is {actual}, expected {digest}",
                path.display()
            );
        }
        let manifest_path = self.manifest_path(digest);
        let loaded = match std::fs::read_to_string(&manifest_path) {
            Ok(text) => {
                let manifest = Manifest::parse(&text)
                    .with_context(|| format!("{} is corrupt", manifest_path.display()))?;
                self.loader
                    .load_from_manifest(&manifest, workflow_id, &bytes)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.loader.load_component(&bytes)
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", manifest_path.display()));
            }
        }
        .with_context(|| format!("cannot load {}", path.display()))?;
        Ok(Some(loaded.workflow))
    }
}

impl WorkflowLoader for Catalog {
    fn load(
        &self,
        workflow_id: &str,
        digest: Option<&str>,
    ) -> std::result::Result<Option<Arc<dyn Workflow>>, String> {
        let digest = match digest {
            Some(d) => d.to_owned(),
            None => match self
                .read_index()
                .map_err(|e| format!("{e:#}"))?
                .workflows
                .get(workflow_id)
            {
                Some(entry) => entry.digest.clone(),
                None => return Ok(None),
            },
        };
        self.load_digest(workflow_id, &digest)
            .map_err(|e| format!("{e:#}"))
    }
}

/// Writes `path` by way of a temporary file in `dir` and a rename, so a
/// crash never leaves a half-written component or manifest.
fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
}
