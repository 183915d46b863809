//! Bundles under an operator policy: verified before anything is compiled,
//! effective rights = policy ∩ request, runs pinned to the component digest
//! they started with, a read-only data directory for those granted one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;
use waymark_bundle::{
    Bundle, BundleError, BundleInfo, PackSpec, PackWorkflow, RequestedCapabilities,
    RequestedLimits, pack,
};
use waymark_core::{FailureKind, MemoryStore, RunStatus};
use waymark_loader::{LoadError, Loader, Policy};
use waymark_runtime::Runtime;
use waymark_wasm::CompileCache;

use crate::support::{artifacts, shared_engine};

fn cache() -> CompileCache {
    // One cache for the whole test binary: components compile once.
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("waymark-test-cache-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    });
    CompileCache::open(dir.clone()).unwrap()
}

fn loader(policy: Policy) -> Loader {
    Loader::new(shared_engine(), Some(cache()), policy)
}

fn workflow(id: &str, file: &str, effects: &[&str], data: bool) -> PackWorkflow {
    PackWorkflow {
        id: id.into(),
        component_file: PathBuf::from(file),
        limits: RequestedLimits {
            fuel: Some(40_000_000),
            memory_mb: Some(16),
            ..RequestedLimits::default()
        },
        capabilities: RequestedCapabilities {
            effects: effects.iter().map(|s| (*s).to_owned()).collect(),
            child_workflows: Vec::new(),
            data,
        },
    }
}

fn packed(dir: &Path, name: &str, workflows: Vec<PackWorkflow>) -> PathBuf {
    let spec = PackSpec {
        bundle: BundleInfo {
            id: "test.bundle".into(),
            version: "1.0.0".into(),
            description: None,
        },
        workflows,
        tools: Vec::new(),
    };
    let out = dir.join(name);
    pack(&spec, &out).unwrap();
    out
}

fn runtime_with(loader: &Loader, bundle: &Bundle) -> Runtime {
    let rt = Runtime::new(Arc::new(MemoryStore::new()));
    for wf in loader.load_bundle(bundle).unwrap().workflows {
        rt.register(wf.workflow).unwrap();
    }
    rt
}

#[test]
fn a_bundle_runs_end_to_end_with_its_requested_limits() {
    let dir = tempfile::tempdir().unwrap();
    let path = packed(
        dir.path(),
        "q.wmb",
        vec![workflow(
            "quickstart",
            artifacts::QUICKSTART,
            &["ask_user"],
            false,
        )],
    );
    let bundle = Bundle::open(&path).unwrap();
    let l = loader(Policy::default());
    let loaded = l.load_bundle(&bundle).unwrap();
    assert_eq!(loaded.workflows[0].effective.limits.fuel, 40_000_000);
    assert_eq!(
        loaded.workflows[0].effective.limits.max_memory_bytes,
        16 << 20
    );
    assert!(loaded.workflows[0].effective.refused.is_empty());

    let rt = runtime_with(&l, &bundle);
    let id = rt.start("quickstart", json!({})).unwrap();
    let s = rt.tick(&id).unwrap();
    assert_eq!(s.status, RunStatus::Waiting);
    let expected = &bundle.manifest.components.values().next().unwrap().sha256;
    assert_eq!(s.component_digest.as_ref(), Some(expected));
    let s = rt.respond(&id, json!({"text": "yes"})).unwrap();
    assert_eq!(s.output, Some(json!({"answer": "yes"})));
}

#[test]
fn an_effect_the_bundle_did_not_request_is_not_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let path = packed(
        dir.path(),
        "q",
        vec![workflow("quickstart", artifacts::QUICKSTART, &[], false)],
    );
    let bundle = Bundle::open(&path).unwrap();
    let rt = runtime_with(&loader(Policy::default()), &bundle);
    let id = rt.start("quickstart", json!({})).unwrap();
    let s = rt.tick(&id).unwrap();
    assert_eq!(s.status, RunStatus::Failed);
    assert_eq!(s.error.unwrap().kind, FailureKind::EffectNotAllowed);
    let last = rt.ledger(&id).unwrap().pop().unwrap();
    assert_eq!(last.effect.unwrap().name(), "ask_user");
}

#[test]
fn the_policy_caps_what_a_bundle_requests() {
    let dir = tempfile::tempdir().unwrap();
    let path = packed(
        dir.path(),
        "q.wmb",
        vec![workflow(
            "quickstart",
            artifacts::QUICKSTART,
            &["ask_user", "tool_calls"],
            false,
        )],
    );
    let bundle = Bundle::open(&path).unwrap();
    let policy = Policy::parse(
        "[limits]\nfuel = 1000000\n[grants]\neffects = [\"answer_user\"]\n",
        "test",
    )
    .unwrap();
    let l = loader(policy);
    let loaded = l.load_bundle(&bundle).unwrap();
    let e = &loaded.workflows[0].effective;
    assert_eq!(
        e.limits.fuel, 1_000_000,
        "the ceiling wins over the request"
    );
    assert_eq!(e.refused, vec!["effect 'ask_user'", "effect 'tool_calls'"]);
    let rt = runtime_with(&l, &bundle);
    let id = rt.start("quickstart", json!({})).unwrap();
    assert_eq!(
        rt.tick(&id).unwrap().error.unwrap().kind,
        FailureKind::EffectNotAllowed
    );

    let denied = Policy::parse("[bundles.\"test.bundle\"]\ndeny = true\n", "test").unwrap();
    assert!(matches!(
        loader(denied).load_bundle(&bundle),
        Err(LoadError::Denied(_))
    ));
}

#[test]
fn a_tampered_bundle_is_refused_before_anything_is_compiled() {
    let dir = tempfile::tempdir().unwrap();
    let path = packed(
        dir.path(),
        "q.wmb",
        vec![workflow(
            "quickstart",
            artifacts::QUICKSTART,
            &["ask_user"],
            false,
        )],
    );
    let mut bytes = std::fs::read(&path).unwrap();
    // Flip a byte inside the component's data (the archive's largest part).
    let component = std::fs::read(artifacts::QUICKSTART).unwrap();
    let at = bytes
        .windows(64)
        .position(|w| w == &component[1000..1064])
        .expect("component data in the archive");
    bytes[at + 10] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let err = Bundle::open(&path).unwrap_err();
    assert!(matches!(err, BundleError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains("quickstart"), "{err}");

    // A directory bundle whose component was swapped for another.
    let dir_bundle = packed(
        dir.path(),
        "qdir",
        vec![workflow(
            "quickstart",
            artifacts::QUICKSTART,
            &["ask_user"],
            false,
        )],
    );
    let file = std::fs::read_dir(dir_bundle.join("components"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::copy(artifacts::CHAIN, &file).unwrap();
    let err = Bundle::open(&dir_bundle).unwrap_err();
    assert!(matches!(err, BundleError::SizeMismatch { .. }), "{err}");
    // Same size, other bytes: only the digest can tell.
    let mut same_size = std::fs::read(artifacts::QUICKSTART).unwrap();
    let last = same_size.len() - 1;
    same_size[last] ^= 0x01;
    std::fs::write(&file, &same_size).unwrap();
    let err = Bundle::open(&dir_bundle).unwrap_err();
    assert!(matches!(err, BundleError::DigestMismatch { .. }), "{err}");
}

#[test]
fn a_manifest_with_path_traversal_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("evil");
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(dir.path().join("x.wasm"), b"\0asm").unwrap();
    std::fs::write(
        b.join("waymark-bundle.toml"),
        format!(
            "schema = 1\n[bundle]\nid = \"evil\"\nversion = \"1\"\n[[workflows]]\nid = \"x\"\ncomponent = \"../x.wasm\"\n[components.\"../x.wasm\"]\nsha256 = \"{}\"\n",
            "0".repeat(64)
        ),
    )
    .unwrap();
    let err = Bundle::open(&b).unwrap_err();
    assert!(matches!(err, BundleError::UnsafePath { .. }), "{err}");
}

#[test]
fn a_component_that_describes_another_workflow_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = packed(
        dir.path(),
        "q.wmb",
        vec![workflow("quickstart", artifacts::CHAIN, &[], false)],
    );
    let bundle = Bundle::open(&path).unwrap();
    let err = loader(Policy::default())
        .load_bundle(&bundle)
        .err()
        .unwrap();
    assert!(matches!(err, LoadError::WrongWorkflow { .. }), "{err}");
}

#[test]
fn an_in_flight_run_keeps_its_component_after_a_newer_bundle_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = packed(
        dir.path(),
        "v1.wmb",
        vec![workflow(
            "quickstart",
            artifacts::QUICKSTART,
            &["ask_user"],
            false,
        )],
    );
    // Version 2: the same code with an extra custom section, so another digest.
    let mut bytes = std::fs::read(artifacts::QUICKSTART).unwrap();
    bytes.extend_from_slice(&[0x00, 0x05, 0x04, b'v', b'e', b'r', b'2']);
    let v2_file = dir.path().join("quickstart-v2.wasm");
    std::fs::write(&v2_file, &bytes).unwrap();
    let v2 = packed(
        dir.path(),
        "v2.wmb",
        vec![workflow(
            "quickstart",
            v2_file.to_str().unwrap(),
            &["ask_user"],
            false,
        )],
    );

    let l = loader(Policy::default());
    let rt = Runtime::new(Arc::new(MemoryStore::new()));
    let first = l
        .load_bundle(&Bundle::open(&v1).unwrap())
        .unwrap()
        .workflows
        .remove(0)
        .workflow;
    let d1 = first.digest().unwrap().to_owned();
    rt.register(first).unwrap();
    let old_run = rt.start("quickstart", json!({})).unwrap();
    rt.tick(&old_run).unwrap();

    let second = l
        .load_bundle(&Bundle::open(&v2).unwrap())
        .unwrap()
        .workflows
        .remove(0)
        .workflow;
    let d2 = second.digest().unwrap().to_owned();
    assert_ne!(d1, d2);
    rt.register(second).unwrap();
    let new_run = rt.start("quickstart", json!({})).unwrap();
    rt.tick(&new_run).unwrap();

    rt.respond(&old_run, json!({"text": "old"})).unwrap();
    let old_steps: Vec<_> = rt
        .ledger(&old_run)
        .unwrap()
        .into_iter()
        .filter_map(|r| r.component_digest)
        .collect();
    assert!(
        old_steps.iter().all(|d| *d == d1),
        "old run ran only v1: {old_steps:?}"
    );
    assert_eq!(
        rt.get_state(&new_run).unwrap().component_digest.as_deref(),
        Some(d2.as_str())
    );
}

#[test]
fn the_data_directory_is_read_only_and_confined() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("rates")).unwrap();
    std::fs::write(data.join("rates/eur.json"), br#"{"usd": 1.08}"#).unwrap();
    std::fs::write(dir.path().join("secret.txt"), b"top secret").unwrap();
    let path = packed(
        dir.path(),
        "s.wmb",
        vec![workflow("scripted", artifacts::SCRIPTED, &[], true)],
    );
    let bundle = Bundle::open(&path).unwrap();
    let policy = Policy::parse(
        &format!("[grants]\ndata_dir = {:?}\n", data.to_str().unwrap()),
        "test",
    )
    .unwrap();
    let rt = runtime_with(&loader(policy), &bundle);

    let s = read_data(&rt, "rates/eur.json");
    assert_eq!(s.output, Some(json!(r#"{"usd": 1.08}"#)), "{:?}", s.error);

    for escape in ["../secret.txt", "/etc/passwd", "rates/../../secret.txt"] {
        let e = read_data(&rt, escape).error.unwrap();
        assert_eq!(e.kind, FailureKind::NodeError, "{escape}: {e}");
        assert_eq!(e.code.as_deref(), Some("data-unavailable"), "{escape}");
    }

    // Without a grant there is no directory at all.
    let rt = runtime_with(&loader(Policy::default()), &bundle);
    let e = read_data(&rt, "rates/eur.json").error.unwrap();
    assert!(e.message.contains("no data directory"), "{e}");
}

/// Runs a scripted workflow that reads `path` from the data directory and
/// completes with its text.
fn read_data(rt: &Runtime, path: &str) -> waymark_core::RunState {
    let id = rt
        .start(
            "scripted",
            json!({"script": [
                {"op": "read_data", "path": path, "into": "text"},
                {"op": "complete_with_var", "path": "text"}
            ]}),
        )
        .unwrap();
    rt.tick(&id).unwrap()
}

/// Tool components shipped in bundles: loaded under the policy's ceilings,
/// their tools given the policy's approvals, names unique per host.
mod tools {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use serde_json::json;
    use waymark_bundle::{Bundle, BundleInfo, PackSpec, PackTool, RequestedLimits, pack};
    use waymark_loader::{LoadError, Policy, ToolOrigin, register_tools};
    use waymark_tools::{Approval, ToolRegistry, ToolSpec};
    use waymark_wasm::{ToolCallError, WasmError};

    use super::{loader, workflow};
    use crate::support::artifacts;

    fn packed(dir: &Path, id: &str, tool_file: &str, limits: RequestedLimits) -> PathBuf {
        let spec = PackSpec {
            bundle: BundleInfo {
                id: id.into(),
                version: "1.0.0".into(),
                description: None,
            },
            workflows: vec![workflow(
                "quickstart",
                artifacts::QUICKSTART,
                &["ask_user", "tool_calls"],
                false,
            )],
            tools: vec![PackTool {
                component_file: PathBuf::from(tool_file),
                limits,
            }],
        };
        let out = dir.join(format!("{id}.wmb"));
        pack(&spec, &out).unwrap();
        out
    }

    fn desk(dir: &Path, id: &str) -> Bundle {
        let limits = RequestedLimits {
            fuel: Some(10_000_000),
            timeout_ms: Some(20_000),
            ..RequestedLimits::default()
        };
        Bundle::open(&packed(dir, id, artifacts::TOOLS, limits)).unwrap()
    }

    #[test]
    fn tool_components_get_capped_limits_and_the_policys_approvals() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = desk(dir.path(), "test.desk");
        let policy = Policy::parse(
            "[limits]\ntimeout_ms = 1000\n[tools]\nauto = [\"refund_order\"]\nrequired = [\"lookup_order\"]\n",
            "test",
        )
        .unwrap();
        let l = loader(policy);
        let loaded = l.load_bundle(&bundle).unwrap();
        assert_eq!(loaded.workflows.len(), 1);
        assert_eq!(loaded.tools.len(), 1);
        let t = &loaded.tools[0];
        assert_eq!(t.bundle, "test.desk");
        assert_eq!(t.component, "components/tools-guest.wasm");
        assert_eq!(t.digest(), bundle.manifest.components[&t.component].sha256);
        // min(request, ceiling) for each limit.
        assert_eq!(t.limits().fuel, 10_000_000);
        assert_eq!(t.limits().timeout, Duration::from_millis(1000));
        assert_eq!(
            l.tool_limits(&bundle.manifest),
            vec![(t.component.clone(), t.limits().clone())]
        );
        assert_eq!(t.approval("lookup_order"), Approval::Required);
        assert_eq!(t.approval("refund_order"), Approval::Auto);
        assert_eq!(t.approval("spin"), Approval::Auto);
        assert_eq!(t.approval("not_offered"), Approval::Required);

        let registry = ToolRegistry::new();
        register_tools(&registry, &loaded.tools).unwrap();
        assert_eq!(registry.list().len(), 7);
        assert_eq!(registry.approval("lookup_order"), Approval::Required);
        assert_eq!(registry.approval("refund_order"), Approval::Auto);
        assert_eq!(registry.approval("grow"), Approval::Auto);
        // The limits are enforced: the spinning tool runs out of its fuel.
        assert_eq!(
            t.tools.call("spin", &json!({})),
            Err(ToolCallError::FuelExhausted { fuel: 10_000_000 })
        );
        let found = t.tools.call("lookup_order", &json!({"order_id": "A1"}));
        assert_eq!(found.unwrap()["status"], "shipped");

        // Reloaded from the manifest and the bytes, as a later process does.
        let bytes = bundle.tool_component(&t.component).unwrap();
        let again = l
            .load_tools_from_manifest(&bundle.manifest, &t.component, bytes)
            .unwrap();
        assert_eq!(again.approvals, t.approvals);
        assert_eq!(again.limits(), t.limits());
        assert!(matches!(
            l.load_tools_from_manifest(&bundle.manifest, "components/quickstart-guest.wasm", bytes),
            Err(LoadError::MissingToolComponent { .. })
        ));
        let denying = loader(Policy::parse("[bundles.\"test.desk\"]\ndeny = true\n", "t").unwrap());
        assert!(matches!(
            denying.load_tools_from_manifest(&bundle.manifest, &t.component, bytes),
            Err(LoadError::Denied(_))
        ));
    }

    #[test]
    fn a_tool_name_is_offered_once_per_host() {
        let dir = tempfile::tempdir().unwrap();
        let l = loader(Policy::default());
        let a = l.load_bundle(&desk(dir.path(), "test.a")).unwrap();
        let b = l.load_bundle(&desk(dir.path(), "test.b")).unwrap();

        // Two bundles with the same tools: refused, nothing registered.
        let registry = ToolRegistry::new();
        let both: Vec<_> = a.tools.into_iter().chain(b.tools).collect();
        match register_tools(&registry, &both) {
            Err(LoadError::DuplicateTool {
                name,
                first,
                second,
            }) => {
                assert_eq!(name, "lookup_order");
                assert_eq!(
                    first,
                    ToolOrigin::Bundle {
                        bundle: "test.a".into(),
                        component: "components/tools-guest.wasm".into()
                    }
                );
                assert!(matches!(&second, ToolOrigin::Bundle { bundle, .. } if bundle == "test.b"));
            }
            other => panic!("{:?}", other.err()),
        }
        assert!(registry.list().is_empty());

        // A name the host registered itself is taken too.
        registry
            .register_native(
                ToolSpec::new("refund_order", "native", json!({"type": "object"})),
                Approval::Required,
                |_, _| Ok(json!(null)),
            )
            .unwrap();
        let e = register_tools(&registry, &both[..1]).unwrap_err();
        assert!(
            matches!(&e, LoadError::DuplicateTool { name, first: ToolOrigin::Registry, .. } if name == "refund_order"),
            "{e}"
        );
        assert!(e.to_string().contains("already registered"), "{e}");
        assert_eq!(registry.list().len(), 1);
    }

    #[test]
    fn a_workflow_component_listed_as_tools_is_refused_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = packed(
            dir.path(),
            "test.wrong",
            artifacts::CHAIN,
            RequestedLimits::default(),
        );
        let bundle = Bundle::open(&path).unwrap();
        match loader(Policy::default()).load_bundle(&bundle) {
            Err(LoadError::ToolComponent {
                bundle,
                component,
                cause: WasmError::ToolContract(_),
            }) => {
                assert_eq!(bundle, "test.wrong");
                assert_eq!(component, "components/chain-guest.wasm");
            }
            other => panic!("{:?}", other.err()),
        }
    }
}
