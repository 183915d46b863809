//! Reading, checking and writing bundles.

mod common;

use std::path::{Path, PathBuf};

use common::{ORDER, PACKING, Raw, file, manifest_text, sha, tar, valid_tar};
use waymark_bundle::{
    Bundle, BundleError, BundleForm, BundleInfo, BundleLimits, BundleSource, EntryProblem,
    Manifest, PackSpec, PackWorkflow, PathProblem, RequestedCapabilities, RequestedLimits, pack,
    pack_with,
};

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn write_components(dir: &Path) -> (PathBuf, PathBuf) {
    let order = dir.join("order.wasm");
    let packing = dir.join("packing.wasm");
    std::fs::write(&order, ORDER).unwrap();
    std::fs::write(&packing, PACKING).unwrap();
    (order, packing)
}

fn spec(order: &Path, packing: &Path) -> PackSpec {
    PackSpec {
        bundle: BundleInfo {
            id: "acme.orders".into(),
            version: "1.2.0".into(),
            description: Some("Order handling".into()),
        },
        workflows: vec![
            PackWorkflow {
                id: "order".into(),
                component_file: order.to_owned(),
                limits: RequestedLimits {
                    fuel: Some(500_000_000),
                    memory_mb: Some(64),
                    ..Default::default()
                },
                capabilities: RequestedCapabilities {
                    effects: vec!["ask_user".into(), "inventory.reserve".into()],
                    child_workflows: vec!["packing".into()],
                    data: true,
                },
            },
            PackWorkflow {
                id: "packing".into(),
                component_file: packing.to_owned(),
                limits: RequestedLimits::default(),
                capabilities: RequestedCapabilities::default(),
            },
        ],
        tools: Vec::new(),
    }
}

/// A directory bundle written by hand (manifest text and files as given).
fn dir_bundle(root: &Path, manifest: &str) -> PathBuf {
    let b = root.join("bundle");
    std::fs::create_dir_all(b.join("components")).unwrap();
    std::fs::write(b.join("waymark-bundle.toml"), manifest).unwrap();
    std::fs::write(b.join("components/order.wasm"), ORDER).unwrap();
    std::fs::write(b.join("components/packing.wasm"), PACKING).unwrap();
    b
}

// ---------------------------------------------------------------- round trips

#[test]
fn pack_and_open_archive() {
    let tmp = tempdir();
    let (order, packing) = write_components(tmp.path());
    let out = tmp.path().join("acme.wmb");
    let packed = pack(&spec(&order, &packing), &out).unwrap();
    assert_eq!(packed.form, BundleForm::Archive);
    assert_eq!(packed.total_bytes, (ORDER.len() + PACKING.len()) as u64);

    let b = Bundle::open(&out).unwrap();
    assert_eq!(b.source, BundleSource::Archive(out.clone()));
    assert_eq!(b.manifest, packed.manifest);
    assert_eq!(b.digest(), packed.digest);
    assert_eq!(b.component("order"), Some(ORDER));
    assert_eq!(b.component("packing"), Some(PACKING));
    assert_eq!(b.component("nope"), None);
    assert_eq!(
        b.manifest.components["components/order.wasm"].sha256,
        sha(ORDER)
    );
    assert_eq!(
        b.manifest.components["components/order.wasm"].size,
        Some(ORDER.len() as u64)
    );
    assert!(b.manifest.workflows[0].capabilities.data);

    // In memory too, and no temporary file is left behind.
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(bytes.len() % 512, 0);
    let m = Bundle::from_tar_bytes(&bytes).unwrap();
    assert_eq!(m.manifest, b.manifest);
    assert_eq!(m.components, b.components);
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !names.iter().any(|n| n.contains("waymark-pack")),
        "{names:?}"
    );
}

#[test]
fn packing_is_deterministic_and_replaces_an_archive() {
    let tmp = tempdir();
    let (order, packing) = write_components(tmp.path());
    let a = tmp.path().join("a.wmb");
    let b = tmp.path().join("b.wmb");
    pack(&spec(&order, &packing), &a).unwrap();
    pack(&spec(&order, &packing), &b).unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    // Packing again over an existing archive replaces it.
    pack(&spec(&order, &packing), &a).unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

#[test]
fn packed_archive_is_a_plain_tar() {
    let tmp = tempdir();
    let (order, packing) = write_components(tmp.path());
    let out = tmp.path().join("acme.wmb");
    pack(&spec(&order, &packing), &out).unwrap();
    let Ok(listing) = std::process::Command::new("tar")
        .args(["tvf"])
        .arg(&out)
        .output()
    else {
        eprintln!("no tar program; skipped");
        return;
    };
    assert!(listing.status.success());
    let text = String::from_utf8(listing.stdout).unwrap();
    let names: Vec<&str> = text
        .lines()
        .map(|l| l.split_whitespace().last().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "waymark-bundle.toml",
            "components/order.wasm",
            "components/packing.wasm"
        ]
    );
    assert!(
        text.lines().all(|l| l.starts_with("-rw-r--r-- 0/0")),
        "{text}"
    );
}

#[test]
fn archives_from_the_tar_program_open() {
    let tmp = tempdir();
    let (order, packing) = write_components(tmp.path());
    let dir = tmp.path().join("dir");
    pack(&spec(&order, &packing), &dir).unwrap();
    for format in ["gnu", "pax", "ustar"] {
        let out = tmp.path().join(format!("{format}.wmb"));
        let Ok(status) = std::process::Command::new("tar")
            .arg(format!("--format={format}"))
            .arg("-cf")
            .arg(&out)
            .arg("-C")
            .arg(&dir)
            .args(["waymark-bundle.toml", "components"])
            .status()
        else {
            eprintln!("no tar program; skipped");
            return;
        };
        assert!(status.success());
        let b = Bundle::open(&out).unwrap_or_else(|e| panic!("{format}: {e}"));
        assert_eq!(b.component("order"), Some(ORDER));
    }
}

#[test]
fn long_component_names_round_trip() {
    let tmp = tempdir();
    for len in [90, 150, 235] {
        let name = format!("{}.wasm", "n".repeat(len));
        let file = tmp.path().join(&name);
        std::fs::write(&file, ORDER).unwrap();
        let mut s = spec(&file, &file);
        s.workflows.truncate(1);
        s.workflows[0].capabilities.child_workflows.clear();
        let out = tmp.path().join(format!("long{len}.wmb"));
        pack(&s, &out).unwrap();
        let b = Bundle::open(&out).unwrap();
        assert_eq!(
            b.manifest.workflows[0].component,
            format!("components/{name}")
        );
        assert_eq!(b.component("order"), Some(ORDER));
    }
}

#[test]
fn pack_and_open_directory() {
    let tmp = tempdir();
    let (order, packing) = write_components(tmp.path());
    let out = tmp.path().join("acme");
    let packed = pack(&spec(&order, &packing), &out).unwrap();
    assert_eq!(packed.form, BundleForm::Directory);
    assert!(out.join("waymark-bundle.toml").is_file());
    assert_eq!(
        std::fs::read(out.join("components/order.wasm")).unwrap(),
        ORDER
    );
    let b = Bundle::open(&out).unwrap();
    assert_eq!(b.source, BundleSource::Directory(out.clone()));
    assert_eq!(b.manifest, packed.manifest);
    assert_eq!(b.digest(), packed.digest);
    assert_eq!(b.component("packing"), Some(PACKING));

    // A directory is never packed over.
    assert!(matches!(
        pack(&spec(&order, &packing), &out),
        Err(BundleError::OutputExists { .. })
    ));
}

#[test]
fn pack_shares_one_file_and_refuses_a_clash() {
    let tmp = tempdir();
    let (order, _) = write_components(tmp.path());
    let mut s = spec(&order, &order);
    let packed = pack(&s, &tmp.path().join("shared.wmb")).unwrap();
    assert_eq!(packed.manifest.components.len(), 1);

    let other = tmp.path().join("sub");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("order.wasm"), b"different").unwrap();
    s.workflows[1].component_file = other.join("order.wasm");
    assert!(matches!(
        pack(&s, &tmp.path().join("clash.wmb")),
        Err(BundleError::ComponentNameClash { .. })
    ));
}

#[test]
fn pack_checks_what_it_writes() {
    let tmp = tempdir();
    let (order, packing) = write_components(tmp.path());
    let mut s = spec(&order, &packing);
    s.bundle.id = "Acme".into();
    let out = tmp.path().join("bad.wmb");
    assert!(matches!(
        pack(&s, &out),
        Err(BundleError::InvalidManifest { field, .. }) if field == "bundle.id"
    ));
    assert!(!out.exists());

    let txt = tmp.path().join("order.txt");
    std::fs::write(&txt, ORDER).unwrap();
    let s = spec(&txt, &packing);
    assert!(matches!(
        pack(&s, &out),
        Err(BundleError::UnsafePath {
            reason: PathProblem::NotWasm,
            ..
        })
    ));

    let limits = BundleLimits {
        component_bytes: 10,
        ..Default::default()
    };
    assert!(matches!(
        pack_with(&spec(&order, &packing), &out, &limits),
        Err(BundleError::ComponentTooLarge { .. })
    ));
    assert!(!out.exists());
}

#[test]
fn inspect_reports_what_the_bundle_asks_for() {
    let b = Bundle::from_tar_bytes(&valid_tar()).unwrap();
    let r = b.inspect();
    assert_eq!(r.id, "acme.orders");
    assert_eq!(r.version, "1.2.0");
    assert_eq!(r.digest, b.digest());
    assert_eq!(r.workflows.len(), 2);
    assert_eq!(r.workflows[0].sha256, sha(ORDER));
    assert_eq!(r.workflows[0].size, ORDER.len() as u64);
    assert_eq!(r.workflows[0].limits.fuel, Some(500_000_000));
    assert_eq!(r.total_bytes, (ORDER.len() + PACKING.len()) as u64);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(
        json["workflows"][0]["capabilities"]["child_workflows"][0],
        "packing"
    );
    assert_eq!(json["source"]["form"], "memory");
    assert!(
        json["workflows"][1]["limits"]
            .as_object()
            .unwrap()
            .is_empty()
    );
}

// ---------------------------------------------------------------- manifest

#[test]
fn canonical_text_round_trips_and_is_stable() {
    let m = Manifest::parse(&manifest_text()).unwrap();
    let text = m.to_toml();
    assert_eq!(Manifest::parse(&text).unwrap(), m);
    assert_eq!(Manifest::parse(&text).unwrap().to_toml(), text);
    let expected = format!(
        r#"schema = 1

[bundle]
id = "acme.orders"
version = "1.2.0"
description = "Order handling"

[[workflows]]
id = "order"
component = "components/order.wasm"

[workflows.limits]
fuel = 500000000
memory_mb = 64

[workflows.capabilities]
effects = ["ask_user", "inventory.reserve"]
child_workflows = ["packing"]

[[workflows]]
id = "packing"
component = "components/packing.wasm"

[components."components/order.wasm"]
sha256 = "{}"
size = {}

[components."components/packing.wasm"]
sha256 = "{}"
"#,
        sha(ORDER),
        ORDER.len(),
        sha(PACKING)
    );
    assert_eq!(text, expected);

    // Formatting does not change the digest; content does.
    let spaced = manifest_text().replace(" = ", "   =   ");
    let a = Bundle::from_tar_bytes(&valid_tar()).unwrap();
    let b = Bundle::from_tar_bytes(&tar(&[
        file("waymark-bundle.toml", spaced.as_bytes()),
        file("components/order.wasm", ORDER),
        file("components/packing.wasm", PACKING),
    ]))
    .unwrap();
    assert_eq!(a.digest(), b.digest());
    let mut c = a.clone();
    c.manifest.bundle.version = "1.2.1".into();
    assert_ne!(a.digest(), c.digest());
}

#[test]
fn canonical_text_escapes_strings() {
    let mut m = Manifest::parse(&manifest_text()).unwrap();
    m.bundle.description = Some("quote \" back \\ tab\tline\nünï".into());
    let again = Manifest::parse(&m.to_toml()).unwrap();
    assert_eq!(again, m);
}

/// Replaces `from` in the base manifest and expects the parse to fail.
fn bad(from: &str, to: &str) -> BundleError {
    let text = manifest_text();
    assert!(text.contains(from), "base manifest lacks {from:?}");
    match Manifest::parse(&text.replacen(from, to, 1)) {
        Ok(_) => panic!("accepted manifest with {from:?} -> {to:?}"),
        Err(e) => e,
    }
}

fn field_of(e: &BundleError) -> &str {
    match e {
        BundleError::InvalidManifest { field, .. } => field,
        other => panic!("expected InvalidManifest, got {other:?}"),
    }
}

#[test]
fn schema_rules() {
    let e = bad("schema = 1", "schema = 2");
    assert!(matches!(
        e,
        BundleError::UnsupportedSchema {
            found: 2,
            supported: 1,
            ..
        }
    ));
    assert!(e.to_string().contains("upgrade"), "{e}");
    // A newer schema with fields this version has never heard of is still
    // reported as a newer schema.
    let e = bad("schema = 1", "schema = 2\nfuture = true");
    assert!(matches!(e, BundleError::UnsupportedSchema { found: 2, .. }));
    assert!(matches!(
        bad("schema = 1", "schema = 0"),
        BundleError::UnsupportedSchema { found: 0, .. }
    ));
    assert_eq!(field_of(&bad("schema = 1", "")), "schema");
    assert_eq!(field_of(&bad("schema = 1", "schema = \"1\"")), "schema");
}

#[test]
fn unknown_fields_are_errors() {
    for (from, to, word) in [
        ("schema = 1", "schema = 1\nextra = 1", "extra"),
        (
            "id = \"acme.orders\"",
            "id = \"acme.orders\"\nowner = \"x\"",
            "owner",
        ),
        ("fuel = 500000000", "fule = 500000000", "fule"),
        ("child_workflows", "children", "children"),
        ("size = ", "bytes = ", "bytes"),
        (
            "component = \"components/packing.wasm\"",
            "component = \"components/packing.wasm\"\nentry = \"x\"",
            "entry",
        ),
    ] {
        match bad(from, to) {
            BundleError::ManifestSyntax { detail, .. } => {
                assert!(detail.contains(word), "{word}: {detail}")
            }
            other => panic!("{word}: {other:?}"),
        }
    }
    assert!(matches!(
        Manifest::parse("schema = 1\n[bundle\n"),
        Err(BundleError::ManifestSyntax { .. })
    ));
    assert!(matches!(
        bad("size = ", "size = -"),
        BundleError::ManifestSyntax { .. }
    ));
}

#[test]
fn bundle_id_and_version_rules() {
    let id = "id = \"acme.orders\"";
    for to in [
        "\"\"",
        "\"Acme\"",
        "\"-acme\"",
        "\".acme\"",
        "\"acme orders\"",
        "\"acme/orders\"",
        "\"acmé\"",
    ] {
        assert_eq!(
            field_of(&bad(id, &format!("id = {to}"))),
            "bundle.id",
            "{to}"
        );
    }
    assert_eq!(
        field_of(&bad(id, &format!("id = \"{}\"", "a".repeat(65)))),
        "bundle.id"
    );
    let ok = manifest_text().replace(id, &format!("id = \"{}\"", "a".repeat(64)));
    Manifest::parse(&ok).unwrap();
    let ok = manifest_text().replace(id, "id = \"0.x_y-z\"");
    Manifest::parse(&ok).unwrap();

    let v = "version = \"1.2.0\"";
    for to in ["\"\"", "\"1.2 beta\"", "\"1.2.0\\t\"", "\"1.2.ü\""] {
        assert_eq!(
            field_of(&bad(v, &format!("version = {to}"))),
            "bundle.version",
            "{to}"
        );
    }
    assert_eq!(
        field_of(&bad(v, &format!("version = \"{}\"", "1".repeat(65)))),
        "bundle.version"
    );
    let ok = manifest_text().replace(v, "version = \"2024-01-01+build.7~rc!\"");
    Manifest::parse(&ok).unwrap();

    assert_eq!(
        field_of(&bad(
            "description = \"Order handling\"",
            "description = \"bell\\u0007\""
        )),
        "bundle.description"
    );
}

#[test]
fn workflow_rules() {
    // At least one workflow.
    let text = "schema = 1\n[bundle]\nid = \"a\"\nversion = \"1\"\n";
    assert!(matches!(
        Manifest::parse(text),
        Err(BundleError::NoWorkflows { .. })
    ));
    // Unique ids.
    assert!(matches!(
        bad("id = \"packing\"", "id = \"order\""),
        BundleError::DuplicateWorkflow { id, .. } if id == "order"
    ));
    // Sane ids.
    assert_eq!(
        field_of(&bad("id = \"order\"", "id = \"\"")),
        "workflows[0].id"
    );
    assert_eq!(
        field_of(&bad("id = \"order\"", "id = \"or der\"")),
        "workflows[0].id"
    );
    // Every workflow's component is listed.
    assert!(matches!(
        bad("component = \"components/packing.wasm\"", "component = \"components/other.wasm\""),
        BundleError::UnlistedComponent { workflow, component, .. }
            if workflow == "packing" && component == "components/other.wasm"
    ));
    // Every listed component is used.
    let text = manifest_text().replace(
        "component = \"components/packing.wasm\"",
        "component = \"components/order.wasm\"",
    );
    assert!(matches!(
        Manifest::parse(&text),
        Err(BundleError::UnusedComponent { component, .. }) if component == "components/packing.wasm"
    ));
}

#[test]
fn limit_and_capability_rules() {
    assert_eq!(
        field_of(&bad("fuel = 500000000", "fuel = 0")),
        "workflows[0].limits.fuel"
    );
    assert_eq!(
        field_of(&bad("memory_mb = 64", "memory_mb = 64\nmax_log_lines = 0")),
        "workflows[0].limits.max_log_lines"
    );
    assert!(matches!(
        bad("memory_mb = 64", "memory_mb = 5000000000"),
        BundleError::ManifestSyntax { .. }
    ));
    let effects = "effects = [\"ask_user\", \"inventory.reserve\"]";
    for to in [
        "effects = [\"\"]",
        "effects = [\"ask user\"]",
        "effects = [\"-x\"]",
        "effects = [\"ask_user\", \"ask_user\"]",
    ] {
        assert_eq!(
            field_of(&bad(effects, to)),
            "workflows[0].capabilities.effects",
            "{to}"
        );
    }
    assert_eq!(
        field_of(&bad(
            effects,
            &format!("effects = [\"{}\"]", "e".repeat(129))
        )),
        "workflows[0].capabilities.effects"
    );
    let children = "child_workflows = [\"packing\"]";
    for to in [
        "child_workflows = [\"\"]",
        "child_workflows = [\"a/b\"]",
        "child_workflows = [\"packing\", \"packing\"]",
    ] {
        assert_eq!(
            field_of(&bad(children, to)),
            "workflows[0].capabilities.child_workflows",
            "{to}"
        );
    }
    assert!(matches!(
        bad("child_workflows = [\"packing\"]", "data = 1"),
        BundleError::ManifestSyntax { .. }
    ));
}

#[test]
fn digest_rules() {
    let good = sha(ORDER);
    for to in [
        good.to_uppercase(),
        good[..63].to_owned(),
        format!("{good}0"),
        format!("{}g", &good[..63]),
        String::new(),
    ] {
        assert!(
            matches!(bad(&good, &to), BundleError::InvalidDigest { component, .. } if component == "components/order.wasm"),
            "{to}"
        );
    }
}

#[test]
fn unsafe_component_paths() {
    let cases: &[(&str, PathProblem)] = &[
        ("../x.wasm", PathProblem::DotDotSegment),
        ("components/../../x.wasm", PathProblem::DotDotSegment),
        ("/etc/x.wasm", PathProblem::Absolute),
        ("a/./b.wasm", PathProblem::DotSegment),
        ("a\\\\b.wasm", PathProblem::Backslash),
        ("C:/x.wasm", PathProblem::DriveLetter),
        ("a//b.wasm", PathProblem::EmptySegment),
        ("a\\u0000b.wasm", PathProblem::ControlCharacter),
        ("a\\u001bb.wasm", PathProblem::ControlCharacter),
        ("a/b:c.wasm", PathProblem::Colon),
        ("components/order.wat", PathProblem::NotWasm),
        ("", PathProblem::Empty),
    ];
    let long = format!("{}.wasm", "x".repeat(251));
    let all = cases
        .iter()
        .copied()
        .chain([(long.as_str(), PathProblem::TooLong)]);
    for (path, why) in all {
        // In a workflow entry, before the component is looked up.
        let e = bad(
            "component = \"components/order.wasm\"",
            &format!("component = \"{path}\""),
        );
        assert!(
            matches!(&e, BundleError::UnsafePath { reason, .. } if *reason == why),
            "workflow {path}: {e:?}"
        );
        // As a [components] key.
        let e = bad(
            "[components.\"components/order.wasm\"]",
            &format!("[components.\"{path}\"]"),
        );
        assert!(
            matches!(&e, BundleError::UnsafePath { reason, .. } if *reason == why),
            "components {path}: {e:?}"
        );
    }
}

#[test]
fn errors_name_the_bundle_and_the_entry() {
    let e = bad("components/packing.wasm\"\n\n", "../p.wasm\"\n\n");
    let msg = e.to_string();
    assert!(
        msg.contains("<manifest>") && msg.contains("../p.wasm"),
        "{msg}"
    );
    let tmp = tempdir();
    let b = dir_bundle(tmp.path(), &manifest_text());
    std::fs::write(b.join("components/order.wasm"), b"tampered").unwrap();
    let msg = Bundle::open(&b).unwrap_err().to_string();
    assert!(
        msg.contains(&b.display().to_string()) && msg.contains("components/order.wasm"),
        "{msg}"
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    for depth in [1_000, 100_000] {
        let text = format!("schema = 1\nx = {}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(Manifest::parse(&text).is_err());
        let text = format!(
            "schema = 1\nx = {}1{}",
            "{a=".repeat(depth),
            "}".repeat(depth)
        );
        assert!(Manifest::parse(&text).is_err());
    }
}

// ---------------------------------------------------------------- archives

fn open_tar(entries: &[Raw<'_>]) -> Result<Bundle, BundleError> {
    Bundle::from_tar_bytes(&tar(entries))
}

fn unexpected(r: Result<Bundle, BundleError>) -> (String, EntryProblem) {
    match r {
        Err(BundleError::UnexpectedEntry { entry, kind, .. }) => (entry, kind),
        other => panic!("expected UnexpectedEntry, got {other:?}"),
    }
}

#[test]
fn tampered_component_is_refused() {
    let m = manifest_text();
    let mut tampered = ORDER.to_vec();
    tampered[3] ^= 1;
    let r = open_tar(&[
        file("waymark-bundle.toml", m.as_bytes()),
        file("components/order.wasm", &tampered),
        file("components/packing.wasm", PACKING),
    ]);
    match r {
        Err(BundleError::DigestMismatch {
            path,
            expected,
            actual,
            ..
        }) => {
            assert_eq!(path, "components/order.wasm");
            assert_eq!(expected, sha(ORDER));
            assert_eq!(actual, sha(&tampered));
        }
        other => panic!("{other:?}"),
    }
    // One flipped byte in the packed file itself, too.
    let mut bytes = valid_tar();
    let at = bytes
        .windows(PACKING.len())
        .position(|w| w == PACKING)
        .unwrap();
    bytes[at + 10] ^= 0x20;
    assert!(matches!(
        Bundle::from_tar_bytes(&bytes),
        Err(BundleError::DigestMismatch { path, .. }) if path == "components/packing.wasm"
    ));
}

#[test]
fn wrong_size_is_refused() {
    let m = manifest_text().replace(
        &format!("size = {}", ORDER.len()),
        &format!("size = {}", ORDER.len() + 1),
    );
    assert!(matches!(
        open_tar(&[
            file("waymark-bundle.toml", m.as_bytes()),
            file("components/order.wasm", ORDER),
            file("components/packing.wasm", PACKING),
        ]),
        Err(BundleError::SizeMismatch { expected, actual, .. })
            if expected == ORDER.len() as u64 + 1 && actual == ORDER.len() as u64
    ));
}

#[test]
fn archive_entry_rules() {
    let m = manifest_text();
    let m = m.as_bytes();
    let base = || {
        vec![
            file("waymark-bundle.toml", m),
            file("components/order.wasm", ORDER),
            file("components/packing.wasm", PACKING),
        ]
    };
    let link = |name, typeflag, target| Raw {
        name,
        typeflag,
        data: b"",
        link: target,
    };

    // Links, devices, FIFOs.
    for (typeflag, problem) in [
        (b'2', EntryProblem::Symlink),
        (b'1', EntryProblem::HardLink),
        (b'3', EntryProblem::Device),
        (b'4', EntryProblem::Device),
        (b'6', EntryProblem::Fifo),
        (b'S', EntryProblem::UnsupportedType(b'S')),
        (b'g', EntryProblem::UnsupportedType(b'g')),
    ] {
        let mut e = base();
        e.push(link("components/evil.wasm", typeflag, "/etc/passwd"));
        assert_eq!(
            unexpected(open_tar(&e)),
            ("components/evil.wasm".into(), problem)
        );
    }
    // A listed component that is a symlink.
    let e = vec![
        file("waymark-bundle.toml", m),
        link("components/order.wasm", b'2', "/etc/passwd"),
        file("components/packing.wasm", PACKING),
    ];
    assert_eq!(unexpected(open_tar(&e)).1, EntryProblem::Symlink);

    // Duplicates, of a component and of the manifest.
    let mut e = base();
    e.push(file("components/order.wasm", ORDER));
    assert_eq!(
        unexpected(open_tar(&e)),
        ("components/order.wasm".into(), EntryProblem::Duplicate)
    );
    let mut e = base();
    e.push(file("waymark-bundle.toml", m));
    assert_eq!(unexpected(open_tar(&e)).1, EntryProblem::Duplicate);

    // Anything not listed.
    for extra in ["components/extra.wasm", "README.md", "components/x/y"] {
        let mut e = base();
        e.push(file(extra, b"x"));
        assert_eq!(
            unexpected(open_tar(&e)),
            (extra.into(), EntryProblem::NotListed)
        );
    }

    // Unsafe names, even for entries that would otherwise be ignored.
    for (name, why) in [
        ("../x.wasm", PathProblem::DotDotSegment),
        ("components/../../x", PathProblem::DotDotSegment),
        ("/etc/passwd", PathProblem::Absolute),
        ("./waymark-bundle.toml", PathProblem::DotSegment),
        ("a\\b", PathProblem::Backslash),
        ("C:/x.wasm", PathProblem::DriveLetter),
    ] {
        let mut e = base();
        e.push(file(name, b"x"));
        assert!(
            matches!(open_tar(&e), Err(BundleError::UnsafePath { path, reason, .. }) if path == name && reason == why),
            "{name}"
        );
    }

    // Directory entries are fine when they lead to a component, and nowhere
    // else; they carry no data.
    let mut e = base();
    e.insert(0, link("components/", b'5', ""));
    open_tar(&e).unwrap();
    let mut e = base();
    e.push(link("other/", b'5', ""));
    assert_eq!(
        unexpected(open_tar(&e)),
        ("other/".into(), EntryProblem::NotListed)
    );
    let mut e = base();
    e.push(Raw {
        name: "components/",
        typeflag: b'5',
        data: b"data",
        link: "",
    });
    assert_eq!(
        unexpected(open_tar(&e)).1,
        EntryProblem::DirectoryWithContent
    );
}

#[test]
fn missing_pieces() {
    let m = manifest_text();
    assert!(matches!(
        open_tar(&[
            file("components/order.wasm", ORDER),
            file("components/packing.wasm", PACKING)
        ]),
        Err(BundleError::MissingManifest { .. })
    ));
    assert!(matches!(
        open_tar(&[
            file("waymark-bundle.toml", m.as_bytes()),
            file("components/order.wasm", ORDER)
        ]),
        Err(BundleError::MissingComponent { path, .. }) if path == "components/packing.wasm"
    ));
    assert!(matches!(
        Bundle::from_tar_bytes(&[]),
        Err(BundleError::TruncatedArchive { .. })
    ));
    assert!(matches!(
        open_tar(&[file("waymark-bundle.toml", b"\xff\xfe")]),
        Err(BundleError::ManifestNotUtf8 { .. })
    ));
}

#[test]
fn truncated_archives_are_refused() {
    let bytes = valid_tar();
    // Every cut short of the end-of-archive marker is an error.
    let marker = bytes.len() - 1024;
    for cut in (0..marker).step_by(7).chain([marker - 1, 511, 512, 513]) {
        let r = Bundle::from_tar_bytes(&bytes[..cut]);
        assert!(
            matches!(r, Err(BundleError::TruncatedArchive { .. })),
            "cut at {cut}: {r:?}"
        );
    }
    // One zero block is enough of a marker.
    Bundle::from_tar_bytes(&bytes[..marker + 512]).unwrap();
}

#[test]
fn corrupt_headers_are_refused() {
    let mut bytes = valid_tar();
    bytes[0] = b'X'; // name changes, checksum does not
    assert!(matches!(
        Bundle::from_tar_bytes(&bytes),
        Err(BundleError::CorruptArchive { offset: 0, .. })
    ));
    let not_tar = vec![b'a'; 4096];
    assert!(matches!(
        Bundle::from_tar_bytes(&not_tar),
        Err(BundleError::CorruptArchive { .. })
    ));
}

#[test]
fn size_limits() {
    let bytes = valid_tar();
    let limits = |m, c, t, n| BundleLimits {
        manifest_bytes: m,
        component_bytes: c,
        total_bytes: t,
        archive_entries: n,
    };
    assert!(matches!(
        Bundle::from_tar_bytes_with(&bytes, &limits(100, 1 << 20, 1 << 20, 100)),
        Err(BundleError::ManifestTooLarge { limit: 100, .. })
    ));
    assert!(matches!(
        Bundle::from_tar_bytes_with(&bytes, &limits(1 << 20, 40, 1 << 20, 100)),
        Err(BundleError::ComponentTooLarge { path, .. }) if path == "components/packing.wasm"
    ));
    assert!(matches!(
        Bundle::from_tar_bytes_with(&bytes, &limits(1 << 20, 1 << 20, 70, 100)),
        Err(BundleError::BundleTooLarge { limit: 70, .. })
    ));
    assert!(matches!(
        Bundle::from_tar_bytes_with(&bytes, &limits(1 << 20, 1 << 20, 1 << 20, 2)),
        Err(BundleError::TooManyEntries { limit: 2, .. })
    ));
    Bundle::from_tar_bytes_with(&bytes, &limits(4096, 100, 200, 3)).unwrap();

    // A manifest over the default 1 MiB limit.
    let mut big = manifest_text();
    big.push_str(&format!("# {}\n", "x".repeat(1 << 20)));
    assert!(matches!(
        open_tar(&[file("waymark-bundle.toml", big.as_bytes())]),
        Err(BundleError::ManifestTooLarge { .. })
    ));
}

#[test]
fn archive_file_is_read_like_memory() {
    let tmp = tempdir();
    let path = tmp.path().join("x.wmb");
    let mut bytes = valid_tar();
    std::fs::write(&path, &bytes).unwrap();
    Bundle::open(&path).unwrap();
    bytes.truncate(1500);
    std::fs::write(&path, &bytes).unwrap();
    let e = Bundle::open(&path).unwrap_err();
    assert!(matches!(e, BundleError::TruncatedArchive { .. }));
    assert!(e.to_string().contains(&path.display().to_string()));
}

// ---------------------------------------------------------------- directories

#[test]
fn directory_reads_only_what_is_listed() {
    let tmp = tempdir();
    let b = dir_bundle(tmp.path(), &manifest_text());
    // Unlisted files, even unreadable ones, are not looked at.
    std::fs::write(b.join("README.md"), "hi").unwrap();
    std::fs::write(b.join("components/extra.wasm"), "x").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink("/etc/passwd", b.join("components/link.wasm")).unwrap();
    let bundle = Bundle::open(&b).unwrap();
    assert_eq!(bundle.components.len(), 2);
}

#[test]
fn directory_tampered_component_is_refused() {
    let tmp = tempdir();
    let b = dir_bundle(tmp.path(), &manifest_text());
    let mut t = ORDER.to_vec();
    t[0] ^= 0xff;
    std::fs::write(b.join("components/order.wasm"), &t).unwrap();
    assert!(matches!(
        Bundle::open(&b),
        Err(BundleError::DigestMismatch { path, .. }) if path == "components/order.wasm"
    ));
    std::fs::remove_file(b.join("components/order.wasm")).unwrap();
    assert!(matches!(
        Bundle::open(&b),
        Err(BundleError::MissingComponent { path, .. }) if path == "components/order.wasm"
    ));
    std::fs::remove_file(b.join("waymark-bundle.toml")).unwrap();
    assert!(matches!(
        Bundle::open(&b),
        Err(BundleError::MissingManifest { .. })
    ));
}

#[cfg(unix)]
#[test]
fn directory_symlinks_are_refused() {
    use std::os::unix::fs::symlink;
    let tmp = tempdir();

    // A component that links to a file outside (with the right content, so
    // only the link itself is at fault).
    let outside = tmp.path().join("outside.wasm");
    std::fs::write(&outside, ORDER).unwrap();
    let b = dir_bundle(tmp.path(), &manifest_text());
    std::fs::remove_file(b.join("components/order.wasm")).unwrap();
    symlink(&outside, b.join("components/order.wasm")).unwrap();
    assert_eq!(
        unexpected(Bundle::open(&b)),
        ("components/order.wasm".into(), EntryProblem::Symlink)
    );
    // Even a link that stays inside.
    std::fs::write(b.join("inside.wasm"), ORDER).unwrap();
    std::fs::remove_file(b.join("components/order.wasm")).unwrap();
    symlink("../inside.wasm", b.join("components/order.wasm")).unwrap();
    assert_eq!(unexpected(Bundle::open(&b)).1, EntryProblem::Symlink);

    // A parent directory that is a link.
    let tmp2 = tempdir();
    let real = tmp2.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::write(real.join("order.wasm"), ORDER).unwrap();
    std::fs::write(real.join("packing.wasm"), PACKING).unwrap();
    let b = tmp2.path().join("bundle");
    std::fs::create_dir(&b).unwrap();
    std::fs::write(b.join("waymark-bundle.toml"), manifest_text()).unwrap();
    symlink(&real, b.join("components")).unwrap();
    assert_eq!(
        unexpected(Bundle::open(&b)),
        ("components".into(), EntryProblem::Symlink)
    );

    // The manifest itself.
    let tmp3 = tempdir();
    let b = dir_bundle(tmp3.path(), &manifest_text());
    let elsewhere = tmp3.path().join("m.toml");
    std::fs::rename(b.join("waymark-bundle.toml"), &elsewhere).unwrap();
    symlink(&elsewhere, b.join("waymark-bundle.toml")).unwrap();
    assert_eq!(
        unexpected(Bundle::open(&b)),
        ("waymark-bundle.toml".into(), EntryProblem::Symlink)
    );

    // A component that is a directory.
    let tmp4 = tempdir();
    let b = dir_bundle(tmp4.path(), &manifest_text());
    std::fs::remove_file(b.join("components/order.wasm")).unwrap();
    std::fs::create_dir(b.join("components/order.wasm")).unwrap();
    assert_eq!(unexpected(Bundle::open(&b)).1, EntryProblem::NotAFile);
}

#[test]
fn directory_limits_and_bad_manifest() {
    let tmp = tempdir();
    let b = dir_bundle(tmp.path(), &manifest_text());
    let limits = BundleLimits {
        component_bytes: 40,
        ..Default::default()
    };
    assert!(matches!(
        Bundle::open_with(&b, &limits),
        Err(BundleError::ComponentTooLarge { .. })
    ));
    let limits = BundleLimits {
        manifest_bytes: 10,
        ..Default::default()
    };
    assert!(matches!(
        Bundle::open_with(&b, &limits),
        Err(BundleError::ManifestTooLarge { .. })
    ));
    std::fs::write(
        b.join("waymark-bundle.toml"),
        manifest_text().replace("schema = 1", "schema = 2"),
    )
    .unwrap();
    assert!(matches!(
        Bundle::open(&b),
        Err(BundleError::UnsupportedSchema { found: 2, .. })
    ));
    // A manifest naming ../ is refused before anything is opened.
    let outside = tmp.path().join("x.wasm");
    std::fs::write(&outside, ORDER).unwrap();
    std::fs::write(
        b.join("waymark-bundle.toml"),
        manifest_text().replace("components/order.wasm", "../x.wasm"),
    )
    .unwrap();
    assert!(matches!(
        Bundle::open(&b),
        Err(BundleError::UnsafePath {
            reason: PathProblem::DotDotSegment,
            ..
        })
    ));
    assert!(matches!(
        Bundle::open(&tmp.path().join("absent")),
        Err(BundleError::Io { .. })
    ));
}

#[test]
fn the_documented_example_parses() {
    let doc = include_str!("../src/lib.rs");
    let start = doc.find("//! ```toml\n").unwrap() + "//! ```toml\n".len();
    let len = doc[start..].find("//! ```\n").unwrap();
    let text: String = doc[start..start + len]
        .lines()
        .map(|l| {
            format!(
                "{}\n",
                l.strip_prefix("//!").unwrap().trim_start_matches(' ')
            )
        })
        .collect();
    let m = Manifest::parse(&text).unwrap();
    assert_eq!(m.bundle.id, "acme.orders");
    assert_eq!(m.workflows[0].limits.max_log_lines, Some(256));
    assert_eq!(m.workflows[0].capabilities.effects.len(), 4);
    assert_eq!(m.components["components/order.wasm"].size, Some(12345));
}
