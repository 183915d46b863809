//! The one path rule shared by manifests and archives. A bundle path must
//! mean the same file on every system and never leave the bundle, so the
//! rule is deliberately narrower than any filesystem's.

use crate::error::PathProblem;

/// Longest path accepted, in bytes.
pub const MAX_PATH_BYTES: usize = 255;

/// Checks a component path: safe (see [`check_entry_path`]) and ending in
/// `.wasm` with a non-empty stem.
pub fn check_component_path(path: &str) -> Result<(), PathProblem> {
    check_entry_path(path)?;
    let file = path.rsplit('/').next().unwrap_or(path);
    if file.len() <= ".wasm".len() || !file.ends_with(".wasm") {
        return Err(PathProblem::NotWasm);
    }
    Ok(())
}

/// Checks any path inside a bundle: relative, `/`-separated, no `.`, `..`
/// or empty segments, no backslash, colon, NUL or control character, no
/// drive letter, at most 255 bytes.
pub fn check_entry_path(path: &str) -> Result<(), PathProblem> {
    if path.is_empty() {
        return Err(PathProblem::Empty);
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(PathProblem::TooLong);
    }
    if path.starts_with('/') {
        return Err(PathProblem::Absolute);
    }
    if path.chars().any(char::is_control) {
        return Err(PathProblem::ControlCharacter);
    }
    if path.contains('\\') {
        return Err(PathProblem::Backslash);
    }
    let b = path.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        return Err(PathProblem::DriveLetter);
    }
    if path.contains(':') {
        return Err(PathProblem::Colon);
    }
    for segment in path.split('/') {
        match segment {
            "" => return Err(PathProblem::EmptySegment),
            "." => return Err(PathProblem::DotSegment),
            ".." => return Err(PathProblem::DotDotSegment),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_paths() {
        for p in [
            "a.wasm",
            "components/order.wasm",
            "a/b/c-d_e.f.wasm",
            "ünï/cödé.wasm",
            "..a.wasm",
            "a/...wasm",
        ] {
            assert_eq!(check_component_path(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn refuses_each_unsafe_form() {
        let long = format!("{}.wasm", "a".repeat(251));
        for (p, why) in [
            ("", PathProblem::Empty),
            (long.as_str(), PathProblem::TooLong),
            ("/etc/x.wasm", PathProblem::Absolute),
            ("a\\b.wasm", PathProblem::Backslash),
            ("a\0b.wasm", PathProblem::ControlCharacter),
            ("a\nb.wasm", PathProblem::ControlCharacter),
            ("a\u{7f}.wasm", PathProblem::ControlCharacter),
            ("C:/x.wasm", PathProblem::DriveLetter),
            ("c:x.wasm", PathProblem::DriveLetter),
            ("a/b:c.wasm", PathProblem::Colon),
            ("a//b.wasm", PathProblem::EmptySegment),
            ("a/b.wasm/", PathProblem::EmptySegment),
            ("a/./b.wasm", PathProblem::DotSegment),
            ("./b.wasm", PathProblem::DotSegment),
            ("../x.wasm", PathProblem::DotDotSegment),
            ("a/../../x.wasm", PathProblem::DotDotSegment),
            ("a/b.wat", PathProblem::NotWasm),
            ("a/.wasm", PathProblem::NotWasm),
            ("a/b.WASM", PathProblem::NotWasm),
        ] {
            assert_eq!(check_component_path(p), Err(why), "{p:?}");
        }
        assert_eq!(check_component_path(&long[1..]), Ok(()));
    }
}
