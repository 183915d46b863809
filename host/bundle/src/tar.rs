//! A deliberately small tar reader and writer. The reader only indexes
//! headers (names, types, sizes, data offsets) so that the manifest can be
//! read and checked before any component data is touched; it understands
//! POSIX ustar, pax local headers (`path`) and GNU long names, which covers
//! what `waymark` and the common `tar` programs write. Everything else is
//! reported, never guessed at.

use std::io::{self, Read, Seek, SeekFrom, Write};

const BLOCK: u64 = 512;
/// Longest GNU long name or pax header we read.
const MAX_EXTENSION_BYTES: u64 = 64 * 1024;

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

/// Reads every header of an archive of `len` bytes, seeking over data.
/// `max_entries` bounds the work (and memory) a hostile archive can cause.
pub(crate) fn index<R: Read + Seek>(
    r: &mut R,
    len: u64,
    max_entries: usize,
) -> Result<Vec<TarEntry>, TarError> {
    let mut entries = Vec::new();
    let mut headers = 0usize;
    let mut pos = 0u64;
    let mut long_name: Option<Vec<u8>> = None;
    let mut pax: Option<Pax> = None;
    loop {
        if len.saturating_sub(pos) < BLOCK {
            // No room for a header or the end-of-archive marker.
            return Err(TarError::Truncated { offset: pos });
        }
        let mut h = [0u8; BLOCK as usize];
        r.seek(SeekFrom::Start(pos))?;
        read_fully(r, &mut h, pos)?;
        if h.iter().all(|&b| b == 0) {
            if long_name.is_some() || pax.is_some() {
                return Err(corrupt(pos, "extension header not followed by an entry"));
            }
            // End of archive; a second zero block usually follows and
            // anything after the marker is ignored, as tar programs do.
            return Ok(entries);
        }
        headers += 1;
        if headers > max_entries.saturating_mul(2).saturating_add(2) || entries.len() >= max_entries
        {
            return Err(TarError::TooManyEntries);
        }
        check_checksum(&h, pos)?;
        let gnu = &h[257..265] == b"ustar  \0";
        let posix = &h[257..263] == b"ustar\0";
        if !gnu && !posix {
            return Err(corrupt(pos, "not a ustar header"));
        }
        let mut size = parse_octal(&h[124..136]).ok_or_else(|| corrupt(pos, "bad size field"))?;
        let data_offset = pos + BLOCK;
        let typeflag = h[156];
        // Extension headers describe the next entry.
        match typeflag {
            b'L' | b'x' => {
                if size > MAX_EXTENSION_BYTES {
                    return Err(corrupt(pos, "extension header too large"));
                }
                let data = read_data(r, data_offset, size, len)?;
                if typeflag == b'L' {
                    if long_name.is_some() {
                        return Err(corrupt(pos, "two long-name headers in a row"));
                    }
                    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
                    long_name = Some(data[..end].to_vec());
                } else {
                    if pax.is_some() {
                        return Err(corrupt(pos, "two pax headers in a row"));
                    }
                    pax = Some(parse_pax(&data).map_err(|reason| corrupt(pos, reason))?);
                }
                pos = next_header(data_offset, size, len)?;
                continue;
            }
            _ => {}
        }
        let mut name = header_name(&h, posix);
        if let Some(n) = long_name.take() {
            name = n;
        }
        if let Some(p) = pax.take() {
            if let Some(path) = p.path {
                name = path;
            }
            if let Some(s) = p.size {
                if s != size {
                    return Err(corrupt(pos, "pax size differs from the header size"));
                }
                size = s;
            }
        }
        let kind = match typeflag {
            b'0' | 0 => Kind::File,
            b'5' => Kind::Dir,
            t => Kind::Other(t),
        };
        // Links and devices carry no data whatever their size field says.
        let data_size = if matches!(typeflag, b'1' | b'2' | b'3' | b'4' | b'6') {
            0
        } else {
            size
        };
        let next = next_header(data_offset, data_size, len)?;
        entries.push(TarEntry {
            name,
            kind,
            size,
            data_offset,
        });
        pos = next;
    }
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

fn read_fully<R: Read>(r: &mut R, buf: &mut [u8], pos: u64) -> Result<(), TarError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            TarError::Truncated { offset: pos }
        } else {
            TarError::Io(e)
        }
    })
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

fn check_checksum(h: &[u8; BLOCK as usize], pos: u64) -> Result<(), TarError> {
    let stored = parse_octal(&h[148..156]).ok_or_else(|| corrupt(pos, "bad checksum field"))?;
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in h.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    if stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed) {
        Ok(())
    } else {
        Err(corrupt(pos, "header checksum mismatch"))
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

fn c_string(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

fn header_name(h: &[u8; BLOCK as usize], posix: bool) -> Vec<u8> {
    let name = c_string(&h[0..100]);
    let prefix = if posix { c_string(&h[345..500]) } else { &[] };
    if prefix.is_empty() {
        name.to_vec()
    } else {
        let mut full = prefix.to_vec();
        full.push(b'/');
        full.extend_from_slice(name);
        full
    }
}

#[derive(Default)]
struct Pax {
    path: Option<Vec<u8>>,
    size: Option<u64>,
}

/// Records are `"<len> <key>=<value>\n"`, `<len>` counting the whole record.
fn parse_pax(mut data: &[u8]) -> Result<Pax, &'static str> {
    let mut pax = Pax::default();
    while !data.is_empty() {
        let space = data
            .iter()
            .position(|&b| b == b' ')
            .ok_or("pax record without length")?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .ok_or("bad pax record length")?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err("bad pax record length");
        }
        let record = &data[space + 1..len - 1];
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or("pax record without `=`")?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        match key {
            b"path" => pax.path = Some(value.to_vec()),
            b"size" => {
                let s = std::str::from_utf8(value)
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
        data = &data[len..];
    }
    Ok(pax)
}

/// Writes a deterministic archive: the entries in the order given, each a
/// regular file with mode 0644, owner 0:0, mtime 0, empty user and group
/// names, followed by the two-block end marker. Names longer than ustar
/// can hold get a pax `path` record.
pub(crate) fn write_archive<W: Write>(w: &mut W, entries: &[(&str, &[u8])]) -> io::Result<()> {
    for (name, data) in entries {
        let (prefix, short) = match split_ustar(name) {
            Some(split) => split,
            None => {
                let record = pax_record("path", name);
                write_header(w, "", "././@PaxHeader", b'x', record.len() as u64)?;
                write_padded(w, record.as_bytes())?;
                let tail = name.rsplit('/').next().unwrap_or(name);
                ("", truncate(tail, 100))
            }
        };
        write_header(w, prefix, short, b'0', data.len() as u64)?;
        write_padded(w, data)?;
    }
    w.write_all(&[0u8; 2 * BLOCK as usize])
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Splits a name into ustar `prefix` (<= 155 bytes) and `name` (<= 100).
fn split_ustar(name: &str) -> Option<(&str, &str)> {
    if name.len() <= 100 {
        return Some(("", name));
    }
    name.match_indices('/')
        .map(|(i, _)| (&name[..i], &name[i + 1..]))
        .find(|(p, n)| p.len() <= 155 && !n.is_empty() && n.len() <= 100)
}

fn pax_record(key: &str, value: &str) -> String {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}").len() + body.len() != len {
        len = format!("{len}").len() + body.len();
    }
    format!("{len}{body}")
}

fn write_header<W: Write>(
    w: &mut W,
    prefix: &str,
    name: &str,
    typeflag: u8,
    size: u64,
) -> io::Result<()> {
    let mut h = [0u8; BLOCK as usize];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[329..337].copy_from_slice(b"0000000\0");
    h[337..345].copy_from_slice(b"0000000\0");
    h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    w.write_all(&h)
}

fn write_padded<W: Write>(w: &mut W, data: &[u8]) -> io::Result<()> {
    w.write_all(data)?;
    let rem = data.len() % BLOCK as usize;
    if rem != 0 {
        w.write_all(&[0u8; BLOCK as usize][..BLOCK as usize - rem])?;
    }
    Ok(())
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
        let (p, n) = split_ustar(&name).unwrap();
        assert_eq!(p.len(), 120);
        assert_eq!(n.len(), 55);
        let bytes = build(&[(name.as_str(), b"x")]);
        let entries = index(&mut Cursor::new(&bytes), bytes.len() as u64, 10).unwrap();
        assert_eq!(entries[0].name, name.as_bytes());
    }

    #[test]
    fn pax_record_length_counts_itself() {
        for n in [1, 5, 80, 95, 96, 990, 5000] {
            let v = "v".repeat(n);
            let r = pax_record("path", &v);
            let (len, _) = r.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), r.len(), "{n}");
        }
    }

    #[test]
    fn octal_fields() {
        assert_eq!(parse_octal(b"0000644\0"), Some(0o644));
        assert_eq!(parse_octal(b"  17 \0\0\0"), Some(0o17));
        assert_eq!(parse_octal(b"\0\0\0"), None);
        assert_eq!(parse_octal(b"0008\0"), None);
        assert_eq!(parse_octal(b"12 3\0"), None);
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
