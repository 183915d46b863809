//! The `.wmb` tar format, through the `tar` crate.
//!
//! Reading is in two steps so that the manifest can be read and checked
//! before any component data is touched: [`index`] walks the headers with
//! the crate's seeking entry iterator (data is skipped with `seek`, never
//! read, and nothing is written anywhere), and [`read_data`] then reads one
//! entry's bytes at the offset the index recorded.
//!
//! The iterator runs in raw mode and the GNU long-name and pax headers are
//! resolved here rather than by the crate, because the crate would read an
//! extension header of any size into memory, would let a pax `size` override
//! the header's silently, and treats a sparse entry in a POSIX header as a
//! corrupt archive rather than as an unsupported entry. A few header checks
//! the crate is more lenient about (see [`check_header`]) are also kept.
//! Everything else is reported, never guessed at.
//!
//! Writing uses the crate's [`tar::Builder`] and [`tar::Header`] with fixed
//! metadata, and keeps the exact bytes earlier versions wrote (see
//! [`write_archive`]).

use std::io::{self, Read, Seek, SeekFrom, Write};

use tar::{Archive, EntryType, Header, PaxExtensions};

const BLOCK: u64 = 512;
/// Longest GNU long name or pax header we read.
const MAX_EXTENSION_BYTES: u64 = 64 * 1024;
/// The name the writer gives its pax headers (as GNU tar does).
const PAX_HEADER_NAME: &[u8] = b"././@PaxHeader";

/// What a header says an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    /// Any other type flag.
    Other(u8),
}

/// One archive member as the headers describe it.
#[derive(Debug, Clone)]
pub(crate) struct TarEntry {
    pub name: Vec<u8>,
    pub kind: Kind,
    pub size: u64,
    pub data_offset: u64,
}

#[derive(Debug)]
pub(crate) enum TarError {
    Io(io::Error),
    Truncated { offset: u64 },
    Corrupt { offset: u64, reason: String },
    TooManyEntries,
}

impl From<io::Error> for TarError {
    fn from(e: io::Error) -> Self {
        TarError::Io(e)
    }
}

fn corrupt(offset: u64, reason: impl Into<String>) -> TarError {
    TarError::Corrupt {
        offset,
        reason: reason.into(),
    }
}

/// An error the crate returned while reading the header at `offset`: its own
/// complaints about the header (checksum, numeric fields) are corruption,
/// anything from the operating system is i/o.
fn crate_error(offset: u64, e: io::Error) -> TarError {
    if e.raw_os_error().is_none() && e.kind() == io::ErrorKind::Other {
        corrupt(offset, e.to_string())
    } else {
        TarError::Io(e)
    }
}

/// Reads every header of an archive of `len` bytes, seeking over data.
/// `max_entries` bounds the work (and memory) a hostile archive can cause.
pub(crate) fn index<R: Read + Seek>(
    r: &mut R,
    len: u64,
    max_entries: usize,
) -> Result<Vec<TarEntry>, TarError> {
    // The crate counts positions from where the reader stands.
    r.seek(SeekFrom::Start(0))?;
    let mut archive = Archive::new(r);
    let mut raw = archive.entries_with_seek()?.raw(true);
    let mut entries = Vec::new();
    let mut headers = 0usize;
    // Where the crate will read the next header: checked against `len`
    // before each step, so the crate never reads or seeks past the end.
    let mut pos = 0u64;
    let mut long_name: Option<Vec<u8>> = None;
    let mut pax: Option<Pax> = None;
    loop {
        if len.saturating_sub(pos) < BLOCK {
            // No room for a header or the end-of-archive marker.
            return Err(TarError::Truncated { offset: pos });
        }
        let too_many = headers >= max_entries.saturating_mul(2).saturating_add(2)
            || entries.len() >= max_entries;
        let Some(next) = raw.next() else {
            // The crate read an all-zero block: the end of the archive. A
            // second zero block usually follows and anything after the
            // marker is ignored, as tar programs do.
            if long_name.is_some() || pax.is_some() {
                return Err(corrupt(pos, "extension header not followed by an entry"));
            }
            return Ok(entries);
        };
        if too_many {
            return Err(TarError::TooManyEntries);
        }
        headers += 1;
        let mut entry = next.map_err(|e| crate_error(pos, e))?;
        if entry.raw_header_position() != pos {
            return Err(corrupt(pos, "header is not where it was expected"));
        }
        let header = entry.header();
        check_header(header, pos)?;
        let typeflag = header.as_old().linkflag[0];
        let header_size = entry.size();
        let data_offset = entry.raw_file_position();
        // Extension headers describe the next entry; they are read and
        // parsed before the position of the next header is checked.
        if matches!(typeflag, b'L' | b'x') {
            if header_size > MAX_EXTENSION_BYTES {
                return Err(corrupt(pos, "extension header too large"));
            }
            if data_offset + header_size > len {
                return Err(TarError::Truncated { offset: len });
            }
            let mut data = Vec::new();
            (&mut entry).take(header_size).read_to_end(&mut data)?;
            if data.len() as u64 != header_size {
                return Err(TarError::Truncated {
                    offset: data_offset + data.len() as u64,
                });
            }
            if typeflag == b'L' {
                if long_name.is_some() {
                    return Err(corrupt(pos, "two long-name headers in a row"));
                }
                let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
                data.truncate(end);
                long_name = Some(data);
            } else {
                if pax.is_some() {
                    return Err(corrupt(pos, "two pax headers in a row"));
                }
                pax = Some(parse_pax(&data).map_err(|reason| corrupt(pos, reason))?);
            }
            pos = next_header(data_offset, header_size, len)?;
            continue;
        }

        // The crate moves to the next header past this entry's data, for
        // every type: links and devices included.
        let next_pos = next_header(data_offset, header_size, len)?;
        let mut name = header.path_bytes().into_owned();
        if let Some(n) = long_name.take() {
            name = n;
        }
        if let Some(p) = pax.take() {
            if let Some(path) = p.path {
                name = path;
            }
            if p.size.is_some_and(|s| s != header_size) {
                return Err(corrupt(pos, "pax size differs from the header size"));
            }
        }
        let kind = match header.entry_type() {
            EntryType::Regular => Kind::File,
            EntryType::Directory => Kind::Dir,
            _ => Kind::Other(typeflag),
        };
        entries.push(TarEntry {
            name,
            kind,
            size: header_size,
            data_offset,
        });
        pos = next_pos;
    }
}

/// The checks the crate does not make, or makes more leniently: a POSIX or
/// GNU magic (the crate also reads pre-POSIX headers), and strictly octal
/// checksum and size fields (the crate also takes a sign, text after the
/// NUL terminator and GNU base-256 numbers). The crate itself has checked
/// the checksum's value.
fn check_header(header: &Header, pos: u64) -> Result<(), TarError> {
    if header.as_ustar().is_none() && header.as_gnu().is_none() {
        return Err(corrupt(pos, "not a ustar header"));
    }
    let old = header.as_old();
    if parse_octal(&old.cksum).is_none() {
        return Err(corrupt(pos, "bad checksum field"));
    }
    if parse_octal(&old.size).is_none() {
        return Err(corrupt(pos, "bad size field"));
    }
    Ok(())
}

/// Reads `size` bytes of entry data at `offset`.
pub(crate) fn read_data<R: Read + Seek>(
    r: &mut R,
    offset: u64,
    size: u64,
    len: u64,
) -> Result<Vec<u8>, TarError> {
    match offset.checked_add(size) {
        Some(end) if end <= len => {}
        _ => return Err(TarError::Truncated { offset: len }),
    }
    let cap = usize::try_from(size).map_err(|_| corrupt(offset, "entry too large"))?;
    let mut buf = Vec::with_capacity(cap);
    r.seek(SeekFrom::Start(offset))?;
    r.take(size).read_to_end(&mut buf)?;
    if buf.len() as u64 != size {
        return Err(TarError::Truncated {
            offset: offset + buf.len() as u64,
        });
    }
    Ok(buf)
}

fn next_header(data_offset: u64, size: u64, len: u64) -> Result<u64, TarError> {
    let padded = size
        .checked_add(BLOCK - 1)
        .map(|s| s / BLOCK * BLOCK)
        .and_then(|s| data_offset.checked_add(s));
    match padded {
        Some(next) if next <= len => Ok(next),
        _ => Err(TarError::Truncated { offset: len }),
    }
}

/// An octal field: optional leading spaces, digits, then NUL or space
/// padding. Base-256 (GNU) numbers are refused.
fn parse_octal(field: &[u8]) -> Option<u64> {
    let start = field.iter().position(|&b| b != b' ')?;
    let digits = &field[start..];
    let end = digits
        .iter()
        .position(|&b| b == 0 || b == b' ')
        .unwrap_or(digits.len());
    if end == 0 || digits[end..].iter().any(|&b| b != 0 && b != b' ') {
        return None;
    }
    let mut n: u64 = 0;
    for &b in &digits[..end] {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        n = n.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

#[derive(Default)]
struct Pax {
    path: Option<Vec<u8>>,
    size: Option<u64>,
}

/// Records are `"<len> <key>=<value>\n"`, `<len>` counting the whole record;
/// the crate splits and checks them. It stops quietly at an empty line, so
/// every byte is first made to belong to a record.
fn parse_pax(data: &[u8]) -> Result<Pax, &'static str> {
    if !data.is_empty()
        && (data[0] == b'\n' || !data.ends_with(b"\n") || data.windows(2).any(|w| w == b"\n\n"))
    {
        return Err("bad pax record length");
    }
    let mut pax = Pax::default();
    for record in PaxExtensions::new(data) {
        let record = record.map_err(|_| "bad pax record")?;
        match record.key_bytes() {
            b"path" => pax.path = Some(record.value_bytes().to_vec()),
            b"size" => {
                let s = std::str::from_utf8(record.value_bytes())
                    .ok()
                    .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|s| s.parse().ok())
                    .ok_or("bad pax size")?;
                pax.size = Some(s);
            }
            k if k.starts_with(b"GNU.sparse") => return Err("sparse files are not supported"),
            // Times, owners, xattrs and the like do not matter here.
            _ => {}
        }
    }
    Ok(pax)
}

/// Writes a deterministic archive: the entries in the order given, each a
/// regular file with mode 0644, owner 0:0, mtime 0, empty user and group
/// names, followed by the two-block end marker. A name that does not fit
/// the ustar name and prefix fields gets a pax `path` record.
///
/// The bytes are those earlier versions wrote by hand: POSIX ustar headers
/// with every numeric field zero-padded, and the checksum written as six
/// digits, NUL, space (as GNU tar writes it; the crate would write seven
/// digits and a NUL, the same value).
pub(crate) fn write_archive<W: Write>(w: &mut W, entries: &[(&str, &[u8])]) -> io::Result<()> {
    let mut builder = tar::Builder::new(w);
    for (name, data) in entries {
        let mut header = fixed_header(EntryType::Regular, data.len() as u64);
        if let Err(e) = header.set_path(name) {
            if name.len() <= 100 {
                return Err(e);
            }
            // Too long for ustar: the full name in a pax record, and the
            // start of the last segment in the header for older readers.
            let record = pax_record("path", name);
            let mut pax = fixed_header(EntryType::XHeader, record.len() as u64);
            pax.as_old_mut().name[..PAX_HEADER_NAME.len()].copy_from_slice(PAX_HEADER_NAME);
            set_checksum(&mut pax)?;
            builder.append(&pax, record.as_bytes())?;
            let tail = name.rsplit('/').next().unwrap_or(name);
            header = fixed_header(EntryType::Regular, data.len() as u64);
            header.set_path(truncate(tail, 100))?;
        }
        set_checksum(&mut header)?;
        builder.append(&header, *data)?;
    }
    builder.into_inner()?;
    Ok(())
}

/// A ustar header with the fixed metadata every entry gets.
fn fixed_header(kind: EntryType, size: u64) -> Header {
    let mut h = Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    if let Some(ustar) = h.as_ustar_mut() {
        ustar.set_device_major(0);
        ustar.set_device_minor(0);
    }
    h
}

/// Sets the checksum, written as `%06o\0 `.
fn set_checksum(h: &mut Header) -> io::Result<()> {
    h.set_cksum();
    let sum = h.cksum()?;
    h.as_old_mut()
        .cksum
        .copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    Ok(())
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn pax_record(key: &str, value: &str) -> String {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}").len() + body.len() != len {
        len = format!("{len}").len() + body.len();
    }
    format!("{len}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn build(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        write_archive(&mut out, entries).unwrap();
        out
    }

    #[test]
    fn written_archives_index_back() {
        let long = format!("components/{}.wasm", "x".repeat(200));
        let bytes = build(&[("a.toml", b"hello"), (long.as_str(), &[1u8; 600])]);
        assert_eq!(bytes.len() % 512, 0);
        let entries = index(&mut Cursor::new(&bytes), bytes.len() as u64, 10).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].name, b"a.toml");
        assert_eq!(entries[0].size, 5);
        assert_eq!(entries[1].name, long.as_bytes());
        assert_eq!(entries[1].kind, Kind::File);
        let data = read_data(
            &mut Cursor::new(&bytes),
            entries[1].data_offset,
            600,
            bytes.len() as u64,
        )
        .unwrap();
        assert_eq!(data, vec![1u8; 600]);
    }

    #[test]
    fn ustar_split_is_used_when_it_fits() {
        let name = format!("{}/{}.wasm", "d".repeat(120), "f".repeat(50));
        let bytes = build(&[(name.as_str(), b"x")]);
        // One header, the data block and the end marker: no pax header.
        assert_eq!(bytes.len(), 4 * 512);
        assert_eq!(&bytes[345..465], "d".repeat(120).as_bytes());
        assert_eq!(
            &bytes[..56],
            format!("{}.wasm\0", "f".repeat(50)).as_bytes()
        );
        let entries = index(&mut Cursor::new(&bytes), bytes.len() as u64, 10).unwrap();
        assert_eq!(entries[0].name, name.as_bytes());
    }

    #[test]
    fn headers_have_the_fixed_layout() {
        let bytes = build(&[("a.toml", b"hello")]);
        let h = &bytes[..512];
        assert_eq!(&h[100..108], b"0000644\0");
        assert_eq!(&h[108..124], b"0000000\x000000000\0");
        assert_eq!(&h[124..136], b"00000000005\0");
        assert_eq!(&h[136..148], b"00000000000\0");
        assert_eq!(&h[154..157], b"\0 0");
        assert_eq!(&h[257..265], b"ustar\x0000");
        assert_eq!(&h[329..345], b"0000000\x000000000\0");
        let sum: u32 = h[..148]
            .iter()
            .chain(&h[156..])
            .map(|&b| u32::from(b))
            .sum();
        let stored = format!("{:06o}\0 ", sum + 256);
        assert_eq!(&h[148..156], stored.as_bytes());
    }

    #[test]
    fn pax_record_length_counts_itself() {
        for n in [1, 5, 80, 95, 96, 990, 5000] {
            let v = "v".repeat(n);
            let r = pax_record("path", &v);
            let (len, _) = r.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), r.len(), "{n}");
            let pax = parse_pax(r.as_bytes()).unwrap();
            assert_eq!(pax.path.unwrap(), v.as_bytes());
        }
    }

    #[test]
    fn pax_records_are_all_read() {
        assert!(parse_pax(b"").is_ok());
        assert!(parse_pax(b"9 size=5\n").unwrap().size == Some(5));
        for bad in [
            &b"\n12 path=a.b\n"[..],
            b"12 path=a.b\n\n",
            b"12 path=a.b",
            b"13 path=a.b\n",
            b"9 size=x\n",
            b"9 size=\n",
            b"path=a.b\n",
            b"22 GNU.sparse.major=1\n",
        ] {
            assert!(parse_pax(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn octal_fields() {
        assert_eq!(parse_octal(b"0000644\0"), Some(0o644));
        assert_eq!(parse_octal(b"  17 \0\0\0"), Some(0o17));
        assert_eq!(parse_octal(b"\0\0\0"), None);
        assert_eq!(parse_octal(b"0008\0"), None);
        assert_eq!(parse_octal(b"12 3\0"), None);
        assert_eq!(parse_octal(b"12\x003\0"), None);
        assert_eq!(parse_octal(b"+17\0"), None);
        assert_eq!(parse_octal(b"77777777777777777777777"), None);
        assert_eq!(parse_octal(&[0x80, 0, 0, 0, 0, 0, 0, 1]), None);
    }

    #[test]
    fn missing_end_marker_is_truncation() {
        let bytes = build(&[("a", b"x")]);
        let cut = &bytes[..1024];
        assert!(matches!(
            index(&mut Cursor::new(cut), cut.len() as u64, 10),
            Err(TarError::Truncated { .. })
        ));
    }
}
