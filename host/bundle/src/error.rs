//! Why a bundle was refused. Every message names the bundle (its path, or
//! `<memory>` / `<manifest>` when there is none) and the entry at fault, so an
//! operator can act on it without a debugger.

use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong reading, checking or writing a bundle.
///
/// `bundle` names the bundle at fault: the path it was opened from or
/// packed to, `<memory>` for bytes read from memory, or `<manifest>` for a
/// manifest parsed or validated on its own.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The path is neither a directory nor a regular file.
    #[error("bundle {bundle}: not a bundle directory or .wmb file")]
    NotABundle {
        /// The bundle.
        bundle: String,
    },

    /// Reading or writing failed at the operating-system level.
    #[error("bundle {bundle}: i/o error{}: {source}", on(entry))]
    Io {
        /// The bundle.
        bundle: String,
        /// The file or bundle entry the failure is on; empty if it is on the
        /// bundle path while opening it.
        entry: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The bundle has no `waymark-bundle.toml` at its root.
    #[error("bundle {bundle}: no manifest `waymark-bundle.toml` at its root")]
    MissingManifest {
        /// The bundle.
        bundle: String,
    },

    /// The manifest exceeds the manifest size limit.
    #[error("bundle {bundle}: manifest is {size} bytes, more than the limit of {limit}")]
    ManifestTooLarge {
        /// The bundle.
        bundle: String,
        /// The manifest's size in bytes.
        size: u64,
        /// The limit in bytes ([`BundleLimits::manifest_bytes`](crate::BundleLimits::manifest_bytes)).
        limit: u64,
    },

    /// The manifest is not UTF-8 text.
    #[error("bundle {bundle}: manifest is not UTF-8 text")]
    ManifestNotUtf8 {
        /// The bundle.
        bundle: String,
    },

    /// The manifest is not valid TOML or does not fit the schema (this
    /// includes unknown fields, which are refused so that typos surface).
    #[error("bundle {bundle}: manifest does not parse: {detail}")]
    ManifestSyntax {
        /// The bundle.
        bundle: String,
        /// The TOML parser's message.
        detail: String,
    },

    /// The manifest declares a schema this crate does not read.
    #[error("bundle {bundle}: manifest schema {found} is not supported (this host reads schema {supported}{hint})",
        hint = if *.found > i64::from(*.supported) { "; upgrade waymark to load it" } else { "" })]
    UnsupportedSchema {
        /// The bundle.
        bundle: String,
        /// The manifest's `schema`.
        found: i64,
        /// The schema this crate reads ([`SCHEMA_VERSION`](crate::SCHEMA_VERSION)).
        supported: u32,
    },

    /// A manifest field breaks one of the rules in the crate documentation.
    #[error("bundle {bundle}: manifest field `{field}` {reason}")]
    InvalidManifest {
        /// The bundle.
        bundle: String,
        /// Where the field is, such as `bundle.id` or `workflows[0].limits.fuel`.
        field: String,
        /// The rule it breaks, worded to follow the field name.
        reason: String,
    },

    /// The manifest declares neither a workflow nor a tool component.
    #[error("bundle {bundle}: manifest declares no [[workflows]] (and no [[tools]])")]
    NoWorkflows {
        /// The bundle.
        bundle: String,
    },

    /// Two workflows share an id.
    #[error("bundle {bundle}: workflow id `{id}` is declared twice")]
    DuplicateWorkflow {
        /// The bundle.
        bundle: String,
        /// The shared id.
        id: String,
    },

    /// A workflow names a component that `[components]` does not list.
    #[error(
        "bundle {bundle}: workflow `{workflow}` uses component `{component}`, which [components] does not list"
    )]
    UnlistedComponent {
        /// The bundle.
        bundle: String,
        /// The workflow's id.
        workflow: String,
        /// The component path it names.
        component: String,
    },

    /// `[components]` lists a file that no workflow or tool entry uses.
    #[error(
        "bundle {bundle}: component `{component}` is listed but no workflow or [[tools]] entry uses it"
    )]
    UnusedComponent {
        /// The bundle.
        bundle: String,
        /// The unused component's path.
        component: String,
    },

    /// A `[[tools]]` entry names a component that `[components]` does not
    /// list.
    #[error("bundle {bundle}: tool component `{component}` is not listed in [components]")]
    UnlistedToolComponent {
        /// The bundle.
        bundle: String,
        /// The component path the entry names.
        component: String,
    },

    /// The same component appears in two `[[tools]]` entries.
    #[error("bundle {bundle}: tool component `{component}` is listed twice in [[tools]]")]
    DuplicateToolComponent {
        /// The bundle.
        bundle: String,
        /// The component's path.
        component: String,
    },

    /// A component is both a workflow's and a `[[tools]]` entry's: a
    /// component implements one world or the other.
    #[error(
        "bundle {bundle}: component `{component}` is workflow `{workflow}`'s and also a [[tools]] entry; a component is a workflow or a set of tools, not both"
    )]
    ComponentRoleClash {
        /// The bundle.
        bundle: String,
        /// The component's path.
        component: String,
        /// The id of the workflow that uses it.
        workflow: String,
    },

    /// A `sha256` value is not 64 lowercase hex digits.
    #[error(
        "bundle {bundle}: component `{component}` has sha256 `{digest}`, which is not 64 lowercase hex digits"
    )]
    InvalidDigest {
        /// The bundle.
        bundle: String,
        /// The component's path.
        component: String,
        /// The value as written.
        digest: String,
    },

    /// A component path or archive entry name could escape the bundle or
    /// means different things on different systems.
    #[error("bundle {bundle}: path `{path}` is unsafe: {reason}")]
    UnsafePath {
        /// The bundle.
        bundle: String,
        /// The path (lossily decoded if it is not UTF-8).
        path: String,
        /// Which rule it breaks.
        reason: PathProblem,
    },

    /// Something in the bundle that must not be there.
    #[error("bundle {bundle}: entry `{entry}` is not allowed: {kind}")]
    UnexpectedEntry {
        /// The bundle.
        bundle: String,
        /// The entry's path inside the bundle.
        entry: String,
        /// What is wrong with it.
        kind: EntryProblem,
    },

    /// A listed component is not in the bundle.
    #[error("bundle {bundle}: component `{path}` is listed in the manifest but missing")]
    MissingComponent {
        /// The bundle.
        bundle: String,
        /// The component's path.
        path: String,
    },

    /// A component exceeds the per-component size limit.
    #[error("bundle {bundle}: component `{path}` is {size} bytes, more than the limit of {limit}")]
    ComponentTooLarge {
        /// The bundle.
        bundle: String,
        /// The component's path.
        path: String,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes ([`BundleLimits::component_bytes`](crate::BundleLimits::component_bytes)).
        limit: u64,
    },

    /// The components together exceed the total size limit.
    #[error("bundle {bundle}: components add up to more than the limit of {limit} bytes")]
    BundleTooLarge {
        /// The bundle.
        bundle: String,
        /// The limit in bytes ([`BundleLimits::total_bytes`](crate::BundleLimits::total_bytes)).
        limit: u64,
    },

    /// The archive has more entries than the entry limit.
    #[error("bundle {bundle}: archive has more than {limit} entries")]
    TooManyEntries {
        /// The bundle.
        bundle: String,
        /// The limit ([`BundleLimits::archive_entries`](crate::BundleLimits::archive_entries)).
        limit: usize,
    },

    /// A component's length differs from the manifest's `size`.
    #[error(
        "bundle {bundle}: component `{path}` is {actual} bytes but the manifest says {expected}"
    )]
    SizeMismatch {
        /// The bundle.
        bundle: String,
        /// The component's path.
        path: String,
        /// The size the manifest gives, in bytes.
        expected: u64,
        /// The size found, in bytes.
        actual: u64,
    },

    /// A component's sha256 differs from the manifest: it was altered or
    /// replaced after packing.
    #[error(
        "bundle {bundle}: component `{path}` has sha256 {actual} but the manifest says {expected}"
    )]
    DigestMismatch {
        /// The bundle.
        bundle: String,
        /// The component's path.
        path: String,
        /// The digest the manifest gives (lowercase hex).
        expected: String,
        /// The digest of the bytes found (lowercase hex).
        actual: String,
    },

    /// The archive ends before its end-of-archive marker.
    #[error("bundle {bundle}: archive is truncated at byte {offset}")]
    TruncatedArchive {
        /// The bundle.
        bundle: String,
        /// Where the data ran out, in bytes from the start of the archive.
        offset: u64,
    },

    /// The archive is not a well-formed ustar/pax/GNU tar file.
    #[error("bundle {bundle}: archive is corrupt at byte {offset}: {reason}")]
    CorruptArchive {
        /// The bundle.
        bundle: String,
        /// Where the bad data starts, in bytes from the start of the archive.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },

    /// `pack` refuses to replace an existing bundle directory.
    #[error("cannot pack into {}: it already exists", .path.display())]
    OutputExists {
        /// The output path.
        path: PathBuf,
    },

    /// Two different component files would land at the same path.
    #[error("cannot pack: {} and {} would both be stored as `{name}`", .first.display(), .second.display())]
    ComponentNameClash {
        /// The path inside the bundle both would take.
        name: String,
        /// The file packed first.
        first: PathBuf,
        /// The other file.
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
    /// The path is empty.
    Empty,
    /// Longer than [`MAX_PATH_BYTES`](crate::MAX_PATH_BYTES).
    TooLong,
    /// Not UTF-8 (an archive entry name, or a component file name given to
    /// [`pack`](crate::pack)).
    NotUtf8,
    /// Starts with `/`.
    Absolute,
    /// Contains a backslash.
    Backslash,
    /// Contains a NUL or other control character.
    ControlCharacter,
    /// Starts with a drive letter and a colon (`C:`).
    DriveLetter,
    /// Contains a colon elsewhere.
    Colon,
    /// Has an empty segment: `//`, or a trailing `/`.
    EmptySegment,
    /// Has a `.` segment.
    DotSegment,
    /// Has a `..` segment.
    DotDotSegment,
    /// A component path whose file name is not a non-empty stem followed by
    /// `.wasm`.
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
    /// A symbolic link (in an archive, or anywhere on a component's path
    /// in a directory).
    Symlink,
    /// A hard link.
    HardLink,
    /// A character or block device.
    Device,
    /// A named pipe.
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
