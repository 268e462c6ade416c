//! A typed JSON answer written as v1 clients have always read it: keys in alphabetical
//! order at every level, as the original's Flask `jsonify` wrote them.
//!
//! The bytes are those of `serde_json::to_vec(&serde_json::to_value(x))` (a `Value`'s
//! objects are sorted maps), written straight from the typed value: each object's entries
//! are serialised into one scratch buffer, sorted by key and copied out, so no `Value` tree
//! is built (for a list of 4,000 users that tree was ~3 MiB per call, the bytes ~0.3). A
//! closed object's buffers are kept for the next one: the 4,000 users' objects share one
//! pair instead of allocating (and growing) two each.

use std::ops::Range;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::ser::{self, SerializeMap as _};
use serde_json::Error;

/// A handler's typed answer; its objects' keys are written sorted, so adding or reordering
/// fields in a type never changes the bytes of an answer.
pub struct Answer<T>(pub T);

impl<T: Serialize> IntoResponse for Answer<T> {
    fn into_response(self) -> Response {
        match to_sorted_vec(&self.0) {
            Ok(bytes) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                bytes,
            )
                .into_response(),
            Err(e) => crate::error::Error::Internal(e.into()).into_response(),
        }
    }
}

/// `value` as JSON with every object's keys in sorted order (a repeated key keeps its last
/// value), byte for byte what `serde_json::to_vec(&serde_json::to_value(value)?)` writes.
pub fn to_sorted_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(256);
    let mut spares = Vec::new();
    value.serialize(Sorted {
        out: &mut out,
        spares: &mut spares,
    })?;
    Ok(out)
}

/// An object's buffers: its entries' text, and each entry's key and value in it.
type Buffers = (Vec<u8>, Vec<(Range<usize>, Range<usize>)>);

/// Writes one value into `out`.
struct Sorted<'a> {
    out: &'a mut Vec<u8>,
    /// Buffers of closed objects, empty, for the next ones (one pair per nesting depth).
    spares: &'a mut Vec<Buffers>,
}

impl Sorted<'_> {
    /// A scalar written as `Value` holds it (floats and 128-bit integers go through it
    /// exactly as `to_value` converts them).
    fn through_value<T: Serialize + ?Sized>(self, v: &T) -> Result<(), Error> {
        serde_json::to_writer(self.out, &serde_json::to_value(v)?)
    }

    fn plain<T: Serialize + ?Sized>(self, v: &T) -> Result<(), Error> {
        serde_json::to_writer(self.out, v)
    }
}

impl<'a> ser::Serializer for Sorted<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Seq<'a>;
    type SerializeTuple = Seq<'a>;
    type SerializeTupleStruct = Seq<'a>;
    type SerializeTupleVariant = Seq<'a>;
    type SerializeMap = Object<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = Object<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.plain(&v)
    }
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.plain(&v)
    }
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.plain(&v)
    }
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.plain(&v)
    }
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        self.plain(&v)
    }
    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        self.through_value(&v)
    }
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.plain(&v)
    }
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.plain(&v)
    }
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.plain(&v)
    }
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        self.plain(&v)
    }
    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        self.through_value(&v)
    }
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        self.through_value(&v)
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        self.through_value(&v)
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.plain(&v)
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.plain(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        self.plain(v)
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.plain(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.out.push(b'{');
        serde_json::to_writer(&mut *self.out, variant)?;
        self.out.push(b':');
        value.serialize(Sorted {
            out: &mut *self.out,
            spares: &mut *self.spares,
        })?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Seq<'a>, Error> {
        self.out.push(b'[');
        Ok(Seq {
            out: self.out,
            spares: self.spares,
            first: true,
            in_variant: false,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Seq<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Seq<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Seq<'a>, Error> {
        self.out.push(b'{');
        serde_json::to_writer(&mut *self.out, variant)?;
        self.out.extend_from_slice(b":[");
        Ok(Seq {
            out: self.out,
            spares: self.spares,
            first: true,
            in_variant: true,
        })
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Object<'a>, Error> {
        Ok(Object::new(self.out, self.spares, false))
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<Object<'a>, Error> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Object<'a>, Error> {
        self.out.push(b'{');
        serde_json::to_writer(&mut *self.out, variant)?;
        self.out.push(b':');
        Ok(Object::new(self.out, self.spares, true))
    }
}

/// An array (or a tuple variant's `{"V":[…]}`) written as its elements come.
struct Seq<'a> {
    out: &'a mut Vec<u8>,
    spares: &'a mut Vec<Buffers>,
    first: bool,
    in_variant: bool,
}

impl Seq<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        value.serialize(Sorted {
            out: &mut *self.out,
            spares: &mut *self.spares,
        })
    }

    fn close(self) -> Result<(), Error> {
        self.out.push(b']');
        if self.in_variant {
            self.out.push(b'}');
        }
        Ok(())
    }
}

impl ser::SerializeSeq for Seq<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Error> {
        self.close()
    }
}

impl ser::SerializeTuple for Seq<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Error> {
        self.close()
    }
}

impl ser::SerializeTupleStruct for Seq<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Error> {
        self.close()
    }
}

impl ser::SerializeTupleVariant for Seq<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Error> {
        self.close()
    }
}

/// An object (or a struct variant's `{"V":{…}}`): keys and values go into `scratch` as
/// they come, and are written to `out` in key order at the end.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    spares: &'a mut Vec<Buffers>,
    scratch: Vec<u8>,
    /// Each entry's key (unescaped text) and value (JSON) in `scratch`.
    entries: Vec<(Range<usize>, Range<usize>)>,
    /// The key `serialize_key` was given, waiting for its value.
    key: Option<Range<usize>>,
    in_variant: bool,
}

impl<'a> Object<'a> {
    fn new(out: &'a mut Vec<u8>, spares: &'a mut Vec<Buffers>, in_variant: bool) -> Self {
        let (scratch, entries) = spares.pop().unwrap_or_default();
        Self {
            out,
            spares,
            scratch,
            entries,
            key: None,
            in_variant,
        }
    }

    fn push_key(&mut self, key: &str) -> Range<usize> {
        let start = self.scratch.len();
        self.scratch.extend_from_slice(key.as_bytes());
        start..self.scratch.len()
    }

    fn push_value<T: Serialize + ?Sized>(
        &mut self,
        key: Range<usize>,
        value: &T,
    ) -> Result<(), Error> {
        let start = self.scratch.len();
        value.serialize(Sorted {
            out: &mut self.scratch,
            spares: &mut *self.spares,
        })?;
        self.entries.push((key, start..self.scratch.len()));
        Ok(())
    }

    fn close(mut self) -> Result<(), Error> {
        let scratch = &self.scratch;
        let text = |r: &Range<usize>| &scratch[r.clone()];
        // Stable: of entries with the same key, the last one given is the last here.
        self.entries.sort_by(|a, b| text(&a.0).cmp(text(&b.0)));
        self.out.push(b'{');
        let mut first = true;
        for (i, (key, value)) in self.entries.iter().enumerate() {
            let repeated = self
                .entries
                .get(i + 1)
                .is_some_and(|next| text(&next.0) == text(key));
            if repeated {
                continue;
            }
            if !first {
                self.out.push(b',');
            }
            first = false;
            // Keys were `&str` going in, so they are UTF-8 coming out.
            let key = std::str::from_utf8(text(key)).map_err(ser::Error::custom)?;
            serde_json::to_writer(&mut *self.out, key)?;
            self.out.push(b':');
            self.out.extend_from_slice(text(value));
        }
        self.out.push(b'}');
        if self.in_variant {
            self.out.push(b'}');
        }
        self.scratch.clear();
        self.entries.clear();
        self.spares.push((self.scratch, self.entries));
        Ok(())
    }
}

impl ser::SerializeMap for Object<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        let text = map_key(key)?;
        self.key = Some(self.push_key(&text));
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let key = self
            .key
            .take()
            .ok_or_else(|| ser::Error::custom("map value without a key"))?;
        self.push_value(key, value)
    }
    fn end(self) -> Result<(), Error> {
        self.close()
    }
}

impl ser::SerializeStruct for Object<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        let key = self.push_key(key);
        self.push_value(key, value)
    }
    fn end(self) -> Result<(), Error> {
        self.close()
    }
}

impl ser::SerializeStructVariant for Object<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        ser::SerializeStruct::serialize_field(self, key, value)
    }
    fn end(self) -> Result<(), Error> {
        self.close()
    }
}

/// A map key as `to_value` turns it into an object key, by serde_json's own conversion
/// (numbers, bools and unit variants become text; its refusals are ours). No answer's type
/// holds a map today, so this is not on any request's path.
fn map_key<T: Serialize + ?Sized>(key: &T) -> Result<String, Error> {
    struct One<'k, K: ?Sized>(&'k K);
    impl<K: Serialize + ?Sized> Serialize for One<'_, K> {
        fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(Some(1))?;
            map.serialize_entry(self.0, &())?;
            map.end()
        }
    }
    match serde_json::to_value(One(key))? {
        serde_json::Value::Object(map) => map
            .into_iter()
            .next()
            .map(|(k, _)| k)
            .ok_or_else(|| ser::Error::custom("map key vanished")),
        _ => Err(ser::Error::custom("map key is not an object key")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use serde::Serialize;

    use super::to_sorted_vec;

    /// The bytes `Answer` used to write: through a `Value`, whose objects are sorted maps.
    pub(crate) fn through_value<T: Serialize>(x: &T) -> Vec<u8> {
        serde_json::to_vec(&serde_json::to_value(x).unwrap()).unwrap()
    }

    /// `x` written straight and through a `Value` are the same bytes.
    pub(crate) fn assert_same<T: Serialize>(x: &T) {
        let direct = to_sorted_vec(x).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&direct),
            String::from_utf8_lossy(&through_value(x))
        );
    }

    #[derive(Serialize)]
    struct Inner {
        zeta: &'static str,
        alpha: Option<u8>,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<u8>,
    }

    #[derive(Serialize)]
    enum Kind {
        Unit,
        Newtype(Inner),
        Tuple(u8, &'static str),
        Struct { b: bool, a: Vec<u8> },
    }

    #[derive(Serialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum Tagged {
        Found { name: String, attributes: String },
        Missing,
    }

    #[derive(Serialize)]
    #[serde(untagged)]
    enum Either {
        Inner(Inner),
        Error { error: String },
    }

    #[derive(Serialize)]
    struct Outer {
        users: Vec<Inner>,
        #[serde(flatten)]
        first: Inner,
        // Repeats `zeta` from the flattened part: the later one wins, as in a `Value`.
        zeta: String,
        empty: Vec<String>,
        empty_map: BTreeMap<String, u8>,
        kinds: Vec<Kind>,
        tagged: Vec<Tagged>,
        either: Vec<Either>,
        numbers: (i64, u64, f64, f32, f64, i128, u128),
        map_int_keys: BTreeMap<u32, &'static str>,
        map_bool_keys: HashMap<bool, ()>,
        text: &'static str,
        raw: serde_json::Value,
        bytes: &'static [u8],
        unit: (),
        ch: char,
    }

    #[test]
    fn sorted_bytes_equal_those_through_a_value() {
        let outer = Outer {
            users: vec![
                Inner {
                    zeta: "é \"q\" \\ \u{1}\u{1f}\u{7f}\n\t\r\u{2028}😀",
                    alpha: None,
                    skipped: None,
                },
                Inner {
                    zeta: "",
                    alpha: Some(255),
                    skipped: Some(1),
                },
            ],
            first: Inner {
                zeta: "from the flattened part",
                alpha: Some(0),
                skipped: None,
            },
            zeta: "from the outer struct".into(),
            empty: vec![],
            empty_map: BTreeMap::new(),
            kinds: vec![
                Kind::Unit,
                Kind::Newtype(Inner {
                    zeta: "z",
                    alpha: None,
                    skipped: None,
                }),
                Kind::Tuple(7, "t"),
                Kind::Struct {
                    b: true,
                    a: vec![1, 2],
                },
            ],
            tagged: vec![
                Tagged::Found {
                    name: "n".into(),
                    attributes: "superuser, create database".into(),
                },
                Tagged::Missing,
            ],
            either: vec![
                Either::Inner(Inner {
                    zeta: "a",
                    alpha: Some(1),
                    skipped: None,
                }),
                Either::Error {
                    error: "no such entry".into(),
                },
            ],
            numbers: (-1, u64::MAX, 0.1, 0.1, f64::NAN, -5, 7),
            map_int_keys: [(10, "ten"), (9, "nine"), (100, "hundred")].into(),
            map_bool_keys: [(true, ()), (false, ())].into(),
            text: "<script>&</script>",
            raw: serde_json::json!({"b": [1, {"d": null, "c": 1.5}], "a": "x"}),
            bytes: b"\x00\xff",
            unit: (),
            ch: '\u{0}',
        };
        assert_same(&outer);
    }

    #[test]
    fn keys_sort_by_their_bytes_not_their_escapes() {
        let map: BTreeMap<String, u8> = [
            ("é".to_owned(), 1),
            ("Z".to_owned(), 2),
            ("a\"".to_owned(), 3),
            ("a".to_owned(), 4),
            ("\u{1}".to_owned(), 5),
            (String::new(), 6),
        ]
        .into();
        let unsorted: HashMap<_, _> = map.clone().into_iter().collect();
        assert_same(&map);
        assert_same(&unsorted);
        assert_eq!(
            to_sorted_vec(&unsorted).unwrap(),
            to_sorted_vec(&map).unwrap()
        );
    }

    #[test]
    fn keys_serde_json_refuses_are_refused() {
        let map: BTreeMap<Vec<u8>, u8> = [(vec![1], 1)].into();
        assert!(serde_json::to_value(&map).is_err());
        assert!(to_sorted_vec(&map).is_err());
    }
}
