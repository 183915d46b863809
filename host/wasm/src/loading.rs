//! Loading a workflow component from a file or bytes, cached or not, and linking it.

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use crate::cache::{CacheOutcome, CompileCache};
use crate::engine::{WasmEngine, WasmError};
use crate::limits::{StepLimits, StepState};
use crate::workflow::WasmWorkflow;

impl WasmEngine {
    /// Reads and loads a component file.
    pub fn load_file(
        &self,
        path: impl AsRef<std::path::Path>,
        limits: StepLimits,
    ) -> Result<WasmWorkflow, WasmError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| WasmError::Read {
            path: path.display().to_string(),
            source,
        })?;
        self.load(&bytes, limits)
    }

    /// Compiles, links and describes a component.
    pub fn load(&self, bytes: &[u8], limits: StepLimits) -> Result<WasmWorkflow, WasmError> {
        self.load_cached(bytes, limits, None).map(|(wf, _)| wf)
    }

    /// Like [`load`](Self::load), but takes the compiled code from `cache`
    /// when it holds an authentic entry for this component and this engine
    /// configuration, and stores it there after compiling otherwise. A
    /// damaged, forged or incompatible entry is deleted and recompiled
    /// ([`CacheOutcome::Miss`]); failing to write the cache is logged, not an
    /// error. Without a cache this is `load` ([`CacheOutcome::Disabled`]).
    pub fn load_cached(
        &self,
        bytes: &[u8],
        limits: StepLimits,
        cache: Option<&CompileCache>,
    ) -> Result<(WasmWorkflow, CacheOutcome), WasmError> {
        let (component, digest, outcome) = self.compile(bytes, cache)?;
        let wf = self.link_and_describe(bytes, &component, digest, limits)?;
        Ok((wf, outcome))
    }

    /// Compiles a component, or takes it from `cache` (see
    /// [`load_cached`](Self::load_cached)), with the SHA-256 of its bytes.
    pub(crate) fn compile(
        &self,
        bytes: &[u8],
        cache: Option<&CompileCache>,
    ) -> Result<(Component, String, CacheOutcome), WasmError> {
        let sha = Sha256::digest(bytes);
        let compile = || {
            crate::code_limits::check(bytes, &self.config.code_limits)?;
            match &self.config.compile_process {
                Some(process) => {
                    crate::compile_process::compile(&self.engine, &self.config, process, bytes)
                }
                None => Component::new(&self.engine, bytes)
                    .map_err(|e| WasmError::Compile(format!("{e:#}"))),
            }
        };
        let (component, outcome) = match cache {
            None => (compile()?, CacheOutcome::Disabled),
            Some(cache) => {
                let key = CompileCache::key(&self.engine, &sha.into());
                match cache.get(&self.engine, &key) {
                    Some(component) => (component, CacheOutcome::Hit),
                    None => {
                        let component = compile()?;
                        cache.put(&key, &component);
                        (component, CacheOutcome::Miss)
                    }
                }
            }
        };
        Ok((component, hex::encode(sha), outcome))
    }

    /// Links a compiled component against the host interfaces (shared by
    /// both worlds), checking its imports.
    pub(crate) fn instantiate_pre(
        &self,
        component: &Component,
    ) -> Result<wasmtime::component::InstancePre<StepState>, WasmError> {
        self.linker
            .instantiate_pre(component)
            .map_err(|e| WasmError::Link(format!("{e:#}")))
    }
}
