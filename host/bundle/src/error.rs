//! Why a bundle was refused. Every message names the bundle (its path, or
//! `<memory>` / `<manifest>` when there is none) and the entry at fault, so an
//! operator can act on it without a debugger.

use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong reading, checking or writing a bundle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The path is neither a directory nor a regular file.
    #[error("bundle {bundle}: not a bundle directory or .wmb file")]
    NotABundle { bundle: String },

    /// Reading or writing failed at the operating-system level.
    #[error("bundle {bundle}: i/o error{}: {source}", on(entry))]
    Io {
        bundle: String,
        entry: String,
        #[source]
        source: std::io::Error,
    },

    /// The bundle has no `waymark-bundle.toml` at its root.
    #[error("bundle {bundle}: no manifest `waymark-bundle.toml` at its root")]
    MissingManifest { bundle: String },

    /// The manifest exceeds the manifest size limit.
    #[error("bundle {bundle}: manifest is {size} bytes, more than the limit of {limit}")]
    ManifestTooLarge {
        bundle: String,
        size: u64,
        limit: u64,
    },

    /// The manifest is not UTF-8 text.
    #[error("bundle {bundle}: manifest is not UTF-8 text")]
    ManifestNotUtf8 { bundle: String },

    /// The manifest is not valid TOML or does not fit the schema (this
    /// includes unknown fields, which are refused so that typos surface).
    #[error("bundle {bundle}: manifest does not parse: {detail}")]
    ManifestSyntax { bundle: String, detail: String },

    /// The manifest declares a schema this crate does not read.
    #[error("bundle {bundle}: manifest schema {found} is not supported (this host reads schema {supported}{hint})",
        hint = if *.found > i64::from(*.supported) { "; upgrade waymark to load it" } else { "" })]
    UnsupportedSchema {
        bundle: String,
        found: i64,
        supported: u32,
    },

    /// A manifest field breaks one of the rules in the crate documentation.
    #[error("bundle {bundle}: manifest field `{field}` {reason}")]
    InvalidManifest {
        bundle: String,
        field: String,
        reason: String,
    },

    /// The manifest declares neither a workflow nor a tool component.
    #[error("bundle {bundle}: manifest declares no [[workflows]] (and no [[tools]])")]
    NoWorkflows { bundle: String },

    /// Two workflows share an id.
    #[error("bundle {bundle}: workflow id `{id}` is declared twice")]
    DuplicateWorkflow { bundle: String, id: String },

    /// A workflow names a component that `[components]` does not list.
    #[error(
        "bundle {bundle}: workflow `{workflow}` uses component `{component}`, which [components] does not list"
    )]
    UnlistedComponent {
        bundle: String,
        workflow: String,
        component: String,
    },

    /// `[components]` lists a file that no workflow or tool entry uses.
    #[error(
        "bundle {bundle}: component `{component}` is listed but no workflow or [[tools]] entry uses it"
    )]
    UnusedComponent { bundle: String, component: String },

    /// A `[[tools]]` entry names a component that `[components]` does not
    /// list.
    #[error("bundle {bundle}: tool component `{component}` is not listed in [components]")]
    UnlistedToolComponent { bundle: String, component: String },

    /// The same component appears in two `[[tools]]` entries.
    #[error("bundle {bundle}: tool component `{component}` is listed twice in [[tools]]")]
    DuplicateToolComponent { bundle: String, component: String },

    /// A component is both a workflow's and a `[[tools]]` entry's: a
    /// component implements one world or the other.
    #[error(
        "bundle {bundle}: component `{component}` is workflow `{workflow}`'s and also a [[tools]] entry; a component is a workflow or a set of tools, not both"
    )]
    ComponentRoleClash {
        bundle: String,
        component: String,
        workflow: String,
    },

    /// A `sha256` value is not 64 lowercase hex digits.
    #[error(
        "bundle {bundle}: component `{component}` has sha256 `{digest}`, which is not 64 lowercase hex digits"
    )]
    InvalidDigest {
        bundle: String,
        component: String,
        digest: String,
    },

    /// A component path or archive entry name could escape the bundle or
    /// means different things on different systems.
    #[error("bundle {bundle}: path `{path}` is unsafe: {reason}")]
    UnsafePath {
        bundle: String,
        path: String,
        reason: PathProblem,
    },

    /// Something in the bundle that must not be there.
    #[error("bundle {bundle}: entry `{entry}` is not allowed: {kind}")]
    UnexpectedEntry {
        bundle: String,
        entry: String,
        kind: EntryProblem,
    },

    /// A listed component is not in the bundle.
    #[error("bundle {bundle}: component `{path}` is listed in the manifest but missing")]
    MissingComponent { bundle: String, path: String },

    /// A component exceeds the per-component size limit.
    #[error("bundle {bundle}: component `{path}` is {size} bytes, more than the limit of {limit}")]
    ComponentTooLarge {
        bundle: String,
        path: String,
        size: u64,
        limit: u64,
    },

    /// The components together exceed the total size limit.
    #[error("bundle {bundle}: components add up to more than the limit of {limit} bytes")]
    BundleTooLarge { bundle: String, limit: u64 },

    /// The archive has more entries than the entry limit.
    #[error("bundle {bundle}: archive has more than {limit} entries")]
    TooManyEntries { bundle: String, limit: usize },

    /// A component's length differs from the manifest's `size`.
    #[error(
        "bundle {bundle}: component `{path}` is {actual} bytes but the manifest says {expected}"
    )]
    SizeMismatch {
        bundle: String,
        path: String,
        expected: u64,
        actual: u64,
    },

    /// A component's sha256 differs from the manifest: it was altered or
    /// replaced after packing.
    #[error(
        "bundle {bundle}: component `{path}` has sha256 {actual} but the manifest says {expected}"
    )]
    DigestMismatch {
        bundle: String,
        path: String,
        expected: String,
        actual: String,
    },

    /// The archive ends before its end-of-archive marker.
    #[error("bundle {bundle}: archive is truncated at byte {offset}")]
    TruncatedArchive { bundle: String, offset: u64 },

    /// The archive is not a well-formed ustar/pax/GNU tar file.
    #[error("bundle {bundle}: archive is corrupt at byte {offset}: {reason}")]
    CorruptArchive {
        bundle: String,
        offset: u64,
        reason: String,
    },

    /// `pack` refuses to replace an existing bundle directory.
    #[error("cannot pack into {}: it already exists", .path.display())]
    OutputExists { path: PathBuf },

    /// Two different component files would land at the same path.
    #[error("cannot pack: {} and {} would both be stored as `{name}`", .first.display(), .second.display())]
    ComponentNameClash {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
}

fn on(entry: &str) -> String {
    if entry.is_empty() {
        String::new()
    } else {
        format!(" on `{entry}`")
    }
}

/// Why a path is unsafe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathProblem {
    Empty,
    TooLong,
    NotUtf8,
    Absolute,
    Backslash,
    ControlCharacter,
    DriveLetter,
    Colon,
    EmptySegment,
    DotSegment,
    DotDotSegment,
    NotWasm,
}

impl fmt::Display for PathProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "it is empty",
            Self::TooLong => "it is longer than 255 bytes",
            Self::NotUtf8 => "it is not UTF-8",
            Self::Absolute => "it starts with `/`",
            Self::Backslash => "it contains a backslash",
            Self::ControlCharacter => "it contains a NUL or control character",
            Self::DriveLetter => "it starts with a drive letter",
            Self::Colon => "it contains `:`",
            Self::EmptySegment => "it has an empty segment (`//` or a trailing `/`)",
            Self::DotSegment => "it has a `.` segment",
            Self::DotDotSegment => "it has a `..` segment",
            Self::NotWasm => "a component path must end in `.wasm`",
        })
    }
}

/// Why an entry is not allowed in a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryProblem {
    /// Neither the manifest, a listed component, nor a directory holding one.
    NotListed,
    /// The same name appears twice in the archive.
    Duplicate,
    Symlink,
    HardLink,
    Device,
    Fifo,
    /// A directory entry that carries data.
    DirectoryWithContent,
    /// A directory (or anything else) where a regular file is required.
    NotAFile,
    /// A tar entry type this reader does not accept (sparse, global pax
    /// header, vendor extensions...); the byte is the type flag.
    UnsupportedType(u8),
}

impl fmt::Display for EntryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotListed => f.write_str("it is neither the manifest nor a listed component"),
            Self::Duplicate => f.write_str("it appears more than once"),
            Self::Symlink => f.write_str("it is a symbolic link"),
            Self::HardLink => f.write_str("it is a hard link"),
            Self::Device => f.write_str("it is a device"),
            Self::Fifo => f.write_str("it is a FIFO"),
            Self::DirectoryWithContent => f.write_str("it is a directory entry with data"),
            Self::NotAFile => f.write_str("it is not a regular file"),
            Self::UnsupportedType(t) => {
                write!(f, "tar entry type {:?} is not supported", char::from(*t))
            }
        }
    }
}
