//! Any byte string given to `Bundle::from_tar_bytes` must give `Ok` or
//! `Err`; an `Ok` must be consistent with its own manifest.

#![no_main]

use libfuzzer_sys::fuzz_target;
use waymark_bundle::{Bundle, Manifest};

fuzz_target!(|data: &[u8]| {
    let Ok(bundle) = Bundle::from_tar_bytes(data) else {
        return;
    };
    let listed: Vec<_> = bundle.manifest.components.keys().collect();
    let read: Vec<_> = bundle.components.keys().collect();
    assert_eq!(listed, read, "read components differ from the listed ones");
    let again = Manifest::parse(&bundle.manifest.to_toml()).expect("canonical manifest reparses");
    assert_eq!(again, bundle.manifest);
    let _ = bundle.inspect();
});
