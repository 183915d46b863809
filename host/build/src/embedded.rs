//! The WIT contract and the Python and JavaScript helper modules, compiled
//! into this crate (and so into the `waymark` binary), so that a build runs
//! wherever the guest's project is, not only inside a Waymark checkout.
//!
//! The tools that read them (componentize-py, componentize-js, `wit-parser`)
//! want files, so [`dir`] writes them once into a directory named after
//! their content, `<cache>/waymark/sdk-<version>-<hash>/`, holding `wit/`,
//! `python/waymark.py` and `javascript/waymark.js`. The cache is
//! `$WAYMARK_CACHE_DIR`, else `$XDG_CACHE_HOME/waymark`, else
//! `~/.cache/waymark`, else the system's temporary directory. A directory of
//! that name is complete (it is renamed into place whole), so concurrent
//! builds share it and none sees it half-written.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use crate::BuildError;

/// `(path inside the directory, contents)`.
pub(crate) const FILES: &[(&str, &str)] = &[
    (
        "wit/workflow.wit",
        include_str!("../../../wit/workflow.wit"),
    ),
    ("wit/tool.wit", include_str!("../../../wit/tool.wit")),
    (
        "python/waymark.py",
        include_str!("../../../guest-sdk/python/waymark.py"),
    ),
    (
        "javascript/waymark.js",
        include_str!("../../../guest-sdk/javascript/waymark.js"),
    ),
];

/// The directory holding the embedded files, written on first use.
pub fn dir() -> Result<&'static Path, BuildError> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        let name = format!("sdk-{}-{}", env!("CARGO_PKG_VERSION"), content_hash());
        let mut last_error = String::new();
        for base in cache_bases() {
            match materialize(&base, &name) {
                Ok(dir) => return Ok(dir),
                Err(e) => last_error = format!("{}: {e}", base.display()),
            }
        }
        Err(last_error)
    })
    .as_ref()
    .map(PathBuf::as_path)
    .map_err(|cause| BuildError::Toolchain {
        tool: "waymark".into(),
        cause: format!("cannot write the WIT and helper modules to a cache directory: {cause}"),
    })
}

/// Where the files may go, in order of preference.
/// Where `waymark build` keeps the Python and JavaScript toolchains it
/// installs for projects outside a Waymark checkout, shared by all of
/// them: `toolchains/` in the first cache base ([`dir`] lists them).
pub fn toolchains_dir() -> PathBuf {
    cache_bases()
        .into_iter()
        .next()
        .unwrap_or_else(|| std::env::temp_dir().join("waymark"))
        .join("toolchains")
}

/// The embedded file at `path` (as listed in `FILES`); empty if none is,
/// which the scaffold's tests rule out.
pub(crate) fn file(path: &str) -> &'static str {
    FILES
        .iter()
        .find(|(p, _)| *p == path)
        .map_or("", |(_, contents)| contents)
}

fn cache_bases() -> Vec<PathBuf> {
    let env_dir = |var: &str| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let mut bases = Vec::new();
    if let Some(dir) = env_dir("WAYMARK_CACHE_DIR") {
        bases.push(dir);
    }
    if let Some(dir) = env_dir("XDG_CACHE_HOME") {
        bases.push(dir.join("waymark"));
    }
    if let Some(home) = env_dir("HOME") {
        bases.push(home.join(".cache").join("waymark"));
    }
    bases.push(std::env::temp_dir().join("waymark"));
    bases
}

fn content_hash() -> String {
    let mut hash = Sha256::new();
    for (path, contents) in FILES {
        hash.update(path.as_bytes());
        hash.update([0]);
        hash.update(contents.as_bytes());
        hash.update([0]);
    }
    hex::encode(&hash.finalize()[..8])
}

/// `base/name`, written whole into a temporary sibling and renamed into
/// place unless it is there already.
fn materialize(base: &Path, name: &str) -> io::Result<PathBuf> {
    let dir = base.join(name);
    if dir.is_dir() {
        return Ok(dir);
    }
    std::fs::create_dir_all(base)?;
    let tmp = base.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    for (path, contents) in FILES {
        let file = tmp.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, contents)?;
    }
    match std::fs::rename(&tmp, &dir) {
        Ok(()) => Ok(dir),
        // Another process put it there first: theirs is as good.
        Err(_) if dir.is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(dir)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_are_written_once_and_match_the_sources() {
        let dir = dir().unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        for (path, source) in [
            ("wit/workflow.wit", "wit/workflow.wit"),
            ("wit/tool.wit", "wit/tool.wit"),
            ("python/waymark.py", "guest-sdk/python/waymark.py"),
            ("javascript/waymark.js", "guest-sdk/javascript/waymark.js"),
        ] {
            assert_eq!(
                std::fs::read(dir.join(path)).unwrap(),
                std::fs::read(repo.join(source)).unwrap(),
                "{path}"
            );
        }
        assert_eq!(super::dir().unwrap(), dir);
    }

    #[test]
    fn a_second_writer_reuses_the_directory() {
        let base = tempfile_dir();
        let first = materialize(&base, "sdk-x").unwrap();
        let second = materialize(&base, "sdk-x").unwrap();
        assert_eq!(first, second);
        let entries: Vec<_> = std::fs::read_dir(&base).unwrap().flatten().collect();
        assert_eq!(entries.len(), 1, "no temporary directory is left behind");
        std::fs::remove_dir_all(&base).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "waymark-embedded-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }
}
