//! An on-disk cache of compiled components, so loading a component a second
//! time skips Cranelift.
//!
//! Deserializing compiled code is trusting it: the bytes are machine code
//! that wasmtime maps executable without checking. So the cache only ever
//! deserializes bytes this host wrote itself:
//!
//! * the directory holds a 32-byte secret, `cache.key` (mode 0600, from the
//!   OS random source), made the first time the cache is opened;
//! * an entry is one file, `<key>.cwasm`, where `<key>` is
//!   `<sha256 of the component>-<sha256 of the engine's compatibility hash>`
//!   (see [`Engine::precompile_compatibility_hash`]: target, Cranelift flags,
//!   tunables such as fuel and epochs, wasm features, wasmtime version);
//! * the file is `MAGIC || tag || artifact`, where `artifact` is
//!   [`Component::serialize`]'s output and `tag = HMAC-SHA256(secret,
//!   DOMAIN || len(key) || key || artifact)`. The key is inside the MAC, so an
//!   authentic entry renamed to another component's or another
//!   configuration's key does not verify either;
//! * a file whose tag does not verify (damaged, truncated, forged by someone
//!   without the secret), or that wasmtime then refuses, is deleted and the
//!   component is compiled again: the caller sees a miss, never an error.
//!
//! The file is read into memory once, authenticated, and deserialized from
//! that same buffer, so it cannot change between the check and the use.
//! Entries are written to a temporary file and renamed into place, so a
//! reader sees a whole entry or none; a torn write (a crash) fails the tag.
//! Nothing is fsynced: losing an entry costs one compilation.
//!
//! The directory has a size budget ([`DEFAULT_BUDGET_BYTES`], or
//! [`CompileCache::with_budget`]): after writing an entry, the least recently
//! used entries (by modification time, which a hit refreshes) are deleted
//! until the entries fit. An interpreter inside a component makes entries of
//! 50-90 MB (Python, JavaScript guests), so an unbounded cache would grow by
//! that much with every rebuilt guest.
//!
//! Whoever can write `cache.key` can forge entries; [`CompileCache::open`]
//! refuses a directory writable by group or others and a key file readable
//! by them.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::hash::Hasher;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::engine::WasmError;

/// The file holding the cache's secret.
const KEY_FILE: &str = "cache.key";
/// Length of the secret and of the tag.
const SECRET_LEN: usize = 32;
const TAG_LEN: usize = 32;
/// First bytes of an entry: format name and version.
const MAGIC: &[u8; 8] = b"WMCC\x00\x01\r\n";
/// Domain separation for the MAC input.
const DOMAIN: &[u8] = b"waymark compile cache v1\0";
/// Extension of an entry file.
const ENTRY_EXT: &str = "cwasm";

/// Default size budget of a cache directory's entries: room for a few dozen
/// compiled interpreters, or thousands of compiled Rust guests.
pub const DEFAULT_BUDGET_BYTES: u64 = 2 << 30;

type HmacSha256 = Hmac<Sha256>;

/// Where [`WasmEngine::load_cached`](crate::WasmEngine::load_cached) found
/// the compiled code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// An authentic entry was deserialized; nothing was compiled.
    Hit,
    /// The component was compiled (no entry, or a bad one that was deleted)
    /// and the cache was asked to store it.
    Miss,
    /// No cache was given; the component was compiled.
    Disabled,
}

/// A directory of authenticated compiled components (see the module docs).
/// Safe to share between threads and processes.
pub struct CompileCache {
    dir: PathBuf,
    secret: [u8; SECRET_LEN],
    budget_bytes: u64,
}

impl fmt::Debug for CompileCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        f.debug_struct("CompileCache")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl CompileCache {
    /// Opens the cache in `dir`, creating the directory (mode 0700) and its
    /// secret (mode 0600) if they do not exist yet.
    ///
    /// Refused with [`WasmError::Cache`]: a directory that cannot be created
    /// or is writable by group or others, and a secret file that is not a
    /// regular file of 32 bytes readable by its owner only.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, WasmError> {
        let dir = dir.as_ref().to_path_buf();
        create_private_dir(&dir).map_err(|e| cache_err(&dir, e))?;
        check_dir(&dir)?;
        let secret = load_or_create_secret(&dir)?;
        Ok(Self {
            dir,
            secret,
            budget_bytes: DEFAULT_BUDGET_BYTES,
        })
    }

    /// Sets the size budget of the entries (see the module docs). The entry
    /// just written is always kept, even when it alone is larger.
    #[must_use]
    pub fn with_budget(mut self, bytes: u64) -> Self {
        self.budget_bytes = bytes;
        self
    }

    /// The size budget of the entries.
    pub fn budget_bytes(&self) -> u64 {
        self.budget_bytes
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry name for a component (by its sha256) compiled by `engine`.
    pub(crate) fn key(engine: &Engine, component_sha256: &[u8; 32]) -> String {
        let mut hasher = Sha256Hasher(Sha256::new());
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
        format!(
            "{}-{}",
            hex::encode(component_sha256),
            hex::encode(hasher.0.finalize())
        )
    }

    fn entry_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.{ENTRY_EXT}"))
    }

    fn tag(&self, key: &str, artifact: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(DOMAIN);
        mac.update(&(key.len() as u64).to_le_bytes());
        mac.update(key.as_bytes());
        mac.update(artifact);
        mac
    }

    /// The compiled component stored under `key`, if there is an authentic
    /// entry that `engine` accepts. A bad entry is deleted.
    pub(crate) fn get(&self, engine: &Engine, key: &str) -> Option<Component> {
        let path = self.entry_path(key);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot read compile cache entry: {e}");
                return None;
            }
        };
        let Some(artifact) = self.authenticate(key, &bytes) else {
            self.discard(&path, "damaged or not written by this host");
            return None;
        };
        // SAFETY: `Component::deserialize` maps `artifact` as executable code
        // without validating it, so it must be `Component::serialize` output
        // for an engine compatible with `engine`. `artifact` is exactly the
        // buffer whose HMAC under this directory's secret we just verified,
        // and only `put` computes such tags, over bytes it got from
        // `Component::serialize`. The MAC also covers `key`, which names the
        // engine's compatibility hash, so the bytes were produced for this
        // engine configuration (wasmtime checks that again and errors if
        // not). The buffer is ours, so it cannot change after the check.
        #[allow(
            unsafe_code,
            reason = "deserializing an authenticated cache entry; see SAFETY"
        )]
        let component = unsafe { Component::deserialize(engine, artifact) };
        match component {
            Ok(component) => {
                touch(&path);
                Some(component)
            }
            Err(e) => {
                self.discard(&path, &format!("wasmtime refused it: {e:#}"));
                None
            }
        }
    }

    /// The artifact inside an entry file, if its tag verifies.
    fn authenticate<'a>(&self, key: &str, bytes: &'a [u8]) -> Option<&'a [u8]> {
        let rest = bytes.strip_prefix(MAGIC.as_slice())?;
        if rest.len() < TAG_LEN {
            return None;
        }
        let (tag, artifact) = rest.split_at(TAG_LEN);
        // `verify_slice` compares in constant time.
        self.tag(key, artifact).verify_slice(tag).ok()?;
        Some(artifact)
    }

    /// Stores a compiled component under `key`. Failures are logged: the
    /// cache is an optimisation.
    pub(crate) fn put(&self, key: &str, component: &Component) {
        let artifact = match component.serialize() {
            Ok(artifact) => artifact,
            Err(e) => {
                tracing::warn!("cannot serialize a compiled component for the cache: {e:#}");
                return;
            }
        };
        let tag = self.tag(key, &artifact).finalize().into_bytes();
        let mut entry = Vec::with_capacity(MAGIC.len() + TAG_LEN + artifact.len());
        entry.extend_from_slice(MAGIC);
        entry.extend_from_slice(&tag);
        entry.extend_from_slice(&artifact);
        let path = self.entry_path(key);
        if let Err(e) = write_atomically(&self.dir, &path, &entry) {
            tracing::warn!(path = %path.display(), "cannot write compile cache entry: {e}");
            return;
        }
        self.trim(&path);
    }

    /// Deletes the least recently used entries other than `keep` until the
    /// entries fit the budget. Races with other processes are harmless: an
    /// entry deleted under a reader costs that reader a compilation.
    fn trim(&self, keep: &Path) {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut entries: Vec<(std::time::SystemTime, u64, PathBuf)> = dir
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == ENTRY_EXT))
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), e.path()))
            })
            .collect();
        let mut total: u64 = entries.iter().map(|(_, len, _)| len).sum();
        if total <= self.budget_bytes {
            return;
        }
        entries.sort();
        for (_, len, path) in entries {
            if total <= self.budget_bytes {
                break;
            }
            if path == keep {
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) => total = total.saturating_sub(len),
                Err(e) if e.kind() == io::ErrorKind::NotFound => total = total.saturating_sub(len),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "cannot evict compile cache entry: {e}")
                }
            }
        }
    }

    fn discard(&self, path: &Path, why: &str) {
        tracing::warn!(path = %path.display(), "discarding compile cache entry: {why}");
        if let Err(e) = fs::remove_file(path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), "cannot delete compile cache entry: {e}");
        }
    }
}

/// Feeds what a `Hash` impl writes into SHA-256, so the engine's
/// compatibility hash becomes a stable digest instead of a 64-bit
/// `DefaultHasher` value. (Integers are written in native byte order: the
/// digest is meant for this machine's cache only.)
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
    }
}

/// Marks an entry as just used, for eviction order. Best effort.
fn touch(path: &Path) {
    if let Ok(file) = OpenOptions::new().append(true).open(path) {
        let _ = file.set_modified(std::time::SystemTime::now());
    }
}

fn cache_err(path: &Path, e: impl fmt::Display) -> WasmError {
    WasmError::Cache(format!("{}: {e}", path.display()))
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Refuses a cache directory that others could plant files in.
fn check_dir(dir: &Path) -> Result<(), WasmError> {
    let meta = fs::metadata(dir).map_err(|e| cache_err(dir, e))?;
    if !meta.is_dir() {
        return Err(cache_err(dir, "not a directory"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o022 != 0 {
            return Err(cache_err(
                dir,
                format_args!(
                    "the directory is writable by group or others (mode {:o}); \
                     use a private directory (mode 0700)",
                    mode & 0o777
                ),
            ));
        }
    }
    Ok(())
}

/// Reads `<dir>/cache.key`, creating it from the OS random source if it does
/// not exist. Creation is atomic: the secret is written to a private
/// temporary file and hard-linked into place, so a concurrent opener either
/// loses the race and reads the winner's key, or finds no file at all.
fn load_or_create_secret(dir: &Path) -> Result<[u8; SECRET_LEN], WasmError> {
    let path = dir.join(KEY_FILE);
    for _ in 0..2 {
        match read_secret(&path)? {
            Some(secret) => return Ok(secret),
            None => {
                let mut secret = [0u8; SECRET_LEN];
                File::open("/dev/urandom")
                    .and_then(|mut f| f.read_exact(&mut secret))
                    .map_err(|e| cache_err(Path::new("/dev/urandom"), e))?;
                let tmp = temp_path(dir, KEY_FILE);
                write_private(&tmp, &secret).map_err(|e| cache_err(&tmp, e))?;
                let linked = fs::hard_link(&tmp, &path);
                let _ = fs::remove_file(&tmp);
                match linked {
                    Ok(()) => return Ok(secret),
                    // Someone else made it first: use theirs.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(cache_err(&path, e)),
                }
            }
        }
    }
    Err(cache_err(&path, "the key file keeps disappearing"))
}

/// The secret in `path`, `None` if there is no such file.
fn read_secret(path: &Path) -> Result<Option<[u8; SECRET_LEN]>, WasmError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(cache_err(path, e)),
    };
    if !meta.file_type().is_file() {
        return Err(cache_err(path, "not a regular file"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(cache_err(
                path,
                format_args!(
                    "the key file is accessible to group or others (mode {:o}); \
                     it must be 0600",
                    mode & 0o777
                ),
            ));
        }
    }
    let bytes = fs::read(path).map_err(|e| cache_err(path, e))?;
    let secret = <[u8; SECRET_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
        cache_err(
            path,
            format_args!(
                "the key file holds {} bytes instead of {SECRET_LEN}; \
                 delete the cache directory to start afresh",
                bytes.len()
            ),
        )
    })?;
    Ok(Some(secret))
}

/// A fresh temporary file name in `dir`, unique within this machine.
fn temp_path(dir: &Path, base: &str) -> PathBuf {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{base}.{}.{seq}.tmp", std::process::id()))
}

/// Creates `path` (which must not exist) with mode 0600 and writes `bytes`.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = options.open(path).and_then(|mut f| f.write_all(bytes));
    if result.is_err() {
        let _ = fs::remove_file(path);
    }
    result
}

/// Writes `bytes` to a temporary file in `dir` and renames it to `path`.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .map_or_else(|| ENTRY_EXT.into(), |n| n.to_string_lossy());
    let tmp = temp_path(dir, &name);
    write_private(&tmp, bytes)?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}
