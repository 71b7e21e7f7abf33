//! ClientURI (spec 6.1): the address of node(s) inside the device's management tree.
//!
//! ```text
//! ClientURI        = MOID "/" mo-inst path-from-moroot [ "?" query ]
//! mo-inst          = MIID / x-name / "" / "*"
//! path-from-moroot = "/" / 1*("/" node-name)
//! node-name        = real-name / x-name / "*"
//! real-name        = 1*unreserved
//! x-name           = "(" ALPHA ")"
//! ```
//!
//! `urn:oma:mo:moid:1.0/(x)/Data/*/Value?nv=(x)/ID:GPS&lv=2` parses into a
//! [`ClientUri`] and prints back to the same text. The MOID is everything before
//! the first "/" (docs/protocol-decisions.md), so `urn:oma:mo:moid:1.0//` is the root of the only
//! instance of that MOID.

use std::fmt;
use std::str::FromStr;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use super::{UriError, is_unreserved, push_percent_encoded, starts_with_hex_pair};

/// Characters kept as they are when a query value is printed: RFC 3986
/// unreserved plus the sub-delimiters that cannot end a query field.
const QUERY_VALUE_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/')
    .remove(b':')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'!')
    .remove(b'$')
    .remove(b'\'')
    .remove(b',')
    .remove(b';')
    .remove(b'@');

/// A parsed ClientURI. Printing it (`Display`) gives the canonical text form;
/// parsing that text gives back an equal value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientUri {
    /// The MOID, e.g. `urn:oma:mo:oma-dm-devinfo:1.2`.
    pub moid: String,
    /// Which instance(s) of the MOID are addressed.
    pub instance: InstanceSelector,
    /// Node names below the instance root; empty addresses the root itself ("/").
    pub path: Vec<NodeSelector>,
    /// The query component (`lv`, `nv`, `cv` and fields this crate does not know).
    pub query: Query,
}

/// The mo-inst component.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum InstanceSelector {
    /// A MIID: exactly the instance with that identifier.
    Miid(String),
    /// `(x)`: the one instance whose nodes satisfy every `nv=(x)/...` field.
    XName(char),
    /// Empty: the one and only instance of the MOID.
    Sole,
    /// `*`: every instance of the MOID.
    Wildcard,
}

/// One node-name of path-from-moroot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NodeSelector {
    /// A real node name, matched exactly.
    Name(String),
    /// `(x)`: the one child that satisfies every `nv=(x)/...` field.
    XName(char),
    /// `*`: every child at this position.
    Wildcard,
}

/// The query component. Unknown fields are kept (and printed back) but carry no meaning.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Query {
    /// `lv=<n>`: include at most n sublevels of child nodes.
    pub level: Option<u32>,
    /// `nv=(x)/path:value` fields, in order; several for one x-name are ANDed.
    pub node_values: Vec<NodeValue>,
    /// `cv=<validator>`: the cache validator the server holds for the MO instance.
    pub cache_validator: Option<String>,
    /// Fields this crate does not know, as (name, value) with the value still
    /// percent-encoded as received; `None` when the field had no "=". Characters a
    /// URI query cannot hold (`<`, `"`, non-ASCII, a `%` not starting `%XX`, ...)
    /// are percent-encoded on receipt and again when printing, so the printed
    /// ClientURI is always a valid RFC 3986 URI.
    pub unknown: Vec<(String, Option<String>)>,
}

/// One `nv=(x)/path:value` field: the node at `path` below the node (or
/// instance) that `(x)` names must have the value `value`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeValue {
    /// The letter of the x-name this field resolves.
    pub x_name: char,
    /// Real names from the x-named node down to the leaf; may be empty.
    pub path: Vec<String>,
    /// The expected leaf value, percent-decoded.
    pub value: String,
}

impl ClientUri {
    /// Parses a ClientURI; see the module documentation for the grammar.
    pub fn parse(text: &str) -> Result<Self, UriError> {
        if text.is_empty() {
            return Err(UriError::Empty);
        }
        if let Some(bad) = text.chars().find(|c| c.is_whitespace() || c.is_control() || *c == '#') {
            return Err(UriError::InvalidCharacter(bad));
        }
        let (address, query_text) = match text.split_once('?') {
            Some((address, query)) => (address, Some(query)),
            None => (text, None),
        };
        let (moid, after_moid) = address.split_once('/').ok_or(UriError::MissingInstance)?;
        validate_moid(moid)?;
        let (instance_text, path_text) = match after_moid.split_once('/') {
            Some((instance, rest)) => (instance, rest),
            // Lenient: `MOID/inst` without the trailing "/" addresses the instance root.
            None => (after_moid, ""),
        };
        let instance = parse_instance(instance_text)?;
        let path = parse_path(path_text)?;
        let query = match query_text {
            Some(q) => Query::parse(q)?,
            None => Query::default(),
        };
        let uri = ClientUri { moid: moid.to_owned(), instance, path, query };
        uri.check_x_names()?;
        Ok(uri)
    }

    /// A ClientURI addressing the root of one MO instance, no query.
    pub fn instance_root(moid: impl Into<String>, instance: InstanceSelector) -> Self {
        ClientUri { moid: moid.into(), instance, path: Vec::new(), query: Query::default() }
    }

    /// True when the URI can match more than one node (a wildcard anywhere).
    pub fn has_wildcard(&self) -> bool {
        self.instance == InstanceSelector::Wildcard || self.path.contains(&NodeSelector::Wildcard)
    }

    /// The x-names used in the address, in order of appearance.
    pub fn x_names(&self) -> Vec<char> {
        let mut names = Vec::new();
        if let InstanceSelector::XName(letter) = self.instance {
            names.push(letter);
        }
        names.extend(self.path.iter().filter_map(|segment| match segment {
            NodeSelector::XName(letter) => Some(*letter),
            _ => None,
        }));
        names
    }

    /// The `nv` fields that resolve the x-name `letter`.
    pub fn node_values_for(&self, letter: char) -> impl Iterator<Item = &NodeValue> {
        self.query.node_values.iter().filter(move |nv| nv.x_name == letter)
    }

    /// The same URI with `cv=` set to `validator` (or removed with `None`).
    pub fn with_cache_validator(mut self, validator: Option<String>) -> Self {
        self.query.cache_validator = validator;
        self
    }

    /// Every x-name is unique, has at least one `nv`, and every `nv` names an x-name in use.
    fn check_x_names(&self) -> Result<(), UriError> {
        let names = self.x_names();
        for (index, letter) in names.iter().enumerate() {
            if names.get(..index).is_some_and(|earlier| earlier.contains(letter)) {
                return Err(UriError::DuplicateXName(*letter));
            }
            if self.node_values_for(*letter).next().is_none() {
                return Err(UriError::XNameWithoutNodeValue(*letter));
            }
        }
        if let Some(orphan) = self.query.node_values.iter().find(|nv| !names.contains(&nv.x_name)) {
            return Err(UriError::NodeValueWithoutXName(orphan.x_name));
        }
        Ok(())
    }
}

impl FromStr for ClientUri {
    type Err = UriError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ClientUri::parse(text)
    }
}

impl fmt::Display for ClientUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.moid, self.instance)?;
        if self.path.is_empty() {
            f.write_str("/")?;
        }
        for segment in &self.path {
            write!(f, "/{segment}")?;
        }
        if !self.query.is_empty() {
            write!(f, "?{}", self.query)?;
        }
        Ok(())
    }
}

impl fmt::Display for InstanceSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstanceSelector::Miid(miid) => f.write_str(miid),
            InstanceSelector::XName(letter) => write!(f, "({letter})"),
            InstanceSelector::Sole => Ok(()),
            InstanceSelector::Wildcard => f.write_str("*"),
        }
    }
}

impl fmt::Display for NodeSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeSelector::Name(name) => f.write_str(name),
            NodeSelector::XName(letter) => write!(f, "({letter})"),
            NodeSelector::Wildcard => f.write_str("*"),
        }
    }
}

impl Query {
    /// True when printing would give an empty query.
    pub fn is_empty(&self) -> bool {
        self.level.is_none() && self.node_values.is_empty() && self.cache_validator.is_none() && self.unknown.is_empty()
    }

    fn parse(text: &str) -> Result<Self, UriError> {
        let mut query = Query::default();
        for field in text.split('&').filter(|field| !field.is_empty()) {
            let (name, value) = match field.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (field, None),
            };
            match (name, value) {
                ("lv", Some(value)) => {
                    if query.level.is_some() {
                        return Err(UriError::DuplicateField("lv"));
                    }
                    query.level = Some(parse_level(value)?);
                }
                ("nv", Some(value)) => query.node_values.push(NodeValue::parse(value)?),
                ("cv", Some(value)) => {
                    if query.cache_validator.is_some() {
                        return Err(UriError::DuplicateField("cv"));
                    }
                    query.cache_validator = Some(decode(value)?);
                }
                ("lv" | "nv" | "cv", None) => {
                    return Err(UriError::MissingFieldValue(name.to_owned()));
                }
                (name, value) => query.unknown.push((
                    encode_unknown_field(name, UnknownFieldPart::Name),
                    value.map(|value| encode_unknown_field(value, UnknownFieldPart::Value)),
                )),
            }
        }
        Ok(query)
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut separator = "";
        if let Some(level) = self.level {
            write!(f, "lv={level}")?;
            separator = "&";
        }
        for node_value in &self.node_values {
            write!(f, "{separator}nv={node_value}")?;
            separator = "&";
        }
        if let Some(validator) = &self.cache_validator {
            write!(f, "{separator}cv={}", utf8_percent_encode(validator, QUERY_VALUE_ENCODE))?;
            separator = "&";
        }
        for (name, value) in &self.unknown {
            let name = encode_unknown_field(name, UnknownFieldPart::Name);
            match value {
                Some(value) => {
                    let value = encode_unknown_field(value, UnknownFieldPart::Value);
                    write!(f, "{separator}{name}={value}")?;
                }
                None => write!(f, "{separator}{name}")?,
            }
            separator = "&";
        }
        Ok(())
    }
}

impl NodeValue {
    /// Parses the value of an `nv` field: `(x)/path/to/leaf:value`.
    fn parse(text: &str) -> Result<Self, UriError> {
        let invalid = || UriError::InvalidNodeValue(text.to_owned());
        // Real names are unreserved characters, so the first ":" ends the path.
        let (path_text, value) = text.split_once(':').ok_or_else(invalid)?;
        let mut segments = path_text.split('/');
        let x_name = segments.next().and_then(parse_x_name).ok_or_else(invalid)?;
        let path = segments
            .map(|segment| if is_real_name(segment) { Ok(segment.to_owned()) } else { Err(invalid()) })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NodeValue { x_name, path, value: decode(value)? })
    }
}

impl fmt::Display for NodeValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({})", self.x_name)?;
        for segment in &self.path {
            write!(f, "/{segment}")?;
        }
        write!(f, ":{}", utf8_percent_encode(&self.value, QUERY_VALUE_ENCODE))
    }
}

impl serde::Serialize for ClientUri {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ClientUri {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        ClientUri::parse(&text).map_err(serde::de::Error::custom)
    }
}

fn validate_moid(moid: &str) -> Result<(), UriError> {
    let allowed = |c: char| is_unreserved(c) || matches!(c, ':' | '%' | '+' | ',' | ';' | '=' | '@' | '!' | '$' | '\'');
    if moid.is_empty() {
        return Err(UriError::MissingMoid);
    }
    // A "%" must start an escape, or the printed ClientURI would not be a URI.
    let escapes_complete = moid.split('%').skip(1).all(starts_with_hex_pair);
    // A MOID is a colon-separated name (`urn:oma:mo:oma-dm-devinfo:1.2`): no empty
    // segment, so a URL such as `https://host/x` (MOID `https:`) is refused here.
    let segments_present = moid.contains(':') && moid.split(':').all(|segment| !segment.is_empty());
    if !segments_present || !moid.chars().all(allowed) || !escapes_complete {
        return Err(UriError::InvalidMoid(moid.to_owned()));
    }
    Ok(())
}

fn parse_instance(text: &str) -> Result<InstanceSelector, UriError> {
    if text.is_empty() {
        return Ok(InstanceSelector::Sole);
    }
    if text == "*" {
        return Ok(InstanceSelector::Wildcard);
    }
    if let Some(letter) = parse_x_name(text) {
        return Ok(InstanceSelector::XName(letter));
    }
    if is_real_name(text) {
        return Ok(InstanceSelector::Miid(text.to_owned()));
    }
    Err(UriError::InvalidInstance(text.to_owned()))
}

/// `path_text` is what follows the "/" after mo-inst: "" for the root, or `a/b/c`.
fn parse_path(path_text: &str) -> Result<Vec<NodeSelector>, UriError> {
    if path_text.is_empty() {
        return Ok(Vec::new());
    }
    path_text
        .split('/')
        .map(|segment| {
            if segment.is_empty() {
                Err(UriError::EmptyNodeName)
            } else if segment == "*" {
                Ok(NodeSelector::Wildcard)
            } else if let Some(letter) = parse_x_name(segment) {
                Ok(NodeSelector::XName(letter))
            } else if is_real_name(segment) {
                Ok(NodeSelector::Name(segment.to_owned()))
            } else {
                Err(UriError::InvalidNodeName(segment.to_owned()))
            }
        })
        .collect()
}

fn parse_level(text: &str) -> Result<u32, UriError> {
    match text.parse::<u32>() {
        Ok(level) if level > 0 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(level),
        _ => Err(UriError::InvalidLevel(text.to_owned())),
    }
}

/// `(x)` with one ASCII letter inside.
fn parse_x_name(text: &str) -> Option<char> {
    let inner = text.strip_prefix('(')?.strip_suffix(')')?;
    let mut chars = inner.chars();
    match (chars.next(), chars.next()) {
        (Some(letter), None) if letter.is_ascii_alphabetic() => Some(letter),
        _ => None,
    }
}

fn is_real_name(text: &str) -> bool {
    !text.is_empty() && text.chars().all(is_unreserved)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum UnknownFieldPart {
    Name,
    Value,
}

/// Percent-encodes what RFC 3986 does not allow in a query (`pchar / "/" / "?"`), plus
/// the delimiters that would split the field ("&", "#", and "=" in a name); valid
/// `%XX` escapes are kept, so encoding twice changes nothing.
fn encode_unknown_field(text: &str, part: UnknownFieldPart) -> String {
    let mut encoded = String::with_capacity(text.len());
    for (position, c) in text.char_indices() {
        let keep = match c {
            '%' => starts_with_hex_pair(text.get(position + 1..).unwrap_or_default()),
            '&' | '#' => false,
            '=' => part == UnknownFieldPart::Value,
            c => is_unreserved(c) || "!$'()*+,;:@/?".contains(c),
        };
        if keep {
            encoded.push(c);
        } else {
            push_percent_encoded(&mut encoded, c);
        }
    }
    encoded
}

fn decode(text: &str) -> Result<String, UriError> {
    percent_decode_str(text)
        .decode_utf8()
        .map(|value| value.into_owned())
        .map_err(|_| UriError::InvalidPercentEncoding(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_component() {
        let uri = ClientUri::parse(
            "urn:oma:mo:moid:1.0/(x)/Data/(y)/Value?nv=(x)/ID:GPS&nv=(y)/Date:12.2&lv=2&cv=abc&foo=bar",
        )
        .unwrap();
        assert_eq!(uri.moid, "urn:oma:mo:moid:1.0");
        assert_eq!(uri.instance, InstanceSelector::XName('x'));
        assert_eq!(
            uri.path,
            vec![NodeSelector::Name("Data".into()), NodeSelector::XName('y'), NodeSelector::Name("Value".into())]
        );
        assert_eq!(uri.query.level, Some(2));
        assert_eq!(uri.query.cache_validator.as_deref(), Some("abc"));
        assert_eq!(uri.query.node_values.len(), 2);
        assert_eq!(
            uri.query.node_values[1],
            NodeValue { x_name: 'y', path: vec!["Date".into()], value: "12.2".into() }
        );
        assert_eq!(uri.query.unknown, vec![("foo".to_owned(), Some("bar".to_owned()))]);
    }

    #[test]
    fn root_forms() {
        let sole = ClientUri::parse("urn:oma:mo:moid:1.0//").unwrap();
        assert_eq!(sole.instance, InstanceSelector::Sole);
        assert!(sole.path.is_empty());
        assert_eq!(sole.to_string(), "urn:oma:mo:moid:1.0//");
        let left = ClientUri::parse("urn:oma:mo:moid:1.0/left/").unwrap();
        assert_eq!(left.instance, InstanceSelector::Miid("left".into()));
        assert_eq!(left.to_string(), "urn:oma:mo:moid:1.0/left/");
        // Lenient: no trailing "/" still means the instance root.
        assert_eq!(ClientUri::parse("urn:oma:mo:moid:1.0/left").unwrap(), left);
    }

    #[test]
    fn canonical_text_round_trips() {
        for text in [
            "urn:oma:mo:moid:1.0/*/Setting",
            "urn:oma:mo:moid:1.0/*/Data/*/Value",
            "urn:oma:mo:moid:1.0/right/Data/(x)/Value?nv=(x)/Date:12.1",
            "urn:oma:mo:oma-dm-devinfo:1.2//DevID",
            "urn:oma:mo:moid:1.0/left/?lv=1&cv=W/%22etag%22",
            "urn:oma:mo:moid:1.0/(x)/?nv=(x)/ID:Temp%20C&x-vendor=1&flag",
        ] {
            assert_eq!(ClientUri::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn rejects_malformed_input_with_distinct_errors() {
        let cases: &[(&str, UriError)] = &[
            ("", UriError::Empty),
            ("urn:oma:mo:moid:1.0", UriError::MissingInstance),
            ("/left/", UriError::MissingMoid),
            ("nocolon/left/", UriError::InvalidMoid("nocolon".into())),
            ("https://dm.example.com/x", UriError::InvalidMoid("https:".into())),
            ("urn::a/left/", UriError::InvalidMoid("urn::a".into())),
            ("urn:a:1/le ft/", UriError::InvalidCharacter(' ')),
            ("urn:a:1/l[e]ft/", UriError::InvalidInstance("l[e]ft".into())),
            ("urn:a:1/left/a//b", UriError::EmptyNodeName),
            ("urn:a:1/left/a/", UriError::EmptyNodeName),
            ("urn:a:1/left/(xy)", UriError::InvalidNodeName("(xy)".into())),
            ("urn:a:1/(x)/", UriError::XNameWithoutNodeValue('x')),
            ("urn:a:1/left/?nv=(x)/ID:1", UriError::NodeValueWithoutXName('x')),
            ("urn:a:1/(x)/(x)?nv=(x)/ID:1", UriError::DuplicateXName('x')),
            ("urn:a:1/left/?lv=0", UriError::InvalidLevel("0".into())),
            ("urn:a:1/left/?lv=+3", UriError::InvalidLevel("+3".into())),
            ("urn:a:1/left/?lv=1&lv=2", UriError::DuplicateField("lv")),
            ("urn:a:1/(x)/?nv=(x)/ID", UriError::InvalidNodeValue("(x)/ID".into())),
            ("urn:a:1/left/?cv=%FF", UriError::InvalidPercentEncoding("%FF".into())),
            ("urn:a:1/left/?cv", UriError::MissingFieldValue("cv".into())),
        ];
        for (text, expected) in cases {
            assert_eq!(ClientUri::parse(text).as_ref(), Err(expected), "{text}");
        }
    }

    #[test]
    fn serde_uses_the_text_form() {
        let uri: ClientUri = serde_json::from_str("\"urn:oma:mo:moid:1.0/*/Setting\"").unwrap();
        assert!(uri.has_wildcard());
        assert_eq!(serde_json::to_string(&uri).unwrap(), "\"urn:oma:mo:moid:1.0/*/Setting\"");
        assert!(serde_json::from_str::<ClientUri>("\"nope\"").is_err());
    }
}
