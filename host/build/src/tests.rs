//! Unit tests of the guest build: commands, environment, targets, WIT.

use super::*;

/// A core module implementing the `workflow` world by hand: `describe`
/// returns a fixed record from a data segment, `step` returns an error.
const WAT: &str = r#"
(module
  (import "waymark:workflow/host@0.1.0" "log" (func $log (param i32 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "wfentryv1")
  ;; workflow-info: 4 strings and a list<string>, each (ptr, len)
  (data (i32.const 128)
"\40\00\00\00\02\00\00\00"   ;; workflow-id "wf"
"\42\00\00\00\05\00\00\00"   ;; entry-node "entry"
"\00\01\00\00\01\00\00\00"   ;; nodes: list at 256, 1 element
"\47\00\00\00\02\00\00\00")  ;; version "v1"
  (data (i32.const 256) "\42\00\00\00\05\00\00\00") ;; ["entry"]
  (func (export "waymark:workflow/node@0.1.0#describe") (result i32) i32.const 128)
  (func (export "waymark:workflow/node@0.1.0#step")
(param i32 i32 i32 i32 i32 i32 i32 i32 i32 i64) (result i32)
unreachable)
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) i32.const 1024)
)
"#;

#[test]
fn wit_dir_has_the_contract() {
    let dir = wit_dir().unwrap();
    assert!(dir.join("workflow.wit").is_file(), "{dir:?}");
    assert!(dir.join("tool.wit").is_file(), "{dir:?}");
    let (resolve, world) = workflow_world().unwrap();
    assert_eq!(
        resolve.id_of_name(resolve.worlds[world].package.unwrap(), "workflow"),
        WORLD
    );
    let (resolve, world) = waymark_world("tools").unwrap();
    assert_eq!(
        resolve.id_of_name(resolve.worlds[world].package.unwrap(), "tools"),
        TOOLS_WORLD
    );
    let exports: Vec<_> = resolve.worlds[world]
        .exports
        .keys()
        .map(|k| resolve.name_world_key(k))
        .collect();
    assert_eq!(exports, [TOOL_INTERFACE]);
}

/// A core module implementing the `tools` world by hand: `describe`
/// lists one tool, `call` returns an error.
const TOOLS_WAT: &str = r#"
(module
  (import "waymark:workflow/host@0.1.0" "log" (func $log (param i32 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "echoEchoes.{}")
  ;; list<tool-info> at 128: 1 element at 256
  (data (i32.const 128) "\00\01\00\00\01\00\00\00")
  ;; tool-info: name, description, parameters (ptr, len each), read-only
  (data (i32.const 256)
"\40\00\00\00\04\00\00\00"
"\44\00\00\00\07\00\00\00"
"\4b\00\00\00\02\00\00\00"
"\01")
  (func (export "waymark:workflow/tool@0.1.0#describe") (result i32) i32.const 128)
  (func (export "waymark:workflow/tool@0.1.0#call") (param i32 i32 i32 i32) (result i32)
unreachable)
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) i32.const 1024)
)
"#;

fn tools_component() -> Vec<u8> {
    let (resolve, world) = waymark_world("tools").unwrap();
    let mut core = wat::parse_str(TOOLS_WAT).unwrap();
    wit_component::embed_component_metadata(&mut core, resolve, world, StringEncoding::UTF8, false)
        .unwrap();
    componentize(&core).unwrap()
}

#[test]
fn guests_are_checked_against_their_own_world() {
    let tools = tools_component();
    let (kind, world) = check_guest_component(&tools).unwrap();
    assert_eq!(kind, ComponentKind::Tools);
    assert_eq!(world.exports, [TOOL_INTERFACE]);
    check_tool_component(&tools).unwrap();
    let err = check_workflow_component(&tools).unwrap_err();
    assert!(err.to_string().contains(NODE_INTERFACE), "{err}");

    let workflow = component_from_wat(WAT).unwrap();
    let (kind, _) = check_guest_component(&workflow).unwrap();
    assert_eq!(kind, ComponentKind::Workflow);
    let err = check_tool_component(&workflow).unwrap_err();
    assert!(err.to_string().contains(TOOL_INTERFACE), "{err}");

    // Neither: reported against the workflow world.
    let err = check_guest_component(&wat::parse_str("(component)").unwrap()).unwrap_err();
    assert!(err.to_string().contains(NODE_INTERFACE), "{err}");
}

#[test]
fn wat_becomes_a_workflow_component() {
    let component = component_from_wat(WAT).unwrap();
    assert!(wasm_is_component(&component));
    let world = check_workflow_component(&component).unwrap();
    assert!(world.exports.contains(&NODE_INTERFACE.to_string()));
    assert!(world.imports.contains(&HOST_INTERFACE.to_string()));
    // A component passes through untouched.
    assert_eq!(
        component_from_wat("(component)").unwrap(),
        wat::parse_str("(component)").unwrap()
    );
}

#[test]
fn wrong_modules_are_rejected_with_a_cause() {
    // Missing the `step` export the world requires.
    let err = component_from_wat(
        r#"(module (func (export "waymark:workflow/node@0.1.0#describe") (result i32) i32.const 0))"#,
    )
    .unwrap_err();
    assert!(matches!(err, BuildError::Componentize { .. }), "{err}");
    assert!(err.to_string().contains("step"), "{err}");

    let err = component_from_wat("(module").unwrap_err();
    assert!(matches!(err, BuildError::Wat(_)), "{err}");

    let err = check_workflow_component(&wat::parse_str("(component)").unwrap()).unwrap_err();
    assert!(err.to_string().contains(NODE_INTERFACE), "{err}");
}

#[test]
fn command_line_and_environment() {
    let build = GuestBuild::new("/ws")
        .packages(["a-guest", "b-guest"])
        .cargo("/bin/cargo")
        .arg("--locked");
    let cmd = build.command();
    assert_eq!(
        CommandLine(&cmd).to_string(),
        "/bin/cargo build --manifest-path /ws/Cargo.toml --profile guest --target \
         wasm32-unknown-unknown --target-dir /ws/target/wasm-guests -p a-guest -p b-guest --locked"
    );
    assert_eq!(
        build.core_module_path("a-guest"),
        Path::new("/ws/target/wasm-guests/wasm32-unknown-unknown/guest/a_guest.wasm")
    );
    assert_eq!(
        GuestBuild::new("/ws").profile("dev").core_module_path("x"),
        Path::new("/ws/target/wasm-guests/wasm32-unknown-unknown/debug/x.wasm")
    );
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "OUT_DIR",
        "CARGO_CFG_TARGET_FEATURE",
        "CARGO_PKG_NAME",
        "CARGO_FEATURE_STD",
    ] {
        assert!(is_outer_build_var(var), "{var}");
    }
    for var in [
        "CARGO_MAKEFLAGS",
        "RUSTC",
        "RUSTC_WRAPPER",
        "CARGO_HOME",
        "PATH",
        "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS",
    ] {
        assert!(!is_outer_build_var(var), "{var}");
    }
}

#[test]
fn empty_build_does_nothing() {
    assert_eq!(GuestBuild::new("/nonexistent").build().unwrap(), vec![]);
}

#[test]
fn missing_target_is_explained() {
    // `wasm32v1-none` is a real target that these toolchains do not
    // install by default; skip if it happens to be installed.
    let target = "wasm32v1-none";
    match ensure_target_installed_without_rustup(target) {
        Ok(()) => eprintln!("{target} is installed; nothing to check"),
        Err(err) => {
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("rustup target add {target}")),
                "{msg}"
            );
        }
    }
    ensure_target_installed(Path::new("."), GUEST_TARGET).unwrap();
}

/// The check alone, as on a machine without rustup.
fn ensure_target_installed_without_rustup(target: &str) -> Result<(), BuildError> {
    let probe = TargetProbe::new(Path::new("."));
    match probe.has_target(target) {
        Some(false) => Err(BuildError::MissingTarget {
            target: target.into(),
            rustc: probe.version(),
        }),
        _ => Ok(()),
    }
}
