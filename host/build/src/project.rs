//! What kind of guest a project directory holds, for `waymark build DIR`.

use std::path::{Path, PathBuf};

use crate::BuildError;
use crate::lang::Language;

/// A guest project found in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestProject {
    /// A Rust crate: its directory and package name.
    Rust {
        /// The directory holding `Cargo.toml`.
        dir: PathBuf,
        /// `[package] name`.
        package: String,
    },
    /// A Python (`app.py`, `tools.py`) or JavaScript (`app.js`,
    /// `tools.js`) guest.
    Interpreted {
        /// Its language.
        language: Language,
        /// The directory holding the app file.
        dir: PathBuf,
    },
}

/// The guest in `dir`: a `Cargo.toml` with a `[package]` first, then
/// `app.py` or `tools.py`, then `app.js` or `tools.js`.
pub fn detect(dir: &Path) -> Result<GuestProject, BuildError> {
    let manifest = dir.join("Cargo.toml");
    if manifest.is_file() {
        let text = std::fs::read_to_string(&manifest).map_err(|source| BuildError::Io {
            path: manifest.clone(),
            source,
        })?;
        let value: toml::Table = toml::from_str(&text).map_err(|e| BuildError::Toolchain {
            tool: "cargo".into(),
            cause: format!("{} is not valid TOML: {}", manifest.display(), e.message()),
        })?;
        if let Some(name) = value
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(toml::Value::as_str)
        {
            return Ok(GuestProject::Rust {
                dir: dir.to_owned(),
                package: name.to_owned(),
            });
        }
    }
    for language in [Language::Python, Language::JavaScript] {
        if language.kind_in(dir).is_some() {
            return Ok(GuestProject::Interpreted {
                language,
                dir: dir.to_owned(),
            });
        }
    }
    Err(BuildError::NotAGuest {
        dir: dir.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_project_is_found_and_anything_else_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert!(matches!(detect(root), Err(BuildError::NotAGuest { .. })));

        std::fs::write(root.join("Cargo.toml"), "[workspace]\n").unwrap();
        assert!(
            matches!(detect(root), Err(BuildError::NotAGuest { .. })),
            "a workspace without a package is no guest"
        );
        std::fs::write(root.join("tools.js"), "").unwrap();
        assert_eq!(
            detect(root).unwrap(),
            GuestProject::Interpreted {
                language: Language::JavaScript,
                dir: root.to_owned()
            }
        );
        std::fs::write(root.join("app.py"), "").unwrap();
        assert_eq!(
            detect(root).unwrap(),
            GuestProject::Interpreted {
                language: Language::Python,
                dir: root.to_owned()
            }
        );
        std::fs::write(root.join("Cargo.toml"), "[package]\nname = \"hello\"\n").unwrap();
        assert_eq!(
            detect(root).unwrap(),
            GuestProject::Rust {
                dir: root.to_owned(),
                package: "hello".into()
            }
        );
    }
}
