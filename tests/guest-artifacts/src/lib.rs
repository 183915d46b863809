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
                "agent"
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
