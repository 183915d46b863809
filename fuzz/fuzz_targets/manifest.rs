//! Any UTF-8 text given to `Manifest::parse` must give `Ok` or `Err`; an
//! accepted manifest must survive its canonical text unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use waymark_bundle::Manifest;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(manifest) = Manifest::parse(text) else {
        return;
    };
    let canonical = manifest.to_toml();
    let again = Manifest::parse(&canonical).expect("canonical manifest reparses");
    assert_eq!(again, manifest);
    assert_eq!(again.to_toml(), canonical, "canonical text is not a fixed point");
});
