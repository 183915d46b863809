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
        /// The file or directory.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A file of the catalog holds something it cannot parse.
    #[error("{what} is corrupt")]
    Corrupt {
        /// The file, named for a person: `component index <path>`, say.
        what: String,
        /// Why it does not parse.
        #[source]
        source: Cause,
    },
    /// A component or bundle did not load under the current policy.
    #[error("cannot load {what}")]
    Load {
        /// `bundle <source>`, a component path, `the tools of bundle 'x'`.
        what: String,
        /// Why the loader refused it.
        #[source]
        source: LoadError,
    },
    /// The catalog holds no component with this digest.
    #[error("no component with digest {0} was ever loaded into this catalog")]
    UnknownVersion(String),
    /// The component of a digest is not a version of the workflow named.
    #[error("component {digest} is not a version of workflow '{workflow_id}'")]
    NotAVersion {
        /// The workflow named.
        workflow_id: String,
        /// The digest given.
        digest: String,
    },
    /// A digest is not 64 hexadecimal digits.
    #[error("'{0}' is not a sha256 digest")]
    NotADigest(String),
    /// A stored component's bytes do not hash to the digest it is kept
    /// under: the file was changed behind the catalog's back.
    #[error("component {} is corrupt: its sha256 is {actual}, expected {expected}", path.display())]
    DigestMismatch {
        /// The component's file.
        path: PathBuf,
        /// The sha256 of its bytes.
        actual: String,
        /// The digest it is kept under.
        expected: String,
    },
    /// The index names a tool component whose file is gone.
    #[error("tool component {component} of bundle '{bundle}' is missing from the catalog")]
    MissingToolComponent {
        /// The bundle id.
        bundle: String,
        /// The component's path in the bundle.
        component: String,
    },
    /// A verified bundle does not hold a component its manifest names (the
    /// bundle reader guarantees it does; this is a bug if it happens).
    #[error("bundle {bundle} has no component {component}")]
    MissingBundleComponent {
        /// Where the bundle was loaded from.
        bundle: String,
        /// The component's path in the bundle.
        component: String,
    },
}

/// Why the tools of the catalog could not be offered.
#[derive(Debug, thiserror::Error)]
pub enum ToolsError {
    /// The catalog could not be read, or a tool component not loaded.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The tools could not be registered together (a name offered twice,
    /// or one the registry refuses).
    #[error("cannot offer the catalog's tools")]
    Register(#[source] LoadError),
}

/// Why a host could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The store location is not one this build can open.
    #[error("{0}")]
    Location(String),
    /// The store could not be opened or created.
    #[error("cannot open {what}")]
    Store {
        /// `store <path>` or `file store <dir>`.
        what: String,
        /// Why.
        #[source]
        source: waymark_core::StoreError,
    },
    /// The policy file could not be read or is invalid.
    #[error(transparent)]
    Policy(#[from] waymark_loader::PolicyError),
    /// The engine refused its configuration.
    #[error("cannot start the WebAssembly engine")]
    Engine(#[source] waymark_wasm::WasmError),
    /// Compiling in a child process needs this executable's path, which
    /// could not be found.
    #[error("cannot find this executable to compile components with")]
    CompileProcess(#[source] std::io::Error),
    /// The compile cache could not be opened.
    #[error("cannot open the compile cache {}", path.display())]
    Cache {
        /// The cache directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: waymark_wasm::WasmError,
    },
    /// The component catalog could not be opened.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The LLM config file could not be read.
    #[error("cannot read the LLM config {}", path.display())]
    LlmConfigRead {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The LLM config file is invalid.
    #[error("the LLM config {} is invalid", path.display())]
    LlmConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: waymark_llm::LlmConfigError,
    },
}
