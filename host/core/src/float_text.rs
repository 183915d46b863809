//! Floats in canonical JSON, written exactly as Python's `repr(float)` (and
//! so `json.dumps`) writes them.
//!
//! The ledger's hash rule is shared with AbstractRuntime, which hashes
//! `json.dumps(record, sort_keys=True, separators=(",", ":"))`: a float's
//! text there is Python's shortest round-trip repr, which switches to
//! exponent form below 1e-4 and from 1e16 on, with a signed exponent of at
//! least two digits (`1e-05`, `1.5e+16`). serde_json writes `0.00001` and
//! `1e16` for the same doubles, so a record holding them would hash
//! differently on the two sides.

use std::fmt::Write as _;

/// Appends Python's `repr(v)` of the finite double `v` to `out`.
///
/// Both sides use the shortest digit string that reads back as `v` (Rust's
/// `{:e}` and Python's `dtoa` mode 0); only the layout differs, and that is
/// what this reproduces (CPython's `format_float_short` with
/// `Py_DTSF_ADD_DOT_0`).
pub fn write_python_float(v: f64, out: &mut String) {
    debug_assert!(v.is_finite(), "JSON has no text for {v}");
    let sci = shortest_scientific(v.abs());
    let (mantissa, exp) = sci
        .split_once('e')
        .expect("`{:e}` always writes an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` writes a decimal exponent");
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    // Python's `decpt`: the value is 0.DIGITS x 10^decpt.
    let decpt = exp + 1;
    if v.is_sign_negative() {
        out.push('-');
    }
    if v == 0.0 {
        out.push_str("0.0");
    } else if !(-4 < decpt && decpt <= 16) {
        write_exponent_form(&digits, decpt - 1, out);
    } else {
        write_fixed_form(&digits, decpt, out);
    }
}

/// The shortest digits that read back as `v`, as `d.ddde<exp>`.
///
/// Rust's `{:e}` finds the shortest length, but when two strings of that
/// length are equally close to `v` it takes the upper one, where Python's
/// `dtoa` rounds half to even (`...943.25` is `...943.2` in Python). At
/// that length, `{:.N$e}` rounds the exact value half to even; it is used
/// whenever it still reads back as `v` (next to a power of two, the closer
/// side may fall outside the rounding interval, and then only the other
/// candidate is valid, as in Python).
fn shortest_scientific(v: f64) -> String {
    let shortest = format!("{v:e}");
    let mantissa = shortest
        .split_once('e')
        .map_or(shortest.as_str(), |(m, _)| m);
    let digits = mantissa.bytes().filter(u8::is_ascii_digit).count();
    let even = format!("{v:.prec$e}", prec = digits.saturating_sub(1));
    if even != shortest && even.parse::<f64>() == Ok(v) {
        even
    } else {
        shortest
    }
}

/// `d[.ddd]e±XX`: no `.0` is added, and the exponent has a sign and at
/// least two digits.
fn write_exponent_form(digits: &str, exp: i32, out: &mut String) {
    out.push_str(&digits[..1]);
    if digits.len() > 1 {
        out.push('.');
        out.push_str(&digits[1..]);
    }
    let sign = if exp < 0 { '-' } else { '+' };
    let _ = write!(out, "e{sign}{:02}", exp.unsigned_abs());
}

/// Plain decimal notation, always with a fractional part (`.0` if none).
fn write_fixed_form(digits: &str, decpt: i32, out: &mut String) {
    let n = digits.len() as i32;
    if decpt <= 0 {
        out.push_str("0.");
        for _ in 0..-decpt {
            out.push('0');
        }
        out.push_str(digits);
    } else if decpt < n {
        let point = decpt as usize;
        out.push_str(&digits[..point]);
        out.push('.');
        out.push_str(&digits[point..]);
    } else {
        out.push_str(digits);
        for _ in 0..decpt - n {
            out.push('0');
        }
        out.push_str(".0");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repr(v: f64) -> String {
        let mut s = String::new();
        write_python_float(v, &mut s);
        s
    }

    #[test]
    fn layout_matches_python_at_the_switch_points() {
        // Each pair is what CPython 3 prints for repr(x).
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (-2.5, "-2.5"),
            (1e-5, "1e-05"),
            (1.5e-6, "1.5e-06"),
            (1e-9, "1e-09"),
            (0.0001, "0.0001"),
            (0.00012, "0.00012"),
            (9.999e-5, "9.999e-05"),
            (1e15, "1000000000000000.0"),
            (1.2345e15, "1234500000000000.0"),
            (9999999999999998.0, "9999999999999998.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e100, "1e+100"),
            (1e-100, "1e-100"),
            (0.1, "0.1"),
            (123.456, "123.456"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
            (5e-324, "5e-324"),
        ];
        for (v, want) in cases {
            assert_eq!(repr(v), want, "repr({v:e})");
        }
    }

    /// Every double of the committed table (written by CPython, see
    /// `scripts/python_float_table.py`) comes out as Python wrote it.
    #[test]
    fn matches_the_committed_python_table() {
        let table = include_str!("../testdata/python_float_repr.txt");
        let mut checked = 0;
        for line in table.lines().filter(|l| !l.starts_with('#')) {
            let (bits, want) = line.split_once(' ').expect("`bits repr` lines");
            let v = f64::from_bits(u64::from_str_radix(bits, 16).expect("hex bits"));
            assert_eq!(repr(v), want, "repr of the double with bits {bits}");
            checked += 1;
        }
        assert!(checked > 5000, "the table has {checked} rows");
    }

    /// Random doubles against the `python3` on this machine (the test suite
    /// needs one anyway, for the Python guests).
    #[test]
    fn matches_python_on_random_doubles() {
        use std::io::Write as _;
        use std::process::{Command, Stdio};
        let script = "import struct,sys\nfor l in sys.stdin:\n    \
                      print(repr(struct.unpack('<d',bytes.fromhex(l.strip()))[0]))";
        let mut child = Command::new("python3")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the test suite needs python3 (see README.md)");
        // A small xorshift: reproducible, no dependency.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ std::process::id() as u64;
        let mut values = Vec::new();
        while values.len() < 20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let v = f64::from_bits(state);
            if v.is_finite() {
                values.push(v);
            }
        }
        let input: String = values
            .iter()
            .map(|v| format!("{}\n", hex::encode(v.to_le_bytes())))
            .collect();
        let mut stdin = child.stdin.take().expect("piped");
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let out = child.wait_with_output().expect("python3 ran");
        writer
            .join()
            .expect("writer thread")
            .expect("wrote to python3");
        assert!(out.status.success(), "python3 failed");
        let text = String::from_utf8(out.stdout).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), values.len());
        for (v, want) in values.iter().zip(lines) {
            assert_eq!(
                repr(*v),
                want,
                "repr of the double with bits {:016x}",
                v.to_bits()
            );
        }
    }
}
