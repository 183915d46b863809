//! Paths of the example and test guests, built into components by this
//! crate's build script (one nested `cargo build --profile guest --target
//! wasm32-unknown-unknown`, then `wit-component`).
//!
//! Each constant is the absolute path of a component implementing the
//! `waymark:workflow/workflow` world, except [`TOOLS`], which implements the
//! `waymark:workflow/tools` world:
//!
//! ```
//! let bytes = std::fs::read(waymark_guest_artifacts::QUICKSTART).unwrap();
//! assert_eq!(&bytes[..4], b"\0asm");
//! ```

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// Guests written in Python and JavaScript, built on first use.
///
/// Unlike the Rust guests these are not built by the build script: their
/// toolchains (componentize-py, componentize-js) come from PyPI and npm and
/// are installed into `target/lang-toolchains` the first time a test asks
/// for such a guest, and a build takes 20-40 s. Components land in
/// `target/lang-guests` and are reused while their sources, the WIT and the
/// helper modules are unchanged (see [`waymark_build::lang`]).
pub mod lang {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};
    use std::sync::{Mutex, OnceLock};

    pub use waymark_build::lang::Language;
    use waymark_build::lang::{
        DEFAULT_OUT_DIR, DEFAULT_TOOLCHAINS_DIR, LangGuestBuild, Toolchains,
    };

    /// The repository's root directory.
    pub fn workspace() -> PathBuf {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        dir.canonicalize().unwrap_or(dir)
    }

    /// The component of `examples/<language>/<name>`, built if needed.
    /// Panics with the build's error (a test cannot go on without it).
    pub fn component(language: Language, name: &str) -> PathBuf {
        component_in(language, "examples", name)
    }

    /// The component of `<dir>/<language>/<name>` (`dir` relative to the
    /// repository, such as `tests/guests`), built if needed.
    pub fn component_in(language: Language, dir: &str, name: &str) -> PathBuf {
        // One build at a time: the machine's cores are the limit anyway,
        // and the toolchain install must happen once.
        static BUILT: OnceLock<Mutex<HashMap<(Language, String), PathBuf>>> = OnceLock::new();
        let mut built = BUILT
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let key = (language, format!("{dir}/{name}"));
        if let Some(path) = built.get(&key) {
            return path.clone();
        }
        let workspace = workspace();
        let tools = toolchains();
        let source = workspace.join(dir).join(language.as_str()).join(name);
        // Examples keep their plain names; others say where they come from.
        let stem = match dir {
            "examples" => name.to_owned(),
            other => format!("{}-{name}", other.replace('/', "-")),
        };
        let component = LangGuestBuild::new(language, &source)
            .out(
                workspace
                    .join(DEFAULT_OUT_DIR)
                    .join(format!("{stem}-{}.wasm", language.suffix())),
            )
            .build(tools)
            .unwrap_or_else(|e| panic!("building {}: {e}", source.display()));
        built.insert(key, component.path.clone());
        component.path
    }

    /// The toolchains under `target/lang-toolchains`, installed when
    /// missing.
    pub fn toolchains() -> &'static Toolchains {
        static TOOLS: OnceLock<Toolchains> = OnceLock::new();
        TOOLS.get_or_init(|| {
            Toolchains::new(workspace().join(DEFAULT_TOOLCHAINS_DIR))
                .install_missing(true)
                .echo(false)
        })
    }

    /// `examples/python/<name>` as a component.
    pub fn python(name: &str) -> PathBuf {
        component(Language::Python, name)
    }

    /// `examples/javascript/<name>` as a component.
    pub fn javascript(name: &str) -> PathBuf {
        component(Language::JavaScript, name)
    }
}

/// Every workflow guest as `(workflow id, component path)`.
pub fn all() -> &'static [(&'static str, &'static str)] {
    ALL
}

/// Every tool component as `(package, component path)`.
pub fn tool_components() -> &'static [(&'static str, &'static str)] {
    ALL_TOOLS
}

#[cfg(test)]
mod tests {
    use waymark_build::{
        HOST_INTERFACE, NODE_INTERFACE, TOOL_INTERFACE, TYPES_INTERFACE, check_tool_component,
        check_workflow_component,
    };

    #[test]
    fn every_guest_is_a_workflow_component() {
        let ids: Vec<_> = super::all().iter().map(|(id, _)| *id).collect();
        assert_eq!(
            ids,
            [
                "quickstart",
                "packing",
                "order",
                "chain",
                "compute",
                "scripted",
                "greeter",
                "greeter",
                "agent",
                "polyglot"
            ]
        );
        for (id, path) in super::all() {
            let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{id}: {path}: {e}"));
            let world = check_workflow_component(&bytes).unwrap_or_else(|e| panic!("{id}: {e}"));
            assert_eq!(world.exports, [NODE_INTERFACE], "{id}");
            // `host` (log, also used by the SDK's panic hook) and the
            // type-only `types` interface; nothing else (no WASI).
            let mut imports = world.imports.clone();
            imports.sort();
            assert_eq!(imports, [HOST_INTERFACE, TYPES_INTERFACE], "{id}");
        }
    }

    #[test]
    fn every_tool_guest_is_a_tool_component() {
        let packages: Vec<_> = super::tool_components().iter().map(|(p, _)| *p).collect();
        assert_eq!(packages, ["tools-guest", "support-tools-guest"]);
        for (package, path) in super::tool_components() {
            let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{package}: {path}: {e}"));
            let world = check_tool_component(&bytes).unwrap_or_else(|e| panic!("{package}: {e}"));
            assert_eq!(world.exports, [TOOL_INTERFACE], "{package}");
            let mut imports = world.imports.clone();
            imports.sort();
            assert_eq!(imports, [HOST_INTERFACE, TYPES_INTERFACE], "{package}");
            // Not a workflow: the strict workflow check refuses it.
            assert!(check_workflow_component(&bytes).is_err(), "{package}");
        }
    }
}
