//! Canonical JSON written straight from a `Serialize` value: the same bytes
//! as [`crate::canonical_json`] of `serde_json::to_value(value)` (object
//! keys sorted bytewise, no whitespace, serde_json's escaping and number
//! formatting), without building the intermediate `Value` tree. Sealing a
//! ledger record is on every step's path; this halves its cost.

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

fn write_str(s: &str, out: &mut String) {
    // serde_json's escaping, byte for byte.
    out.push_str(&serde_json::to_string(s).expect("strings always serialize"));
}

fn nested<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    to_canonical(value)
}

/// Members of an object being written; sorted and written at the end.
struct Members<'a> {
    out: &'a mut String,
    top: Option<Top<'a>>,
    entries: Vec<(String, String)>,
    key: Option<String>,
    /// For a struct variant: `{"Variant": {...}}`.
    variant: Option<&'static str>,
}

impl Members<'_> {
    fn push(&mut self, key: String, value: String) {
        if self.top.as_ref().is_some_and(|t| t.skip == key) {
            return;
        }
        // A repeated key keeps its last value, as in a `Value` map.
        if let Some(slot) = self.entries.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = value;
        } else {
            self.entries.push((key, value));
        }
    }

    fn finish(mut self) -> Result<()> {
        self.entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if let Some(v) = self.variant {
            self.out.push('{');
            write_str(v, self.out);
            self.out.push(':');
        }
        self.out.push('{');
        let mut split = None;
        for (i, (k, v)) in self.entries.iter().enumerate() {
            if let Some(top) = &self.top
                && split.is_none()
                && k.as_str() > top.skip
            {
                split = Some(self.out.len());
            }
            if i > 0 {
                self.out.push(',');
            }
            write_str(k, self.out);
            self.out.push(':');
            self.out.push_str(v);
        }
        if let Some(top) = self.top {
            *top.split = Some(split.unwrap_or(self.out.len()));
        }
        self.out.push('}');
        if self.variant.is_some() {
            self.out.push('}');
        }
        Ok(())
    }
}

impl ser::SerializeMap for Members<'_> {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        self.key = Some(key.serialize(KeyName)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let key = self
            .key
            .take()
            .ok_or_else(|| CanonicalError("a map value without a key".into()))?;
        let value = nested(value)?;
        self.push(key, value);
        Ok(())
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
        let value = nested(value)?;
        self.push(key.to_owned(), value);
        Ok(())
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
    fn serialize_i8(self, v: i8) -> Result<()> {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<()> {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<()> {
        self.serialize_i64(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<()> {
        let _ = write!(self.out, "{v}");
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<()> {
        let _ = write!(self.out, "{v}");
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<()> {
        self.serialize_u64(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<()> {
        self.serialize_u64(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<()> {
        self.serialize_u64(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<()> {
        let _ = write!(self.out, "{v}");
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<()> {
        let _ = write!(self.out, "{v}");
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<()> {
        self.serialize_f64(v.into())
    }
    fn serialize_f64(self, v: f64) -> Result<()> {
        // As a `Value`: a finite float is a number, anything else null.
        match serde_json::Number::from_f64(v) {
            Some(n) => {
                let _ = write!(self.out, "{n}");
            }
            None => self.out.push_str("null"),
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
        Ok(Members {
            out: self.out,
            top: self.top,
            entries: Vec::new(),
            key: None,
            variant: None,
        })
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
        Ok(Members {
            out: self.out,
            top: None,
            entries: Vec::new(),
            key: None,
            variant: Some(variant),
        })
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
