//! The host library's errors. Each keeps its cause as a `source`, so a
//! caller printing the chain (`{:#}` with anyhow) shows the whole story once.

use std::path::PathBuf;

use waymark_loader::LoadError;

/// A cause of any type: a parse error of a file the catalog keeps, say.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why the component catalog could not do something.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A file or directory of the catalog could not be read or written.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done: `read`, `write`, `lock`, ….
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file of the catalog holds something it cannot parse.
    #[error("{what} is corrupt")]
    Corrupt {
        /// The file, named for a person: `component index <path>`, say.
        what: String,
        #[source]
        source: Cause,
    },
    /// A component or bundle did not load under the current policy.
    #[error("cannot load {what}")]
    Load {
        /// `bundle <source>`, a component path, `the tools of bundle 'x'`.
        what: String,
        #[source]
        source: LoadError,
    },
    /// A digest is not 64 hexadecimal digits.
    #[error("'{0}' is not a sha256 digest")]
    NotADigest(String),
    /// A stored component's bytes do not hash to the digest it is kept
    /// under: the file was changed behind the catalog's back.
    #[error("component {} is corrupt: its sha256 is {actual}, expected {expected}", path.display())]
    DigestMismatch {
        path: PathBuf,
        actual: String,
        expected: String,
    },
    /// The index names a tool component whose file is gone.
    #[error("tool component {component} of bundle '{bundle}' is missing from the catalog")]
    MissingToolComponent { bundle: String, component: String },
    /// A verified bundle does not hold a component its manifest names (the
    /// bundle reader guarantees it does; this is a bug if it happens).
    #[error("bundle {bundle} has no component {component}")]
    MissingBundleComponent { bundle: String, component: String },
}

/// Why the tools of the catalog could not be offered.
#[derive(Debug, thiserror::Error)]
pub enum ToolsError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("cannot offer the catalog's tools")]
    Register(#[source] LoadError),
}

/// Why a host could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The store location is not one this build can open.
    #[error("{0}")]
    Location(String),
    #[error("cannot open {what}")]
    Store {
        /// `store <path>` or `file store <dir>`.
        what: String,
        #[source]
        source: waymark_core::StoreError,
    },
    #[error(transparent)]
    Policy(#[from] waymark_loader::PolicyError),
    #[error("cannot start the WebAssembly engine")]
    Engine(#[source] waymark_wasm::WasmError),
    #[error("cannot find this executable to compile components with")]
    CompileProcess(#[source] std::io::Error),
    #[error("cannot open the compile cache {}", path.display())]
    Cache {
        path: PathBuf,
        #[source]
        source: waymark_wasm::WasmError,
    },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("cannot read the LLM config {}", path.display())]
    LlmConfigRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the LLM config {} is invalid", path.display())]
    LlmConfig {
        path: PathBuf,
        #[source]
        source: waymark_llm::LlmConfigError,
    },
}
