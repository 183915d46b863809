//! Helpers shared by the integration tests: a hand-rolled tar writer (so
//! tests can build archives the crate itself would never write) and a small
//! valid bundle.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]

use sha2::{Digest, Sha256};

pub const ORDER: &[u8] = b"\0asm fake order component";
pub const PACKING: &[u8] = b"\0asm fake packing component, a little longer than the other";

pub fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// One raw tar member.
pub struct Raw<'a> {
    pub name: &'a str,
    pub typeflag: u8,
    pub data: &'a [u8],
    pub link: &'a str,
}

pub fn file<'a>(name: &'a str, data: &'a [u8]) -> Raw<'a> {
    Raw {
        name,
        typeflag: b'0',
        data,
        link: "",
    }
}

pub fn header(name: &str, typeflag: u8, size: u64, link: &str) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = typeflag;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

pub fn tar(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        out.extend_from_slice(&header(e.name, e.typeflag, e.data.len() as u64, e.link));
        out.extend_from_slice(e.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// A manifest for the two fake components.
pub fn manifest_text() -> String {
    format!(
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
        sha(PACKING),
    )
}

/// A valid archive holding [`manifest_text`] and both components.
pub fn valid_tar() -> Vec<u8> {
    let m = manifest_text();
    tar(&[
        file("waymark-bundle.toml", m.as_bytes()),
        file("components/order.wasm", ORDER),
        file("components/packing.wasm", PACKING),
    ])
}

/// A GNU long-name header followed by the entry it names.
pub fn gnu_long(name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut long = name.as_bytes().to_vec();
    long.push(0);
    out.extend_from_slice(&header("././@LongLink", b'L', long.len() as u64, ""));
    out.extend_from_slice(&long);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&header("short", b'0', data.len() as u64, ""));
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// One pax record, `<len> <key>=<value>\n`, where `<len>` counts itself.
pub fn pax_record(key: &str, value: &str) -> String {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while len.to_string().len() + body.len() != len {
        len = len.to_string().len() + body.len();
    }
    format!("{len}{body}")
}

/// A pax header carrying `path` (and an ignored `mtime`), followed by the
/// entry it names.
pub fn pax_path(name: &str, data: &[u8]) -> Vec<u8> {
    let record = pax_record("mtime", "0.5") + &pax_record("path", name);
    let mut out = Vec::new();
    out.extend_from_slice(&header("PaxHeader", b'x', record.len() as u64, ""));
    out.extend_from_slice(record.as_bytes());
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&header("short", b'0', data.len() as u64, ""));
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// Archives that open, each exercising a different header form.
pub fn seeds() -> Vec<Vec<u8>> {
    let m = manifest_text();
    let with_dir = tar(&[
        Raw {
            name: "components/",
            typeflag: b'5',
            data: b"",
            link: "",
        },
        file("components/packing.wasm", PACKING),
        file("waymark-bundle.toml", m.as_bytes()),
        file("components/order.wasm", ORDER),
    ]);
    let mut extended = tar(&[file("waymark-bundle.toml", m.as_bytes())]);
    extended.truncate(extended.len() - 1024);
    extended.extend(gnu_long("components/order.wasm", ORDER));
    extended.extend(pax_path("components/packing.wasm", PACKING));
    extended.extend_from_slice(&[0u8; 1024]);
    vec![valid_tar(), with_dir, extended]
}
