//! The component catalog beside a store: components saved by content digest
//! (`components/<sha256>.wasm`) and an index of which digest is the current
//! version of each workflow id (`components/index.json`). A second process
//! resumes a run with the exact component the run recorded, and every file
//! is checked against its digest before it is compiled.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use waymark_core::ledger::sha256_hex;
use waymark_runtime::{Workflow, WorkflowLoader};
use waymark_wasm::{StepLimits, WasmEngine};

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    workflows: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub digest: String,
    pub version: String,
    pub source: String,
}

pub struct Catalog {
    dir: PathBuf,
    engine: Arc<WasmEngine>,
    limits: StepLimits,
}

impl Catalog {
    pub fn open(dir: PathBuf, engine: Arc<WasmEngine>, limits: StepLimits) -> Result<Self> {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the component catalog {}", dir.display()))?;
        Ok(Self {
            dir,
            engine,
            limits,
        })
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
        let path = self.index_path();
        let tmp = self.dir.join(".index.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(index)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot replace {}", path.display()))
    }

    fn component_path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}.wasm"))
    }

    /// Loads a component file, saves it in the catalog and makes it the
    /// current version of its workflow id.
    pub fn add_file(&self, path: &Path) -> Result<Arc<dyn Workflow>> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read component {}", path.display()))?;
        let wf = self
            .engine
            .load(&bytes, self.limits.clone())
            .with_context(|| format!("cannot load {}", path.display()))?;
        let digest = wf.digest().unwrap_or_default().to_owned();
        let stored = self.component_path(&digest);
        if !stored.exists() {
            let tmp = self.dir.join(format!(".{digest}.tmp"));
            std::fs::write(&tmp, &bytes)?;
            std::fs::rename(&tmp, &stored)?;
        }
        let mut index = self.read_index()?;
        index.workflows.insert(
            wf.info().workflow_id.clone(),
            Entry {
                digest,
                version: wf.info().version.clone(),
                source: path.display().to_string(),
            },
        );
        self.write_index(&index)?;
        Ok(Arc::new(wf))
    }

    pub fn entries(&self) -> Result<Vec<(String, Entry)>> {
        Ok(self.read_index()?.workflows.into_iter().collect())
    }

    fn load_digest(&self, digest: &str) -> Result<Option<Arc<dyn Workflow>>> {
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
        let wf = self
            .engine
            .load(&bytes, self.limits.clone())
            .with_context(|| format!("cannot load {}", path.display()))?;
        Ok(Some(Arc::new(wf)))
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
        self.load_digest(&digest).map_err(|e| format!("{e:#}"))
    }
}
