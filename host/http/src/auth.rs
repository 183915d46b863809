//! Bearer tokens with roles. The process keeps only each token's SHA-256
//! (a token file holds the hashes, never the tokens), compares digests in
//! constant time, and logs a caller by its token's name alone.
//!
//! A token file (`serve --tokens FILE`):
//!
//! ```toml
//! [[token]]
//! name = "backend"            # shown in logs instead of the token
//! role = "operate"            # read, operate or admin
//! sha256 = "9f86d0…"          # `waymark token new` prints the token and this line
//! ```

use std::path::Path;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{ApiError, ApiState};

/// What a token may do; each role may do what the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Look: runs, ledgers, workflows.
    Read,
    /// Act on runs: start, respond, approve, emit, cancel, pause.
    Operate,
    /// Change what the host runs: load bundles.
    Admin,
}

impl Role {
    /// The role's name, as token files write it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Operate => "operate",
            Role::Admin => "admin",
        }
    }

    /// The role named `name`.
    pub fn parse(name: &str) -> Option<Role> {
        [Role::Read, Role::Operate, Role::Admin]
            .into_iter()
            .find(|r| r.name() == name)
    }
}

/// One token the API lets in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// What logs call the caller.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// SHA-256 of the token, hex.
    pub sha256: String,
}

/// Why a token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file cannot be read.
    #[error("cannot read token file {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a token file.
    #[error("token file {path} is invalid: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

/// The tokens allowed in, by digest.
#[derive(Debug, Clone, Default)]
pub struct TokenSet {
    entries: Vec<(String, Role, [u8; 32])>,
}

impl TokenSet {
    /// The tokens of `entries`; a digest that is not 64 hex digits is an
    /// error (it could never match).
    pub fn new(entries: Vec<TokenEntry>) -> Result<Self, String> {
        let mut set = TokenSet::default();
        for e in entries {
            let mut digest = [0u8; 32];
            hex::decode_to_slice(e.sha256.trim(), &mut digest)
                .map_err(|_| format!("token '{}': sha256 must be 64 hex digits", e.name))?;
            set.entries.push((e.name, e.role, digest));
        }
        Ok(set)
    }

    /// The tokens of a token file.
    pub fn read(path: &Path) -> Result<Self, TokenError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: shown.clone(),
            source,
        })?;
        let file: TokenFile = toml::from_str(&text).map_err(|e| TokenError::Invalid {
            path: shown.clone(),
            message: e.message().to_owned(),
        })?;
        Self::new(file.token).map_err(|message| TokenError::Invalid {
            path: shown,
            message,
        })
    }

    /// A set of one token.
    pub fn single(name: &str, role: Role, token: &str) -> Self {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        TokenSet {
            entries: vec![(name.to_owned(), role, digest)],
        }
    }

    /// Whether no token is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The name and role of `token`, comparing its digest with every
    /// entry's in constant time (a match stops nothing early).
    pub fn check(&self, token: &str) -> Option<(&str, Role)> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (name, role, expected) in &self.entries {
            if constant_time_eq(&digest, expected) && found.is_none() {
                found = Some((name.as_str(), *role));
            }
        }
        found
    }
}

/// Equality of two digests that takes the same time wherever they differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// A fresh token: `wm_` and 244 random bits (two v4 UUIDs), hex.
pub fn new_token() -> String {
    format!(
        "wm_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// SHA-256 of `token`, hex: what a token file stores.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The caller of a request, by its bearer token.
pub(crate) struct Caller {
    pub(crate) name: String,
    pub(crate) role: Role,
}

impl Caller {
    /// Refuses a caller whose role is below `needed` (403).
    pub(crate) fn require(&self, needed: Role) -> Result<(), ApiError> {
        if self.role >= needed {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the {} role; the token '{}' has {}",
                needed.name(),
                self.name,
                self.role.name()
            )))
        }
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("send `Authorization: Bearer <token>`"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header is not `Bearer <token>`")
            })?;
        let (name, role) = state
            .tokens
            .check(token)
            .ok_or_else(|| ApiError::unauthorized("unknown token"))?;
        Ok(Caller {
            name: name.to_owned(),
            role,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_matches_its_own_digest_only() {
        let token = new_token();
        assert!(token.starts_with("wm_") && token.len() == 67, "{token}");
        let set = TokenSet::new(vec![
            TokenEntry {
                name: "ops".into(),
                role: Role::Operate,
                sha256: hash_token(&token),
            },
            TokenEntry {
                name: "viewer".into(),
                role: Role::Read,
                sha256: hash_token("other"),
            },
        ])
        .unwrap();
        assert_eq!(set.check(&token), Some(("ops", Role::Operate)));
        assert_eq!(set.check("other"), Some(("viewer", Role::Read)));
        assert_eq!(set.check(&token[..66]), None);
        assert_eq!(set.check(""), None);
        assert!(Role::Admin > Role::Operate && Role::Operate > Role::Read);
    }

    #[test]
    fn a_digest_that_is_not_hex_is_refused() {
        let bad = TokenEntry {
            name: "x".into(),
            role: Role::Read,
            sha256: "not-hex".into(),
        };
        assert!(
            TokenSet::new(vec![bad])
                .unwrap_err()
                .contains("64 hex digits")
        );
    }
}
