//! Node formats (spec 6.3.1) and typed leaf values with their dmmo+json mapping (spec 7.5).
//!
//! A leaf travels in `application/dmmo+json` as the JSON value of its format's type:
//!
//! ```text
//! chr, xml, date, time  "GPS"        (JSON string)
//! int                   12345        (JSON integer)
//! float                 12.5         (JSON number, always with a fraction or exponent)
//! bool                  true         (JSON boolean)
//! b64, bin              "oKE="       (standard base64 with padding)
//! null                  null
//! ```
//!
//! Without a DDF the format is inferred from the JSON type alone, see
//! [`LeafValue::from_json_inferred`]; with one, [`LeafValue::from_json_as`] converts leniently.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::Value;

/// Decodes base64 whether or not the sender padded it (we always emit padding).
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The `Format` property of a node (spec 6.3.1): `node` for interior nodes, the rest for leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    /// `node`: an interior node.
    Node,
    /// `null`: a leaf without a value.
    Null,
    /// `b64`: binary data, carried base64-encoded.
    B64,
    /// `bin`: binary data, carried base64-encoded in JSON.
    Bin,
    /// `bool`: `true` or `false`.
    Bool,
    /// `chr`: text.
    Chr,
    /// `int`: a signed integer (64 bits here: the 7.5 example carries 666141534364).
    Int,
    /// `xml`: an XML document as text.
    Xml,
    /// `date`: an ISO 8601 date as text.
    Date,
    /// `time`: an ISO 8601 time as text.
    Time,
    /// `float`: a finite IEEE 754 double.
    Float,
}

/// Every format, in the order of spec 6.3.1.
pub const ALL_FORMATS: [Format; 11] = [
    Format::Node,
    Format::Null,
    Format::B64,
    Format::Bin,
    Format::Bool,
    Format::Chr,
    Format::Int,
    Format::Xml,
    Format::Date,
    Format::Time,
    Format::Float,
];

impl Format {
    /// The DDF spelling, e.g. `b64`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Node => "node",
            Format::Null => "null",
            Format::B64 => "b64",
            Format::Bin => "bin",
            Format::Bool => "bool",
            Format::Chr => "chr",
            Format::Int => "int",
            Format::Xml => "xml",
            Format::Date => "date",
            Format::Time => "time",
            Format::Float => "float",
        }
    }

    /// True for every format but `node`.
    pub fn is_leaf(self) -> bool {
        self != Format::Node
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A format name that is not one of the eleven of spec 6.3.1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown node format {0:?}: expected one of node, null, b64, bin, bool, chr, int, xml, date, time, float")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;
    /// Accepts the DDF spelling in any letter case (`chr`, `CHR`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ALL_FORMATS
            .into_iter()
            .find(|format| format.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| UnknownFormat(text.to_owned()))
    }
}

impl serde::Serialize for Format {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Format {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The value of a leaf node, typed by its format.
#[derive(Debug, Clone, PartialEq)]
pub enum LeafValue {
    /// `null`.
    Null,
    /// `b64`: the decoded bytes.
    B64(Vec<u8>),
    /// `bin`: the bytes.
    Bin(Vec<u8>),
    /// `bool`.
    Bool(bool),
    /// `chr`.
    Chr(String),
    /// `int`.
    Int(i64),
    /// `xml`.
    Xml(String),
    /// `date`, kept as the text the device gave.
    Date(String),
    /// `time`, kept as the text the device gave.
    Time(String),
    /// `float`; must be finite (JSON cannot carry NaN or infinities).
    Float(f64),
}

/// Why a JSON value cannot be a leaf of the wanted format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeafValueError {
    #[error("a {found} cannot be a leaf value")]
    NotALeaf { found: &'static str },
    #[error("a {found} is not a valid {format} value")]
    WrongJsonType { format: Format, found: &'static str },
    #[error("{text:?} is not a valid {format} value")]
    InvalidText { format: Format, text: String },
    #[error("integer {0} does not fit in 64 bits")]
    IntegerOutOfRange(String),
    #[error("float value is not finite; JSON cannot carry it")]
    NonFiniteFloat,
    #[error("the node format is for interior nodes, not leaves")]
    InteriorFormat,
}

impl LeafValue {
    /// The format of this value.
    pub fn format(&self) -> Format {
        match self {
            LeafValue::Null => Format::Null,
            LeafValue::B64(_) => Format::B64,
            LeafValue::Bin(_) => Format::Bin,
            LeafValue::Bool(_) => Format::Bool,
            LeafValue::Chr(_) => Format::Chr,
            LeafValue::Int(_) => Format::Int,
            LeafValue::Xml(_) => Format::Xml,
            LeafValue::Date(_) => Format::Date,
            LeafValue::Time(_) => Format::Time,
            LeafValue::Float(_) => Format::Float,
        }
    }

    /// Refuses what JSON could not carry (a NaN or infinite float).
    pub fn check(&self) -> Result<(), LeafValueError> {
        match self {
            LeafValue::Float(number) if !number.is_finite() => Err(LeafValueError::NonFiniteFloat),
            _ => Ok(()),
        }
    }

    /// The JSON form of spec 7.5: `"GPS"`, `12`, `12.5`, `true`, `"oKE="`, `null`.
    pub fn to_json(&self) -> Value {
        match self {
            LeafValue::Null => Value::Null,
            LeafValue::B64(bytes) | LeafValue::Bin(bytes) => {
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            LeafValue::Bool(flag) => Value::Bool(*flag),
            LeafValue::Chr(text) | LeafValue::Xml(text) | LeafValue::Date(text) | LeafValue::Time(text) => {
                Value::String(text.clone())
            }
            LeafValue::Int(number) => Value::from(*number),
            // A non-finite float never enters a tree (see `check`), so null is only a last resort.
            LeafValue::Float(number) => serde_json::Number::from_f64(*number).map_or(Value::Null, Value::Number),
        }
    }

    /// The value as text, the form an `nv=(x)/path:value` field is compared with:
    /// `GPS`, `12`, `12.5`, `true`, `oKE=` (base64), and "" for null.
    pub fn text_form(&self) -> Cow<'_, str> {
        match self {
            LeafValue::Null => Cow::Borrowed(""),
            LeafValue::Chr(text) | LeafValue::Xml(text) | LeafValue::Date(text) | LeafValue::Time(text) => {
                Cow::Borrowed(text)
            }
            LeafValue::B64(bytes) | LeafValue::Bin(bytes) => {
                Cow::Owned(base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            LeafValue::Bool(flag) => Cow::Borrowed(if *flag { "true" } else { "false" }),
            LeafValue::Int(number) => Cow::Owned(number.to_string()),
            LeafValue::Float(number) => {
                Cow::Owned(serde_json::Number::from_f64(*number).map_or_else(|| number.to_string(), |n| n.to_string()))
            }
        }
    }

    /// Whether `text` (an `nv` value) names this value. Text formats compare
    /// exactly; numbers compare by value (`5` and `05` both satisfy an int 5,
    /// `12.10` a float 12.1); bools ignore letter case; binary compares the bytes
    /// (padding optional); null is satisfied by the empty value.
    pub fn matches_text(&self, text: &str) -> bool {
        match self {
            LeafValue::Null => text.is_empty(),
            LeafValue::Chr(value) | LeafValue::Xml(value) | LeafValue::Date(value) | LeafValue::Time(value) => {
                value == text
            }
            LeafValue::Bool(flag) => parse_bool(text) == Some(*flag),
            LeafValue::Int(number) => text.parse::<i64>().ok() == Some(*number),
            LeafValue::Float(number) => text.parse::<f64>().ok() == Some(*number),
            LeafValue::B64(bytes) | LeafValue::Bin(bytes) => LENIENT_BASE64.decode(text).ok().as_ref() == Some(bytes),
        }
    }

    /// Reads a leaf when no DDF says its format: JSON `null` is null, a boolean
    /// is bool, an integer that fits 64 signed bits is int, any other number is
    /// float, a string is chr. Binary, xml, date and time cannot be told from
    /// chr without a DDF; [`LeafValue::from_json_as`] or
    /// [`MoInstance::retype_leaf`](super::MoInstance::retype_leaf) give them their format.
    pub fn from_json_inferred(value: &Value) -> Result<Self, LeafValueError> {
        match value {
            Value::Null => Ok(LeafValue::Null),
            Value::Bool(flag) => Ok(LeafValue::Bool(*flag)),
            Value::Number(number) => Ok(match number.as_i64() {
                Some(integer) => LeafValue::Int(integer),
                None => LeafValue::Float(number.as_f64().ok_or(LeafValueError::NonFiniteFloat)?),
            }),
            Value::String(text) => Ok(LeafValue::Chr(text.clone())),
            Value::Array(_) | Value::Object(_) => Err(LeafValueError::NotALeaf { found: json_type_name(value) }),
        }
    }

    /// Reads a leaf whose format is known (from a DDF). Lenient: numbers and
    /// booleans may come as strings, text formats accept numbers and booleans
    /// as their JSON text, base64 may omit padding.
    pub fn from_json_as(value: &Value, format: Format) -> Result<Self, LeafValueError> {
        let wrong_type = || LeafValueError::WrongJsonType { format, found: json_type_name(value) };
        match format {
            Format::Node => Err(LeafValueError::InteriorFormat),
            Format::Null => match value {
                Value::Null => Ok(LeafValue::Null),
                _ => Err(wrong_type()),
            },
            Format::Bool => match value {
                Value::Bool(flag) => Ok(LeafValue::Bool(*flag)),
                Value::String(text) => LeafValue::from_text(text, format),
                _ => Err(wrong_type()),
            },
            Format::Int => match value {
                Value::Number(number) if number.is_i64() || number.is_u64() => number
                    .as_i64()
                    .map(LeafValue::Int)
                    .ok_or_else(|| LeafValueError::IntegerOutOfRange(number.to_string())),
                Value::String(text) => LeafValue::from_text(text, format),
                _ => Err(wrong_type()),
            },
            Format::Float => match value {
                Value::Number(number) => number.as_f64().map(LeafValue::Float).ok_or(LeafValueError::NonFiniteFloat),
                Value::String(text) => LeafValue::from_text(text, format),
                _ => Err(wrong_type()),
            },
            Format::B64 | Format::Bin | Format::Chr | Format::Xml | Format::Date | Format::Time => match value {
                Value::String(text) => LeafValue::from_text(text, format),
                Value::Number(number) => LeafValue::from_text(&number.to_string(), format),
                Value::Bool(flag) => LeafValue::from_text(if *flag { "true" } else { "false" }, format),
                _ => Err(wrong_type()),
            },
        }
    }

    /// Reads a leaf of `format` from its text form (the inverse of [`LeafValue::text_form`]).
    pub fn from_text(text: &str, format: Format) -> Result<Self, LeafValueError> {
        let invalid = || LeafValueError::InvalidText { format, text: text.to_owned() };
        match format {
            Format::Node => Err(LeafValueError::InteriorFormat),
            Format::Null if text.is_empty() => Ok(LeafValue::Null),
            Format::Null => Err(invalid()),
            Format::Bool => parse_bool(text).map(LeafValue::Bool).ok_or_else(invalid),
            Format::Int => text.parse().map(LeafValue::Int).map_err(|_| invalid()),
            Format::Float => match text.parse::<f64>() {
                Ok(number) if number.is_finite() => Ok(LeafValue::Float(number)),
                _ => Err(invalid()),
            },
            Format::B64 => LENIENT_BASE64.decode(text).map(LeafValue::B64).map_err(|_| invalid()),
            Format::Bin => LENIENT_BASE64.decode(text).map(LeafValue::Bin).map_err(|_| invalid()),
            Format::Chr => Ok(LeafValue::Chr(text.to_owned())),
            Format::Xml => Ok(LeafValue::Xml(text.to_owned())),
            Format::Date => Ok(LeafValue::Date(text.to_owned())),
            Format::Time => Ok(LeafValue::Time(text.to_owned())),
        }
    }

    /// The same value in another format, through its text form
    /// (`Chr("oKE=")` as b64 gives the bytes A0 A1).
    pub fn convert_to(&self, format: Format) -> Result<Self, LeafValueError> {
        if format == self.format() {
            return Ok(self.clone());
        }
        match self {
            // Keep the JSON typing rules (e.g. an int read as float) rather than going through text.
            LeafValue::Int(_) | LeafValue::Float(_) | LeafValue::Bool(_) | LeafValue::Null => {
                LeafValue::from_json_as(&self.to_json(), format)
            }
            _ => LeafValue::from_text(&self.text_form(), format),
        }
    }
}

impl fmt::Display for LeafValue {
    /// The text form, see [`LeafValue::text_form`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text_form())
    }
}

/// `true`/`false` in any letter case, also `1`/`0` as some devices send them.
fn parse_bool(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") || text == "1" {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") || text == "0" {
        Some(false)
    } else {
        None
    }
}

/// A JSON type name for error messages.
pub(crate) fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "JSON null",
        Value::Bool(_) => "JSON boolean",
        Value::Number(_) => "JSON number",
        Value::String(_) => "JSON string",
        Value::Array(_) => "JSON array",
        Value::Object(_) => "JSON object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn format_names_round_trip_and_ignore_case() {
        for format in ALL_FORMATS {
            assert_eq!(format.as_str().parse::<Format>(), Ok(format));
            assert_eq!(format.as_str().to_uppercase().parse::<Format>(), Ok(format));
        }
        assert_eq!("text".parse::<Format>(), Err(UnknownFormat("text".into())));
        assert_eq!(serde_json::to_string(&Format::B64).unwrap(), "\"b64\"");
        assert_eq!(serde_json::from_str::<Format>("\"float\"").unwrap(), Format::Float);
    }

    #[test]
    fn infers_formats_from_json_types() {
        assert_eq!(LeafValue::from_json_inferred(&json!(null)), Ok(LeafValue::Null));
        assert_eq!(LeafValue::from_json_inferred(&json!(true)), Ok(LeafValue::Bool(true)));
        assert_eq!(LeafValue::from_json_inferred(&json!(12345)), Ok(LeafValue::Int(12345)));
        assert_eq!(LeafValue::from_json_inferred(&json!(-7)), Ok(LeafValue::Int(-7)));
        assert_eq!(LeafValue::from_json_inferred(&json!(12.5)), Ok(LeafValue::Float(12.5)));
        assert_eq!(LeafValue::from_json_inferred(&json!(5.0)), Ok(LeafValue::Float(5.0)));
        // Beyond i64: kept as a float rather than refused.
        assert_eq!(LeafValue::from_json_inferred(&json!(u64::MAX)), Ok(LeafValue::Float(u64::MAX as f64)));
        assert_eq!(LeafValue::from_json_inferred(&json!("GPS")), Ok(LeafValue::Chr("GPS".into())));
        assert_eq!(LeafValue::from_json_inferred(&json!([1])), Err(LeafValueError::NotALeaf { found: "JSON array" }));
    }

    #[test]
    fn json_form_follows_the_format() {
        assert_eq!(LeafValue::B64(vec![0xA0, 0xA1]).to_json(), json!("oKE="));
        assert_eq!(LeafValue::Bin(vec![0xFF]).to_json(), json!("/w=="));
        assert_eq!(LeafValue::Float(5.0).to_json().to_string(), "5.0");
        assert_eq!(LeafValue::Int(666141534364).to_json(), json!(666141534364_i64));
        assert_eq!(LeafValue::Date("2024-05-01".into()).to_json(), json!("2024-05-01"));
        assert_eq!(LeafValue::Null.to_json(), Value::Null);
    }

    #[test]
    fn text_forms() {
        assert_eq!(LeafValue::Int(5).text_form(), "5");
        assert_eq!(LeafValue::Float(12.1).text_form(), "12.1");
        assert_eq!(LeafValue::Float(5.0).text_form(), "5.0");
        assert_eq!(LeafValue::Bool(false).text_form(), "false");
        assert_eq!(LeafValue::B64(vec![0xA0, 0xA1]).to_string(), "oKE=");
        assert_eq!(LeafValue::Null.text_form(), "");
    }

    #[test]
    fn node_value_comparison() {
        assert!(LeafValue::Int(5).matches_text("5"));
        assert!(LeafValue::Int(5).matches_text("05"));
        assert!(!LeafValue::Int(5).matches_text("5.0"));
        assert!(!LeafValue::Int(5).matches_text("6"));
        assert!(LeafValue::Float(12.1).matches_text("12.1"));
        assert!(LeafValue::Float(12.1).matches_text("12.10"));
        assert!(!LeafValue::Float(12.1).matches_text("12.2"));
        assert!(LeafValue::Bool(true).matches_text("TRUE"));
        assert!(LeafValue::Bool(false).matches_text("0"));
        assert!(!LeafValue::Bool(false).matches_text("yes"));
        assert!(LeafValue::Chr("0xA1".into()).matches_text("0xA1"));
        assert!(!LeafValue::Chr("0xA1".into()).matches_text("0xa1"));
        assert!(LeafValue::B64(vec![0xA0, 0xA1]).matches_text("oKE"));
        assert!(LeafValue::Null.matches_text(""));
        assert!(!LeafValue::Null.matches_text("null"));
    }

    #[test]
    fn reads_with_a_known_format_leniently() {
        assert_eq!(LeafValue::from_json_as(&json!("oKE"), Format::B64), Ok(LeafValue::B64(vec![0xA0, 0xA1])));
        assert_eq!(LeafValue::from_json_as(&json!("42"), Format::Int), Ok(LeafValue::Int(42)));
        assert_eq!(LeafValue::from_json_as(&json!(42), Format::Float), Ok(LeafValue::Float(42.0)));
        assert_eq!(LeafValue::from_json_as(&json!("true"), Format::Bool), Ok(LeafValue::Bool(true)));
        assert_eq!(LeafValue::from_json_as(&json!(7), Format::Chr), Ok(LeafValue::Chr("7".into())));
        assert_eq!(
            LeafValue::from_json_as(&json!(u64::MAX), Format::Int),
            Err(LeafValueError::IntegerOutOfRange(u64::MAX.to_string()))
        );
        assert_eq!(
            LeafValue::from_json_as(&json!(1.5), Format::Int),
            Err(LeafValueError::WrongJsonType { format: Format::Int, found: "JSON number" })
        );
        assert_eq!(
            LeafValue::from_json_as(&json!("!!"), Format::B64),
            Err(LeafValueError::InvalidText { format: Format::B64, text: "!!".into() })
        );
        assert_eq!(LeafValue::from_json_as(&json!({}), Format::Node), Err(LeafValueError::InteriorFormat));
        assert_eq!(
            LeafValue::from_json_as(&json!(1), Format::Null),
            Err(LeafValueError::WrongJsonType { format: Format::Null, found: "JSON number" })
        );
        assert_eq!(
            LeafValue::from_text("inf", Format::Float),
            Err(LeafValueError::InvalidText { format: Format::Float, text: "inf".into() })
        );
    }

    #[test]
    fn converts_between_formats() {
        assert_eq!(LeafValue::Chr("oKE=".into()).convert_to(Format::B64), Ok(LeafValue::B64(vec![0xA0, 0xA1])));
        assert_eq!(LeafValue::Int(3).convert_to(Format::Float), Ok(LeafValue::Float(3.0)));
        assert_eq!(LeafValue::Chr("12".into()).convert_to(Format::Int), Ok(LeafValue::Int(12)));
        assert_eq!(LeafValue::Int(3).convert_to(Format::Chr), Ok(LeafValue::Chr("3".into())));
        assert!(LeafValue::Chr("x".into()).convert_to(Format::Int).is_err());
        assert_eq!(LeafValue::Float(f64::NAN).check(), Err(LeafValueError::NonFiniteFloat));
        assert_eq!(LeafValue::Float(1.0).check(), Ok(()));
    }
}
