//! Archives written before the `tar` crate took over: `tests/data/` holds
//! two bundles packed by the hand-written writer the crate replaced. They
//! must still open, and packing the same inputs today must give the same
//! bytes.

mod common;

use std::path::{Path, PathBuf};

use common::{ORDER, PACKING, Raw, file, header, manifest_text, pax_record, tar};
use waymark_bundle::{
    Bundle, BundleError, BundleInfo, EntryProblem, PackSpec, PackTool, PackWorkflow,
    RequestedCapabilities, RequestedLimits, pack,
};

const OLD_PLAIN: &[u8] = include_bytes!("data/old-writer.wmb");
const OLD_LONG_NAMES: &[u8] = include_bytes!("data/old-writer-long-names.wmb");
const TOOLS: &[u8] = b"\0asm tools";

fn workflow(id: &str, file: &Path) -> PackWorkflow {
    PackWorkflow {
        id: id.into(),
        component_file: file.to_owned(),
        limits: RequestedLimits::default(),
        capabilities: RequestedCapabilities::default(),
    }
}

fn info() -> BundleInfo {
    BundleInfo {
        id: "acme.orders".into(),
        version: "1.2.0".into(),
        description: Some("Order handling".into()),
    }
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

/// The inputs of `old-writer.wmb`.
fn plain(dir: &Path) -> PackSpec {
    PackSpec {
        bundle: info(),
        workflows: vec![
            workflow("order", &write(dir, "order.wasm", ORDER)),
            workflow("packing", &write(dir, "packing.wasm", PACKING)),
        ],
        tools: Vec::new(),
    }
}

/// The component names of `old-writer-long-names.wmb`: one that needs the
/// ustar prefix field, one that needs a pax `path` record, and one of
/// two-byte characters that needs a pax record too.
fn long_names() -> [String; 3] {
    [
        format!("{}.wasm", "s".repeat(95)),
        format!("{}.wasm", "l".repeat(150)),
        format!("{}.wasm", "é".repeat(117)),
    ]
}

/// The inputs of `old-writer-long-names.wmb`.
fn with_long_names(dir: &Path) -> PackSpec {
    let [split, pax, wide] = long_names();
    PackSpec {
        bundle: info(),
        workflows: vec![
            workflow("order", &write(dir, &split, ORDER)),
            workflow("packing", &write(dir, &pax, PACKING)),
        ],
        tools: vec![PackTool {
            component_file: write(dir, &wide, TOOLS),
            limits: RequestedLimits::default(),
        }],
    }
}

#[test]
fn bundles_from_the_old_writer_open() {
    let b = Bundle::from_tar_bytes(OLD_PLAIN).unwrap();
    assert_eq!(b.component("order"), Some(ORDER));
    assert_eq!(b.component("packing"), Some(PACKING));

    let b = Bundle::from_tar_bytes(OLD_LONG_NAMES).unwrap();
    let [split, pax, wide] = long_names();
    assert_eq!(
        b.manifest.workflow("order").unwrap().component,
        format!("components/{split}")
    );
    assert_eq!(
        b.manifest.workflow("packing").unwrap().component,
        format!("components/{pax}")
    );
    assert_eq!(b.component("order"), Some(ORDER));
    assert_eq!(b.component("packing"), Some(PACKING));
    assert_eq!(b.tool_component(&format!("components/{wide}")), Some(TOOLS));
}

#[test]
fn packing_today_gives_the_old_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("plain.wmb");
    pack(&plain(tmp.path()), &out).unwrap();
    assert!(
        std::fs::read(&out).unwrap() == OLD_PLAIN,
        "plain bundle differs"
    );

    let out = tmp.path().join("long.wmb");
    pack(&with_long_names(tmp.path()), &out).unwrap();
    assert!(
        std::fs::read(&out).unwrap() == OLD_LONG_NAMES,
        "long-name bundle differs"
    );
}

// The reader's own checks on extension headers, beyond the crate's.

fn pax_header(records: &str) -> Vec<u8> {
    let mut out = header("././@PaxHeader", b'x', records.len() as u64, "").to_vec();
    out.extend_from_slice(records.as_bytes());
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// The manifest, then `extension` before `components/order.wasm`, then the
/// packing component.
fn with_extension(extension: &[u8], order_header_size: Option<u64>) -> Vec<u8> {
    let m = manifest_text();
    let mut bytes = tar(&[file("waymark-bundle.toml", m.as_bytes())]);
    bytes.truncate(bytes.len() - 1024);
    bytes.extend_from_slice(extension);
    let size = order_header_size.unwrap_or(ORDER.len() as u64);
    bytes.extend_from_slice(&header("components/order.wasm", b'0', size, ""));
    bytes.extend_from_slice(ORDER);
    bytes.resize(bytes.len().div_ceil(512) * 512, 0);
    bytes.extend(tar(&[file("components/packing.wasm", PACKING)]));
    bytes
}

fn corrupt_reason(r: Result<Bundle, BundleError>) -> String {
    match r {
        Err(BundleError::CorruptArchive { reason, .. }) => reason,
        other => panic!("expected CorruptArchive, got {other:?}"),
    }
}

#[test]
fn pax_headers_are_checked() {
    // A matching pax size is fine; a different one is refused, not obeyed.
    let ok = pax_header(&pax_record("size", &ORDER.len().to_string()));
    Bundle::from_tar_bytes(&with_extension(&ok, None)).unwrap();
    let lie = pax_header(&pax_record("size", "1024"));
    assert!(
        corrupt_reason(Bundle::from_tar_bytes(&with_extension(&lie, None))).contains("pax size")
    );

    // Every byte of a pax header must belong to a record.
    let gap = pax_header(&format!("\n{}", pax_record("path", "x.wasm")));
    corrupt_reason(Bundle::from_tar_bytes(&with_extension(&gap, None)));
    let bad = pax_header("5 path=x\n");
    corrupt_reason(Bundle::from_tar_bytes(&with_extension(&bad, None)));

    // Sparse files are not read.
    let sparse = pax_header(&pax_record("GNU.sparse.major", "1"));
    assert!(
        corrupt_reason(Bundle::from_tar_bytes(&with_extension(&sparse, None))).contains("sparse")
    );

    // An extension header is bounded before it is read.
    let mut huge = header("././@PaxHeader", b'x', 1 << 20, "").to_vec();
    huge.resize(512 + (1 << 20), b'a');
    assert!(
        corrupt_reason(Bundle::from_tar_bytes(&with_extension(&huge, None))).contains("too large")
    );

    // An extension that describes nothing.
    let m = manifest_text();
    let mut dangling = tar(&[file("waymark-bundle.toml", m.as_bytes())]);
    dangling.truncate(dangling.len() - 1024);
    dangling.extend(pax_header(&pax_record("path", "x.wasm")));
    dangling.extend_from_slice(&[0u8; 1024]);
    corrupt_reason(Bundle::from_tar_bytes(&dangling));
}

#[test]
fn a_pax_path_overrides_a_gnu_long_name() {
    let mut long = b"components/other.wasm\0".to_vec();
    let mut ext = header("././@LongLink", b'L', long.len() as u64, "").to_vec();
    ext.append(&mut long);
    ext.resize(1024, 0);
    ext.extend(pax_header(&pax_record("path", "components/order.wasm")));
    let b = Bundle::from_tar_bytes(&with_extension(&ext, None)).unwrap();
    assert_eq!(b.component("order"), Some(ORDER));
}

#[test]
fn header_fields_are_read_strictly() {
    let m = manifest_text();
    let good = tar(&[file("waymark-bundle.toml", m.as_bytes())]);
    let fix = |h: &mut [u8]| {
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h[..512].iter().map(|&b| u64::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    };
    // A size with a sign, a size with text after its terminator, a
    // base-256 size, and a POSIX magic with the wrong version.
    for (at, bytes) in [
        (124, &b"+0000001727\0"[..]),
        (124, b"0000000172\x007"),
        (124, &[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x03, 0xd7]),
        (263, b"\0\0"),
    ] {
        let mut bytes_ = good.clone();
        bytes_[at..at + bytes.len()].copy_from_slice(bytes);
        fix(&mut bytes_);
        assert!(
            matches!(
                Bundle::from_tar_bytes(&bytes_),
                Err(BundleError::CorruptArchive { offset: 0, .. })
            ),
            "{at}"
        );
    }
}

#[test]
fn a_link_that_claims_data_is_still_a_link() {
    let m = manifest_text();
    let e = [
        file("waymark-bundle.toml", m.as_bytes()),
        file("components/order.wasm", ORDER),
        file("components/packing.wasm", PACKING),
        Raw {
            name: "components/evil.wasm",
            typeflag: b'2',
            data: b"some data",
            link: "/etc/passwd",
        },
    ];
    assert!(matches!(
        Bundle::from_tar_bytes(&tar(&e)),
        Err(BundleError::UnexpectedEntry {
            kind: EntryProblem::Symlink,
            ..
        })
    ));
}
