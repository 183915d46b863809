//! Builds the example and test guests into components with one nested
//! `cargo build` (see `waymark-build`) and records their paths for `src/lib.rs`.

use std::env;
use std::fmt::Write as _;
use std::path::PathBuf;

use waymark_build::{ComponentKind, GuestBuild};

/// (constant, workflow id, package, directory in the workspace). A tool
/// component (the `tools` world) has no workflow id: `None`.
const GUESTS: &[(&str, Option<&str>, &str, &str)] = &[
    (
        "QUICKSTART",
        Some("quickstart"),
        "quickstart-guest",
        "examples/quickstart",
    ),
    (
        "PACKING",
        Some("packing"),
        "packing-guest",
        "examples/packing",
    ),
    ("ORDER", Some("order"), "order-guest", "examples/order"),
    ("CHAIN", Some("chain"), "chain-guest", "tests/guests/chain"),
    (
        "COMPUTE",
        Some("compute"),
        "compute-guest",
        "tests/guests/compute",
    ),
    (
        "SCRIPTED",
        Some("scripted"),
        "scripted-guest",
        "tests/guests/scripted",
    ),
    (
        "GREETER_V1",
        Some("greeter"),
        "greeter-v1-guest",
        "tests/guests/greeter-v1",
    ),
    (
        "GREETER_V2",
        Some("greeter"),
        "greeter-v2-guest",
        "tests/guests/greeter-v2",
    ),
    ("AGENT", Some("agent"), "agent-guest", "examples/agent"),
    (
        "POLYGLOT",
        Some("polyglot"),
        "polyglot-guest",
        "examples/polyglot",
    ),
    ("TOOLS", None, "tools-guest", "tests/guests/tools"),
    (
        "SUPPORT_TOOLS",
        None,
        "support-tools-guest",
        "examples/support-tools",
    ),
];

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let joined = manifest_dir.join("../..");
    let workspace = joined.canonicalize().unwrap_or(joined);

    let mut watched = vec!["wit", "guest-sdk", "Cargo.toml", "Cargo.lock"];
    watched.extend(GUESTS.iter().map(|(_, _, _, dir)| *dir));
    for path in watched {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }

    let build = GuestBuild::new(&workspace)
        .target_dir(workspace.join("target").join("wasm-guests"))
        .out_dir(out_dir.join("components"))
        .packages(GUESTS.iter().map(|(_, _, package, _)| *package));
    let built = match build.build() {
        Ok(built) => built,
        Err(err) => {
            eprintln!("error: building the Waymark guests failed: {err}");
            std::process::exit(1);
        }
    };

    let mut code = String::new();
    let mut all = String::new();
    let mut tools = String::new();
    for ((name, id, package, _), component) in GUESTS.iter().zip(&built) {
        assert_eq!(*package, component.package);
        let path = component.path.to_str().expect("OUT_DIR is not UTF-8");
        let (what, expected_kind) = match id {
            Some(id) => {
                write!(all, "({id:?}, {name}), ").unwrap();
                (format!("workflow `{id}`"), ComponentKind::Workflow)
            }
            None => {
                write!(tools, "({package:?}, {name}), ").unwrap();
                ("tool component".to_owned(), ComponentKind::Tools)
            }
        };
        assert_eq!(
            component.kind, expected_kind,
            "{package} is not the kind of component GUESTS says"
        );
        writeln!(
            code,
            "/// `{package}` ({what}): {} bytes, sha256 {}.\npub const {name}: &str = {path:?};",
            component.bytes_len, component.sha256,
        )
        .unwrap();
    }
    writeln!(code, "const ALL: &[(&str, &str)] = &[{all}];").unwrap();
    writeln!(code, "const ALL_TOOLS: &[(&str, &str)] = &[{tools}];").unwrap();
    let generated = out_dir.join("guests.rs");
    std::fs::write(&generated, code)
        .unwrap_or_else(|e| panic!("writing {}: {e}", generated.display()));
}
