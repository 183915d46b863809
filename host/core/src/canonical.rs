//! Canonical JSON written straight from a `Serialize` value: the same bytes
//! as [`crate::canonical_json`] of `serde_json::to_value(value)` (object
//! keys sorted bytewise, no whitespace, serde_json's escaping, integers as
//! serde_json writes them and floats as Python's `repr`, see
//! [`crate::float_text`]), without building the intermediate `Value` tree. Sealing a
//! ledger record is on every step's path; this halves its cost.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::ser::{self, Serialize};

/// Why a value has no canonical JSON form (a map key that is not a string
/// or a number).
#[derive(Debug)]
pub struct CanonicalError(String);

impl std::fmt::Display for CanonicalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CanonicalError {}

impl ser::Error for CanonicalError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

type Result<T> = std::result::Result<T, CanonicalError>;

/// Canonical JSON of `value`.
pub fn to_canonical<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    let mut out = String::with_capacity(256);
    value.serialize(Canon {
        out: &mut out,
        top: None,
    })?;
    Ok(out)
}

/// Canonical JSON of the object `value` without its top-level member
/// `skip`, and the byte offset where `skip` would sort (for splicing it in).
pub fn to_canonical_without<T: Serialize + ?Sized>(
    value: &T,
    skip: &'static str,
) -> Result<(String, usize)> {
    let mut out = String::with_capacity(512);
    let mut split = None;
    value.serialize(Canon {
        out: &mut out,
        top: Some(Top {
            skip,
            split: &mut split,
        }),
    })?;
    let split = split.ok_or_else(|| CanonicalError("the value is not an object".into()))?;
    Ok((out, split))
}

struct Top<'a> {
    skip: &'static str,
    split: &'a mut Option<usize>,
}

struct Canon<'a> {
    out: &'a mut String,
    top: Option<Top<'a>>,
}

/// Writes `s` as a JSON string with serde_json's escaping, byte for byte:
/// `"`, `\\` and the control characters (short forms where JSON has them,
/// `\u00xx` otherwise); everything else, including non-ASCII, as is.
fn write_str(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut plain_from = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Escaped bytes are ASCII, so `i` is a char boundary.
        out.push_str(&s[plain_from..i]);
        if short.is_empty() {
            out.push_str("\\u00");
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        } else {
            out.push_str(short);
        }
        plain_from = i + 1;
    }
    out.push_str(&s[plain_from..]);
    out.push('"');
}

/// One member of an object being written: its key and where its
/// `"key":value` text lies in the output.
struct Member {
    key: Cow<'static, str>,
    start: usize,
    end: usize,
}

/// An object being written. Members are written straight into the output
/// in the order they come; when that order is not already sorted (struct
/// fields in declaration order, say), `finish` rewrites the object's text
/// once in key order. Maps from `serde_json::Value` arrive sorted and cost
/// no copy.
struct Members<'a> {
    out: &'a mut String,
    top: Option<Top<'a>>,
    /// Offset of the object's `{` in `out`.
    open: usize,
    members: Vec<Member>,
    sorted: bool,
    key: Option<Cow<'static, str>>,
    /// For a struct variant: `{"Variant": {...}}`.
    variant: bool,
}

impl<'a> Members<'a> {
    fn open(out: &'a mut String, top: Option<Top<'a>>, variant: Option<&'static str>) -> Self {
        if let Some(v) = variant {
            out.push('{');
            write_str(v, out);
            out.push(':');
        }
        let open = out.len();
        out.push('{');
        Self {
            out,
            top,
            open,
            members: Vec::new(),
            sorted: true,
            key: None,
            variant: variant.is_some(),
        }
    }

    fn member<T: Serialize + ?Sized>(&mut self, key: Cow<'static, str>, value: &T) -> Result<()> {
        if self.top.as_ref().is_some_and(|t| t.skip == key) {
            return Ok(());
        }
        if let Some(last) = self.members.last() {
            // Equal keys also take the rewrite, which keeps the last value
            // (as a `Value` map would).
            if key <= last.key {
                self.sorted = false;
            }
            self.out.push(',');
        }
        let start = self.out.len();
        write_str(&key, self.out);
        self.out.push(':');
        value.serialize(Canon {
            out: self.out,
            top: None,
        })?;
        let end = self.out.len();
        self.members.push(Member { key, start, end });
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        let body = self.open + 1;
        let mut split = None;
        if self.sorted {
            if let Some(top) = &self.top {
                // Before the comma of the first member that sorts after.
                split = Some(
                    self.members
                        .iter()
                        .find(|m| *m.key > *top.skip)
                        .map_or(self.out.len(), |m| m.start.saturating_sub(1).max(body)),
                );
            }
        } else {
            let text = self.out.split_off(body);
            // Stable, so among equal keys the last written is last.
            self.members.sort_by(|a, b| a.key.cmp(&b.key));
            let mut first = true;
            for (i, m) in self.members.iter().enumerate() {
                if self
                    .members
                    .get(i + 1)
                    .is_some_and(|next| next.key == m.key)
                {
                    continue;
                }
                if let Some(top) = &self.top
                    && split.is_none()
                    && *m.key > *top.skip
                {
                    split = Some(self.out.len());
                }
                if !first {
                    self.out.push(',');
                }
                first = false;
                self.out.push_str(&text[m.start - body..m.end - body]);
            }
            if self.top.is_some() && split.is_none() {
                split = Some(self.out.len());
            }
        }
        if let Some(top) = self.top {
            *top.split = split;
        }
        self.out.push('}');
        if self.variant {
            self.out.push('}');
        }
        Ok(())
    }
}

impl ser::SerializeMap for Members<'_> {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        self.key = Some(Cow::Owned(key.serialize(KeyName)?));
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let key = self
            .key
            .take()
            .ok_or_else(|| CanonicalError("a map value without a key".into()))?;
        self.member(key, value)
    }
    fn end(self) -> Result<()> {
        self.finish()
    }
}

impl ser::SerializeStruct for Members<'_> {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<()> {
        self.member(Cow::Borrowed(key), value)
    }
    fn end(self) -> Result<()> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Members<'_> {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<()> {
        ser::SerializeStruct::serialize_field(self, key, value)
    }
    fn end(self) -> Result<()> {
        self.finish()
    }
}

/// Items of an array (or a tuple variant's array).
struct Items<'a> {
    out: &'a mut String,
    first: bool,
    variant: bool,
}

impl Items<'_> {
    fn item<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        value.serialize(Canon {
            out: self.out,
            top: None,
        })
    }
    fn close(self) -> Result<()> {
        self.out.push(']');
        if self.variant {
            self.out.push('}');
        }
        Ok(())
    }
}

macro_rules! items_impl {
    ($trait:ident, $method:ident) => {
        impl ser::$trait for Items<'_> {
            type Ok = ();
            type Error = CanonicalError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
                self.item(value)
            }
            fn end(self) -> Result<()> {
                self.close()
            }
        }
    };
}
items_impl!(SerializeSeq, serialize_element);
items_impl!(SerializeTuple, serialize_element);
items_impl!(SerializeTupleStruct, serialize_field);
items_impl!(SerializeTupleVariant, serialize_field);

macro_rules! integers_as_text {
    ($($method:ident: $ty:ty),*) => {
        $(fn $method(self, v: $ty) -> Result<()> {
            let _ = write!(self.out, "{v}");
            Ok(())
        })*
    };
}

impl<'a> ser::Serializer for Canon<'a> {
    type Ok = ();
    type Error = CanonicalError;
    type SerializeSeq = Items<'a>;
    type SerializeTuple = Items<'a>;
    type SerializeTupleStruct = Items<'a>;
    type SerializeTupleVariant = Items<'a>;
    type SerializeMap = Members<'a>;
    type SerializeStruct = Members<'a>;
    type SerializeStructVariant = Members<'a>;

    fn serialize_bool(self, v: bool) -> Result<()> {
        self.out.push_str(if v { "true" } else { "false" });
        Ok(())
    }
    // Integers as their decimal text, which is what serde_json writes.
    integers_as_text!(
        serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_u128: u128
    );
    fn serialize_f32(self, v: f32) -> Result<()> {
        self.serialize_f64(v.into())
    }
    fn serialize_f64(self, v: f64) -> Result<()> {
        // As a `Value`: a finite float is a number, anything else null.
        if v.is_finite() {
            crate::float_text::write_python_float(v, self.out);
        } else {
            self.out.push_str("null");
        }
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<()> {
        write_str(v.encode_utf8(&mut [0; 4]), self.out);
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<()> {
        write_str(v, self.out);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<()> {
        let mut seq = self.serialize_seq(Some(v.len()))?;
        for b in v {
            ser::SerializeSeq::serialize_element(&mut seq, b)?;
        }
        ser::SerializeSeq::end(seq)
    }
    fn serialize_none(self) -> Result<()> {
        self.out.push_str("null");
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<()> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<()> {
        self.serialize_none()
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<()> {
        self.serialize_none()
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<()> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<()> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<()> {
        self.out.push('{');
        write_str(variant, self.out);
        self.out.push(':');
        value.serialize(Canon {
            out: self.out,
            top: None,
        })?;
        self.out.push('}');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Items<'a>> {
        self.out.push('[');
        Ok(Items {
            out: self.out,
            first: true,
            variant: false,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Items<'a>> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Items<'a>> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Items<'a>> {
        self.out.push('{');
        write_str(variant, self.out);
        self.out.push_str(":[");
        Ok(Items {
            out: self.out,
            first: true,
            variant: true,
        })
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Members<'a>> {
        Ok(Members::open(self.out, self.top, None))
    }
    fn serialize_struct(self, _: &'static str, _len: usize) -> Result<Members<'a>> {
        self.serialize_map(None)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Members<'a>> {
        Ok(Members::open(self.out, None, Some(variant)))
    }
}

/// Map keys: strings, or numbers and bools written as strings (as
/// `serde_json::to_value` does).
struct KeyName;

macro_rules! key_from_display {
    ($($method:ident: $ty:ty),*) => {
        $(fn $method(self, v: $ty) -> Result<String> {
            Ok(v.to_string())
        })*
    };
}

impl ser::Serializer for KeyName {
    type Ok = String;
    type Error = CanonicalError;
    type SerializeSeq = ser::Impossible<String, CanonicalError>;
    type SerializeTuple = ser::Impossible<String, CanonicalError>;
    type SerializeTupleStruct = ser::Impossible<String, CanonicalError>;
    type SerializeTupleVariant = ser::Impossible<String, CanonicalError>;
    type SerializeMap = ser::Impossible<String, CanonicalError>;
    type SerializeStruct = ser::Impossible<String, CanonicalError>;
    type SerializeStructVariant = ser::Impossible<String, CanonicalError>;

    key_from_display!(
        serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
        serialize_i64: i64, serialize_i128: i128, serialize_u8: u8, serialize_u16: u16,
        serialize_u32: u32, serialize_u64: u64, serialize_u128: u128, serialize_char: char
    );
    fn serialize_str(self, v: &str) -> Result<String> {
        Ok(v.to_owned())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<String> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<String> {
        value.serialize(self)
    }
    fn serialize_f32(self, _: f32) -> Result<String> {
        Err(key_error())
    }
    fn serialize_f64(self, _: f64) -> Result<String> {
        Err(key_error())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<String> {
        Err(key_error())
    }
    fn serialize_none(self) -> Result<String> {
        Err(key_error())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<String> {
        Err(key_error())
    }
    fn serialize_unit(self) -> Result<String> {
        Err(key_error())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<String> {
        Err(key_error())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<String> {
        Err(key_error())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq> {
        Err(key_error())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple> {
        Err(key_error())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct> {
        Err(key_error())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        Err(key_error())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap> {
        Err(key_error())
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct> {
        Err(key_error())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant> {
        Err(key_error())
    }
}

fn key_error() -> CanonicalError {
    CanonicalError("a map key must be a string or a number".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical_json;
    use serde_json::json;

    fn same<T: Serialize>(v: &T) {
        let via_value = canonical_json(&serde_json::to_value(v).unwrap());
        assert_eq!(to_canonical(v).unwrap(), via_value);
    }

    #[test]
    fn matches_the_value_path_on_awkward_values() {
        same(
            &json!({"b": 1, "a": [1.5, -2, 1e300, "é\"\\\n\u{1}", null, true], "": {"z": {}, "y": []}}),
        );
        same(&json!(0.1));
        same(&json!(u64::MAX));
        same(&json!(i64::MIN));
        let mut m = std::collections::HashMap::new();
        m.insert(3u32, "x");
        m.insert(10u32, "y");
        same(&m);
        same(&(1, "two", [3.0f64]));
        same(&f64::NAN);
        same(&Some("x"));
        same(&'é');
    }

    #[test]
    fn escapes_every_ascii_byte_as_serde_json_does() {
        let all: String = (0u8..=0x7f).map(char::from).collect();
        same(&all);
        same(&json!({ all.clone(): all }));
    }

    #[test]
    fn struct_fields_out_of_order_and_repeated_keys() {
        #[derive(serde::Serialize)]
        struct Inner {
            zeta: u8,
            alpha: &'static str,
        }
        #[derive(serde::Serialize)]
        struct Outer {
            m: u8,
            #[serde(flatten)]
            extra: std::collections::BTreeMap<&'static str, u8>,
            b: Inner,
            a: Vec<Inner>,
        }
        let v = Outer {
            m: 1,
            extra: [("zz", 2), ("c", 3), ("", 4)].into_iter().collect(),
            b: Inner {
                zeta: 5,
                alpha: "x",
            },
            a: vec![Inner {
                zeta: 6,
                alpha: "y",
            }],
        };
        same(&v);
        // A repeated key keeps its last value, as a `Value` map does.
        struct Twice;
        impl Serialize for Twice {
            fn serialize<S: ser::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                use ser::SerializeMap;
                let mut m = s.serialize_map(None)?;
                m.serialize_entry("k", &1)?;
                m.serialize_entry("a", &2)?;
                m.serialize_entry("k", &3)?;
                m.end()
            }
        }
        assert_eq!(to_canonical(&Twice).unwrap(), r#"{"a":2,"k":3}"#);
        for skip in ["", "a", "b", "k", "z"] {
            let (text, split) = to_canonical_without(&Twice, skip).unwrap();
            let expect = match skip {
                "a" => (r#"{"k":3}"#, 1),
                "k" => (r#"{"a":2}"#, 6),
                "" => (r#"{"a":2,"k":3}"#, 1),
                "b" => (r#"{"a":2,"k":3}"#, 6),
                _ => (r#"{"a":2,"k":3}"#, 12),
            };
            assert_eq!((text.as_str(), split), expect, "skip {skip:?}");
        }
    }

    #[test]
    fn every_kind_of_effect_and_record_matches() {
        use crate::model::*;
        let effects = vec![
            Effect::AskUser {
                prompt: "p".into(),
                choices: vec!["a".into()],
                allow_free_text: false,
            },
            Effect::WaitEvent {
                name: "n".into(),
                scope: EventScope::Run("r".into()),
                deadline_ms: Some(5),
            },
            Effect::WaitEvent {
                name: "n".into(),
                scope: EventScope::Global,
                deadline_ms: None,
            },
            Effect::StartSubworkflow {
                workflow_id: "w".into(),
                vars: json!({"k": [1, {"b": 2, "a": 1}]}),
                mode: ChildMode::Async,
            },
            Effect::ToolCalls {
                calls: vec![ToolCall {
                    call_id: "c".into(),
                    name: "t".into(),
                    arguments: json!({"x": 1}),
                }],
            },
            Effect::Custom {
                name: "charge".into(),
                payload: json!({"amount": 5.25}),
            },
        ];
        for e in &effects {
            same(e);
            let mut rec = StepRecord::new("run", RecordKind::Step, StepStatus::Waiting, 9);
            rec.effect = Some(e.clone());
            rec.writes = vec![
                VarWrite::Set {
                    path: "a.b".into(),
                    value: json!({"z": 1, "y": [true]}),
                },
                VarWrite::Remove { path: "c".into() },
            ];
            rec.wait = Some(WaitState {
                prompt: Some("q".into()),
                pending_plan: Some(Box::new(StepPlan::next("x").set("k", json!(1)))),
                ..WaitState::new(WaitReason::Retry)
            });
            rec.error = Some(RunError::new(FailureKind::EffectFailed, "boom").at_node("n"));
            rec.logs = vec![LogLine {
                level: "info".into(),
                message: "m".into(),
                fields: vec![("k".into(), "v".into())],
            }];
            same(&rec);
            let (text, split) = to_canonical_without(&rec, "record_hash").unwrap();
            let mut value = serde_json::to_value(&rec).unwrap();
            value.as_object_mut().unwrap().remove("record_hash");
            assert_eq!(text, canonical_json(&value));
            assert!(split > 1 && split < text.len());
        }
    }
}
