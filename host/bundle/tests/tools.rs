//! Tool components in bundles: the `[[tools]]` table array, its rules, its
//! canonical text, packing and inspecting.

mod common;

use std::path::Path;

use common::{ORDER, PACKING, file, manifest_text, sha, tar};
use waymark_bundle::{
    Bundle, BundleError, BundleInfo, Manifest, PackSpec, PackTool, PackWorkflow,
    RequestedCapabilities, RequestedLimits, pack,
};

const TOOLS: &[u8] = b"\0asm fake tool component";

/// The base manifest with a tool component added (its own file).
fn with_tools() -> String {
    manifest_text().replace(
        "[components.\"components/order.wasm\"]",
        &format!(
            "[[tools]]\ncomponent = \"components/tools.wasm\"\n\n[tools.limits]\nfuel = 1000\nmemory_mb = 8\n\n\
             [components.\"components/tools.wasm\"]\nsha256 = \"{}\"\nsize = {}\n\n\
             [components.\"components/order.wasm\"]",
            sha(TOOLS),
            TOOLS.len()
        ),
    )
}

/// Replaces `from` in [`with_tools`] and expects the parse to fail.
fn bad(from: &str, to: &str) -> BundleError {
    let text = with_tools();
    assert!(text.contains(from), "manifest lacks {from:?}");
    match Manifest::parse(&text.replacen(from, to, 1)) {
        Ok(_) => panic!("accepted manifest with {from:?} -> {to:?}"),
        Err(e) => e,
    }
}

#[test]
fn tools_parse_and_their_canonical_text_round_trips() {
    let m = Manifest::parse(&with_tools()).unwrap();
    assert_eq!(m.tools.len(), 1);
    assert_eq!(m.tools[0].component, "components/tools.wasm");
    assert_eq!(m.tools[0].limits.fuel, Some(1000));
    assert_eq!(m.tools[0].limits.memory_mb, Some(8));
    assert_eq!(m.tool("components/tools.wasm"), Some(&m.tools[0]));
    assert_eq!(m.tool("components/order.wasm"), None);

    let text = m.to_toml();
    assert_eq!(Manifest::parse(&text).unwrap(), m);
    assert_eq!(Manifest::parse(&text).unwrap().to_toml(), text);
    // After the workflows, before the components; limits in their table.
    let expected = "[[workflows]]\nid = \"packing\"\ncomponent = \"components/packing.wasm\"\n\n\
         [[tools]]\ncomponent = \"components/tools.wasm\"\n\n\
         [tools.limits]\nfuel = 1000\nmemory_mb = 8\n\n\
         [components.\"components/order.wasm\"]\n";
    assert!(text.contains(expected), "{text}");

    // A tool entry without limits has no limits table.
    let bare = Manifest::parse(&with_tools().replace("fuel = 1000\nmemory_mb = 8\n", "")).unwrap();
    assert_eq!(bare.tools[0].limits, RequestedLimits::default());
    assert!(!bare.to_toml().contains("[tools.limits]"));
    assert_eq!(Manifest::parse(&bare.to_toml()).unwrap(), bare);
}

#[test]
fn manifests_without_tools_keep_their_canonical_text() {
    let m = Manifest::parse(&manifest_text()).unwrap();
    assert!(m.tools.is_empty());
    let text = m.to_toml();
    assert!(!text.contains("tools"), "{text}");
    // An explicitly empty array is the same manifest.
    let again =
        Manifest::parse(&manifest_text().replacen("schema = 1\n", "schema = 1\ntools = []\n", 1))
            .unwrap();
    assert_eq!(again, m);
    assert_eq!(again.to_toml(), text);
}

#[test]
fn a_bundle_may_ship_only_tools() {
    let text = format!(
        "schema = 1\n[bundle]\nid = \"acme.tools\"\nversion = \"1\"\n\n[[tools]]\ncomponent = \"t.wasm\"\n\n\
         [components.\"t.wasm\"]\nsha256 = \"{}\"\n",
        sha(TOOLS)
    );
    let m = Manifest::parse(&text).unwrap();
    assert!(m.workflows.is_empty());
    assert_eq!(Manifest::parse(&m.to_toml()).unwrap(), m);
    // Neither workflows nor tools is still an error.
    let empty = "schema = 1\ntools = []\n[bundle]\nid = \"a\"\nversion = \"1\"\n";
    assert!(matches!(
        Manifest::parse(empty),
        Err(BundleError::NoWorkflows { .. })
    ));
}

#[test]
fn tool_entries_follow_the_component_rules() {
    // Listed in [components].
    assert!(matches!(
        bad("component = \"components/tools.wasm\"", "component = \"components/other.wasm\""),
        BundleError::UnlistedToolComponent { component, .. } if component == "components/other.wasm"
    ));
    // Safe paths.
    assert!(matches!(
        bad("component = \"components/tools.wasm\"", "component = \"../tools.wasm\""),
        BundleError::UnsafePath { path, .. } if path == "../tools.wasm"
    ));
    // Not a workflow's component too (and then the tool file is unused,
    // but the clash is what is reported).
    assert!(matches!(
        bad("component = \"components/tools.wasm\"", "component = \"components/order.wasm\""),
        BundleError::ComponentRoleClash { component, workflow, .. }
            if component == "components/order.wasm" && workflow == "order"
    ));
    // Not twice.
    let twice = with_tools().replace(
        "[[tools]]\n",
        "[[tools]]\ncomponent = \"components/tools.wasm\"\n\n[[tools]]\n",
    );
    assert!(matches!(
        Manifest::parse(&twice),
        Err(BundleError::DuplicateToolComponent { component, .. }) if component == "components/tools.wasm"
    ));
    // Limits greater than 0, named by their entry.
    match bad("fuel = 1000", "fuel = 0") {
        BundleError::InvalidManifest { field, .. } => assert_eq!(field, "tools[0].limits.fuel"),
        other => panic!("{other:?}"),
    }
    // Unknown fields, in the entry and in its limits.
    for (from, to, word) in [
        (
            "component = \"components/tools.wasm\"",
            "component = \"components/tools.wasm\"\nname = \"x\"",
            "name",
        ),
        ("memory_mb = 8", "memroy_mb = 8", "memroy_mb"),
    ] {
        match bad(from, to) {
            BundleError::ManifestSyntax { detail, .. } => {
                assert!(detail.contains(word), "{word}: {detail}")
            }
            other => panic!("{word}: {other:?}"),
        }
    }
    // A tool component that no entry uses any more is unused.
    let unused = with_tools().replace(
        "[[tools]]\ncomponent = \"components/tools.wasm\"\n\n[tools.limits]\nfuel = 1000\nmemory_mb = 8\n\n",
        "",
    );
    match Manifest::parse(&unused) {
        Err(e @ BundleError::UnusedComponent { .. }) => {
            assert!(e.to_string().contains("[[tools]]"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}

fn write(dir: &Path, name: &str, data: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

fn spec(dir: &Path, tools: Vec<PackTool>) -> PackSpec {
    PackSpec {
        bundle: BundleInfo {
            id: "acme.orders".into(),
            version: "2.0.0".into(),
            description: None,
        },
        workflows: vec![PackWorkflow {
            id: "order".into(),
            component_file: write(dir, "order.wasm", ORDER),
            limits: RequestedLimits::default(),
            capabilities: RequestedCapabilities {
                effects: vec!["tool_calls".into()],
                ..RequestedCapabilities::default()
            },
        }],
        tools,
    }
}

#[test]
fn tools_are_packed_opened_and_inspected() {
    let dir = tempfile::tempdir().unwrap();
    let tools = write(dir.path(), "desk_tools.wasm", TOOLS);
    let spec = spec(
        dir.path(),
        vec![PackTool {
            component_file: tools.clone(),
            limits: RequestedLimits {
                timeout_ms: Some(250),
                ..RequestedLimits::default()
            },
        }],
    );
    for out in ["b.wmb", "b-dir"] {
        let out = dir.path().join(out);
        let packed = pack(&spec, &out).unwrap();
        assert_eq!(packed.manifest.tools.len(), 1);
        assert_eq!(
            packed.manifest.tools[0].component,
            "components/desk_tools.wasm"
        );
        assert_eq!(packed.total_bytes, (ORDER.len() + TOOLS.len()) as u64);

        let b = Bundle::open(&out).unwrap();
        assert_eq!(b.manifest, packed.manifest);
        assert_eq!(b.digest(), packed.digest);
        assert_eq!(b.tool_component("components/desk_tools.wasm"), Some(TOOLS));
        // Only tool entries' components are tool components.
        assert_eq!(b.tool_component("components/order.wasm"), None);

        let report = b.inspect();
        assert_eq!(report.tools.len(), 1);
        assert_eq!(report.tools[0].component, "components/desk_tools.wasm");
        assert_eq!(report.tools[0].sha256, sha(TOOLS));
        assert_eq!(report.tools[0].size, TOOLS.len() as u64);
        assert_eq!(report.tools[0].limits.timeout_ms, Some(250));
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["tools"][0]["limits"]["timeout_ms"], 250);
    }

    // The archive is the manifest and both components, nothing else.
    let b = Bundle::from_tar_bytes(&std::fs::read(dir.path().join("b.wmb")).unwrap()).unwrap();
    assert_eq!(
        b.components.keys().collect::<Vec<_>>(),
        ["components/desk_tools.wasm", "components/order.wasm"]
    );
}

#[test]
fn packing_refuses_a_tool_file_used_twice_or_as_a_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let tools = write(dir.path(), "t.wasm", TOOLS);
    let entry = |file: &Path| PackTool {
        component_file: file.to_owned(),
        limits: RequestedLimits::default(),
    };
    let twice = spec(dir.path(), vec![entry(&tools), entry(&tools)]);
    assert!(matches!(
        pack(&twice, &dir.path().join("twice.wmb")),
        Err(BundleError::DuplicateToolComponent { .. })
    ));
    let order = dir.path().join("order.wasm");
    let clash = spec(dir.path(), vec![entry(&order)]);
    assert!(matches!(
        pack(&clash, &dir.path().join("clash.wmb")),
        Err(BundleError::ComponentRoleClash { workflow, .. }) if workflow == "order"
    ));
    // Nothing was written for either.
    assert!(!dir.path().join("twice.wmb").exists());
    assert!(!dir.path().join("clash.wmb").exists());
}

#[test]
fn an_archive_with_tools_reads_like_one_without() {
    let m = with_tools();
    let bytes = tar(&[
        file("waymark-bundle.toml", m.as_bytes()),
        file("components/order.wasm", ORDER),
        file("components/packing.wasm", PACKING),
        file("components/tools.wasm", TOOLS),
    ]);
    let b = Bundle::from_tar_bytes(&bytes).unwrap();
    assert_eq!(b.tool_component("components/tools.wasm"), Some(TOOLS));
    // A tampered tool component is refused like any other.
    let mut evil = TOOLS.to_vec();
    evil[5] ^= 1;
    let bytes = tar(&[
        file("waymark-bundle.toml", m.as_bytes()),
        file("components/order.wasm", ORDER),
        file("components/packing.wasm", PACKING),
        file("components/tools.wasm", &evil),
    ]);
    assert!(matches!(
        Bundle::from_tar_bytes(&bytes),
        Err(BundleError::DigestMismatch { path, .. }) if path == "components/tools.wasm"
    ));
}
