//! Seeded mutation testing on stable: tens of thousands of damaged archives
//! and manifests, each of which must give `Ok` or `Err`, never a panic.
//! Every `Ok` is also checked for consistency, so a mutation that slips
//! past a check is caught too. Deterministic: a failure names its seed and
//! iteration, and rerunning reproduces it. The cargo-fuzz targets in
//! `fuzz/` explore further with coverage guidance.

mod common;

use common::{ORDER, PACKING, Raw, file, manifest_text, seeds, sha, tar};
use waymark_bundle::{Bundle, BundleLimits, Manifest};

/// xorshift64*: small, fast, and good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const INTERESTING: &[u8] = &[
    0, 0xff, 0x80, 0x7f, b'0', b'7', b'8', b' ', b'/', b'.', b'\\', b':', b'\n', b'"', b'=', b'[',
    b']', b'5', b'2', b'1', b'x', b'L', b'g',
];

/// Applies one to four byte-level mutations.
fn mutate(rng: &mut Rng, data: &mut Vec<u8>, donors: &[Vec<u8>]) {
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = *rng.pick(INTERESTING);
            }
            2 if len > 0 => {
                let i = rng.below(len);
                data[i] = rng.next() as u8;
            }
            3 => data.truncate(rng.below(len + 1)),
            4 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                data.splice(i..i, bytes);
            }
            5 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(64)).min(len);
                data.drain(a..b);
            }
            6 => {
                // Splice a chunk of another archive in, often block-aligned.
                let donor = rng.pick(donors);
                if !donor.is_empty() {
                    let a = rng.below(donor.len());
                    let b = (a + 1 + rng.below(1024)).min(donor.len());
                    let at = if rng.chance(2) {
                        rng.below(len / 512 + 1) * 512
                    } else {
                        rng.below(len + 1)
                    };
                    let end = (at + (b - a)).min(len);
                    data.splice(at..end, donor[a..b].iter().copied());
                }
            }
            7 if len >= 1024 => {
                // Duplicate or drop a whole block.
                let block = rng.below(len / 512) * 512;
                let copy = data[block..block + 512].to_vec();
                if rng.chance(2) {
                    data.splice(block..block, copy);
                } else {
                    data.drain(block..block + 512);
                }
            }
            _ if len > 0 => {
                // Overwrite a numeric header field with octal-looking text.
                let block = rng.below(len.div_ceil(512)) * 512;
                let field = *rng.pick(&[124usize, 148, 100, 136, 156, 345]);
                let s = format!("{:o}", rng.next() >> rng.below(64));
                for (k, b) in s.bytes().enumerate().take(12) {
                    if let Some(slot) = data.get_mut(block + field + k) {
                        *slot = b;
                    }
                }
            }
            _ => {}
        }
    }
}

/// Recomputes the checksum of every block that looks like a header, so that
/// mutations reach the code behind the checksum test.
fn fix_checksums(data: &mut [u8]) {
    for block in data.chunks_exact_mut(512) {
        if &block[257..262] != b"ustar" {
            continue;
        }
        block[148..156].copy_from_slice(b"        ");
        let sum: u64 = block.iter().map(|&b| u64::from(b)).sum();
        let text = format!("{:06o}\0 ", sum % 0o1000000);
        block[148..156].copy_from_slice(text.as_bytes());
    }
}

/// Whatever opened must be consistent with its own manifest.
fn check_ok(b: &Bundle) {
    assert!(b.manifest.validate().is_ok());
    let listed: Vec<_> = b.manifest.components.keys().collect();
    let read: Vec<_> = b.components.keys().collect();
    assert_eq!(listed, read);
    for (path, data) in &b.components {
        let entry = &b.manifest.components[path];
        assert_eq!(sha(data), entry.sha256);
        if let Some(size) = entry.size {
            assert_eq!(size, data.len() as u64);
        }
    }
    let again = Manifest::parse(&b.manifest.to_toml()).expect("canonical text reparses");
    assert_eq!(again, b.manifest);
    let _ = b.inspect();
}

fn check_manifest(text: &str) {
    if let Ok(m) = Manifest::parse(text) {
        let canonical = m.to_toml();
        let again = Manifest::parse(&canonical).expect("canonical text reparses");
        assert_eq!(again, m);
        assert_eq!(again.to_toml(), canonical);
    }
}

fn small_limits() -> BundleLimits {
    BundleLimits {
        manifest_bytes: 64 << 10,
        component_bytes: 64 << 10,
        total_bytes: 256 << 10,
        archive_entries: 64,
    }
}

#[test]
fn mutated_archives_never_panic() {
    let seeds = seeds();
    for s in &seeds {
        check_ok(&Bundle::from_tar_bytes(s).expect("seed opens"));
    }
    let limits = small_limits();
    let mut rng = Rng(0x5eed_b0d1_e5ca_1ab1);
    let mut opened = 0;
    for i in 0..20_000 {
        let mut data = rng.pick(&seeds).clone();
        mutate(&mut rng, &mut data, &seeds);
        if rng.chance(2) {
            fix_checksums(&mut data);
        }
        let result = std::panic::catch_unwind(|| {
            let r = Bundle::from_tar_bytes_with(&data, &limits);
            if let Ok(b) = &r {
                check_ok(b);
            }
            r.is_ok()
        });
        match result {
            Ok(true) => opened += 1,
            Ok(false) => {}
            Err(_) => panic!("iteration {i} panicked on {} bytes: {data:?}", data.len()),
        }
    }
    // Some mutations (in padding, past the end marker) are harmless; make
    // sure the run was not all rejections at the first header.
    assert!(opened > 100, "only {opened} mutated archives opened");
}

const NAMES: &[&str] = &[
    "waymark-bundle.toml",
    "components/order.wasm",
    "components/packing.wasm",
    "components/",
    "components",
    "other.wasm",
    "../x.wasm",
    "/abs.wasm",
    "a/./b.wasm",
    "C:/x.wasm",
    "a\\b.wasm",
    "",
    "components//order.wasm",
];

const FRAGMENTS: &[&str] = &[
    "schema = 1\n",
    "schema = 2\n",
    "schema = \"1\"\n",
    "[bundle]\n",
    "id = \"acme.orders\"\n",
    "id = \"order\"\n",
    "id = \"packing\"\n",
    "id = \"\"\n",
    "id = \"Bad Id\"\n",
    "version = \"1.2.0\"\n",
    "version = \"\"\n",
    "description = \"d\\u0001\"\n",
    "description = \"\"\"multi\nline\"\"\"\n",
    "[[workflows]]\n",
    "component = \"components/order.wasm\"\n",
    "component = \"components/packing.wasm\"\n",
    "component = \"../x.wasm\"\n",
    "[workflows.limits]\n",
    "fuel = 0\n",
    "fuel = 9223372036854775807\n",
    "memory_mb = 4294967296\n",
    "timeout_ms = -1\n",
    "max_log_lines = 3\n",
    "[workflows.capabilities]\n",
    "effects = [\"ask_user\", \"x.y\"]\n",
    "effects = [\"\"]\n",
    "child_workflows = [\"packing\"]\n",
    "data = true\n",
    "[components.\"components/order.wasm\"]\n",
    "[components.\"components/packing.wasm\"]\n",
    "[components.\"C:/x.wasm\"]\n",
    "sha256 = \"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"\n",
    "sha256 = \"E3B0\"\n",
    "size = 0\n",
    "size = 25\n",
    "unknown = 1\n",
    "x = [[[[1]]]]\n",
    "y = { a = { b = 1 } }\n",
    "# comment\n",
    "\n",
    "= = =\n",
    "\"\n",
    "[",
    "]]\n",
    "z = 1979-05-27T07:32:00Z\n",
];

#[test]
fn generated_archives_never_panic() {
    let limits = small_limits();
    let mut rng = Rng(0x0bad_5eed_0000_0001);
    let base = manifest_text();
    let mut opened = 0;
    for i in 0..3_000 {
        let manifest = if rng.chance(4) {
            let mut t = base.clone().into_bytes();
            mutate(&mut rng, &mut t, &[base.clone().into_bytes()]);
            String::from_utf8_lossy(&t).into_owned()
        } else {
            base.clone()
        };
        let n = rng.below(6);
        let mut entries = Vec::new();
        for _ in 0..n {
            let name = *rng.pick(NAMES);
            let typeflag = *rng.pick(&[b'0', b'0', b'0', b'5', b'2', b'1', 0, b'7']);
            let data: &[u8] = match rng.below(4) {
                0 => ORDER,
                1 => PACKING,
                2 => manifest.as_bytes(),
                _ => b"",
            };
            entries.push(Raw {
                name,
                typeflag,
                data,
                link: "",
            });
        }
        if rng.chance(2) {
            entries.push(file("waymark-bundle.toml", manifest.as_bytes()));
            entries.push(file("components/order.wasm", ORDER));
            entries.push(file("components/packing.wasm", PACKING));
        }
        let k = entries.len();
        for j in 0..k {
            let other = rng.below(k);
            entries.swap(j, other);
        }
        let data = tar(&entries);
        let result = std::panic::catch_unwind(|| {
            let r = Bundle::from_tar_bytes_with(&data, &limits);
            if let Ok(b) = &r {
                check_ok(b);
            }
            r.is_ok()
        });
        match result {
            Ok(true) => opened += 1,
            Ok(false) => {}
            Err(_) => panic!("iteration {i} panicked"),
        }
    }
    assert!(opened > 50, "only {opened} generated archives opened");
}

#[test]
fn random_manifests_never_panic() {
    let mut rng = Rng(0xfeed_face_cafe_beef);
    let base = manifest_text().into_bytes();
    for i in 0..4_000 {
        let text = if rng.chance(2) {
            let mut t = base.clone();
            mutate(&mut rng, &mut t, std::slice::from_ref(&base));
            String::from_utf8_lossy(&t).into_owned()
        } else {
            (0..rng.below(24))
                .map(|_| *rng.pick(FRAGMENTS))
                .collect::<String>()
        };
        if std::panic::catch_unwind(|| check_manifest(&text)).is_err() {
            panic!("iteration {i} panicked on {text:?}");
        }
    }
    // The base and its canonical form are fixed points.
    check_manifest(&manifest_text());
}
