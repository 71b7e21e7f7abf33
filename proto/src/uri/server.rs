//! ServerURI (spec 6.2): a server-side URI in which the client substitutes `[DevID]`, `[MNC]`, ... parameters.
//!
//! ```text
//! template:    https://dm.example.com/cfg/[MCC]/[MNC]/[DevID]?sp=[SPName]
//! substituted: https://dm.example.com/cfg/240/01/IMEI%3A493005100592800?sp=-1
//! ```
//!
//! Decisions where 6.2 is silent (also listed in the crate's protocol decisions):
//! - Only absolute `http` and `https` URIs with a non-empty host are ServerURIs: every
//!   command that carries one (HGET, HPUT, HPOST, EXEC, SHOW, CONT, DEFAULT) makes the
//!   client speak HTTP to it.
//! - Parameter names are matched case-insensitively (`[devid]` is `[DevID]`); any other
//!   name in brackets is an error, because a client would otherwise send a literal
//!   `%5BDevId%5D` and the server would never learn why. `[...]` that is an IPv6 or
//!   IPvFuture literal in the host (`http://[::1]:8080/`) is kept as the host.
//! - A parameter value is percent-encoded down to RFC 3986 unreserved characters, so a
//!   DevID such as `IMEI:4930...` becomes `IMEI%3A4930...` and cannot break the path or
//!   query it lands in. Unknown values (`None`) become `-1`, unencoded.
//! - The rest of the URI is encoded per RFC 2396: characters a URI cannot hold are
//!   percent-encoded, valid `%XX` escapes are kept, a `%` not starting one becomes `%25`.

use std::fmt;
use std::str::FromStr;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::{UriError, is_unreserved, push_percent_encoded, starts_with_hex_pair};

/// What a substituted parameter value keeps unencoded: RFC 3986 unreserved characters only.
const PARAMETER_VALUE_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The value a client substitutes for a parameter it does not know (6.2).
const UNKNOWN_VALUE: &str = "-1";

/// How many matching steps [`ServerUri::match_substituted`] may take before giving up,
/// so that a template with many adjacent parameters cannot make matching explode.
const MATCH_STEP_BUDGET: usize = 100_000;

/// A ServerURI as the server sends it, possibly with `[Param]` placeholders.
///
/// ```text
/// https://dm.example.com/dm/[DevID]/session?mcc=[MCC]&mnc=[MNC]
/// ```
///
/// [`ServerUri::as_str`] and `Display` give the text exactly as parsed; the
/// client turns it into the URI it requests with [`ServerUri::substitute`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerUri {
    text: String,
    /// `scheme://authority`, split into pieces.
    origin: Vec<Piece>,
    /// Everything after the authority: path, query, fragment.
    rest: Vec<Piece>,
}

/// One stretch of a parsed ServerURI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Piece {
    /// Text copied to the substituted URI (encoded where RFC 2396 requires).
    Literal(String),
    /// An IP literal host such as `[2001:db8::1]`, copied verbatim with its brackets.
    IpLiteral(String),
    /// A `[Name]` placeholder.
    Parameter(ServerUriParameter),
}

/// One of the six parameters of 6.2 that a client replaces in a ServerURI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServerUriParameter {
    /// `[DevID]`: the DevInfo `DevID` node, e.g. `IMEI:493005100592800`.
    DevId,
    /// `[MNC]`: home network's Mobile Network Code.
    Mnc,
    /// `[MCC]`: home network's Mobile Country Code.
    Mcc,
    /// `[CMNC]`: current Mobile Network Code.
    Cmnc,
    /// `[CMCC]`: current Mobile Country Code.
    Cmcc,
    /// `[SPName]`: Service Provider Name.
    SpName,
}

impl ServerUriParameter {
    /// All six, in the order of the table in 6.2.
    pub const ALL: [ServerUriParameter; 6] = [
        ServerUriParameter::DevId,
        ServerUriParameter::Mnc,
        ServerUriParameter::Mcc,
        ServerUriParameter::Cmnc,
        ServerUriParameter::Cmcc,
        ServerUriParameter::SpName,
    ];

    /// The name as the spec spells it inside the brackets, e.g. `DevID`.
    pub fn name(self) -> &'static str {
        match self {
            ServerUriParameter::DevId => "DevID",
            ServerUriParameter::Mnc => "MNC",
            ServerUriParameter::Mcc => "MCC",
            ServerUriParameter::Cmnc => "CMNC",
            ServerUriParameter::Cmcc => "CMCC",
            ServerUriParameter::SpName => "SPName",
        }
    }

    /// The parameter named `name`, ignoring ASCII case (`devid` is `DevID`).
    pub fn from_name(name: &str) -> Option<Self> {
        ServerUriParameter::ALL.into_iter().find(|parameter| parameter.name().eq_ignore_ascii_case(name))
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ServerUriParameter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.name())
    }
}

/// The device's values for the ServerURI parameters; `None` is sent as `-1`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerUriParams {
    /// `[DevID]`: the DevInfo `DevID`, e.g. `IMEI:493005100592800`.
    pub dev_id: Option<String>,
    /// `[MNC]`: home Mobile Network Code, e.g. `01`.
    pub mnc: Option<String>,
    /// `[MCC]`: home Mobile Country Code, e.g. `240`.
    pub mcc: Option<String>,
    /// `[CMNC]`: current Mobile Network Code.
    pub cmnc: Option<String>,
    /// `[CMCC]`: current Mobile Country Code.
    pub cmcc: Option<String>,
    /// `[SPName]`: Service Provider Name.
    pub sp_name: Option<String>,
}

impl ServerUriParams {
    /// The value for `parameter`, `None` when the device does not know it.
    pub fn get(&self, parameter: ServerUriParameter) -> Option<&str> {
        self.slot(parameter).as_deref()
    }

    /// Sets the value for `parameter`.
    pub fn set(&mut self, parameter: ServerUriParameter, value: Option<String>) {
        *self.slot_mut(parameter) = value;
    }

    fn slot(&self, parameter: ServerUriParameter) -> &Option<String> {
        match parameter {
            ServerUriParameter::DevId => &self.dev_id,
            ServerUriParameter::Mnc => &self.mnc,
            ServerUriParameter::Mcc => &self.mcc,
            ServerUriParameter::Cmnc => &self.cmnc,
            ServerUriParameter::Cmcc => &self.cmcc,
            ServerUriParameter::SpName => &self.sp_name,
        }
    }

    fn slot_mut(&mut self, parameter: ServerUriParameter) -> &mut Option<String> {
        match parameter {
            ServerUriParameter::DevId => &mut self.dev_id,
            ServerUriParameter::Mnc => &mut self.mnc,
            ServerUriParameter::Mcc => &mut self.mcc,
            ServerUriParameter::Cmnc => &mut self.cmnc,
            ServerUriParameter::Cmcc => &mut self.cmcc,
            ServerUriParameter::SpName => &mut self.sp_name,
        }
    }
}

impl ServerUri {
    /// Parses a ServerURI: an absolute `http`/`https` URI whose `[...]` groups name
    /// only the 6.2 parameters (or an IP literal host).
    ///
    /// ```text
    /// https://prov.example.com/Settings/[MCC]/[MNC]/MMS   accepted
    /// https://[::1]:8443/dm/[DevID]                       accepted (IPv6 host)
    /// https://dm.example.com/[IMEI]                       UnknownServerUriParameter("IMEI")
    /// https://dm.example.com/[DevID                       UnbalancedServerUriBracket
    /// ftp://dm.example.com/                               UnsupportedServerUriScheme("ftp")
    /// ```
    pub fn parse(text: &str) -> Result<Self, UriError> {
        if text.is_empty() {
            return Err(UriError::Empty);
        }
        if let Some(bad) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(UriError::InvalidCharacter(bad));
        }
        let invalid = |reason: &'static str| UriError::InvalidServerUri(text.to_owned(), reason);
        let (scheme, after_scheme) =
            text.split_once(':').ok_or_else(|| invalid("not an absolute URI: it has no scheme"))?;
        if !is_scheme(scheme) {
            return Err(invalid("not an absolute URI: it does not start with a scheme"));
        }
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(UriError::UnsupportedServerUriScheme(scheme.to_owned()));
        }
        let hierarchical =
            after_scheme.strip_prefix("//").ok_or_else(|| invalid("no \"//\" and host after the scheme"))?;
        let authority_length = hierarchical.find(['/', '?', '#']).unwrap_or(hierarchical.len());
        let (authority, rest_text) = hierarchical.split_at(authority_length);
        let authority_offset = scheme.len() + 3;
        check_authority(authority).map_err(invalid)?;

        let mut origin = vec![Piece::Literal(format!("{scheme}://"))];
        origin.extend(split_pieces(authority, authority_offset, true)?);
        let rest = split_pieces(rest_text, authority_offset + authority.len(), false)?;
        Ok(ServerUri { text: text.to_owned(), origin, rest })
    }

    /// The text as received.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the scheme is `https`.
    pub fn is_https(&self) -> bool {
        self.text.get(..6).is_some_and(|scheme| scheme.eq_ignore_ascii_case("https:"))
    }

    /// The parameters the URI contains, each once, in order of first appearance.
    pub fn parameters(&self) -> Vec<ServerUriParameter> {
        let mut found = Vec::new();
        for piece in self.pieces() {
            if let Piece::Parameter(parameter) = piece
                && !found.contains(parameter)
            {
                found.push(*parameter);
            }
        }
        found
    }

    /// The URI the client requests: each `[Param]` replaced with the device's
    /// percent-encoded value (`-1` when unknown), the rest encoded per RFC 2396.
    ///
    /// ```text
    /// https://dm.example.com/{x}/[DevID]  with DevID "IMEI:1"  ->  https://dm.example.com/%7Bx%7D/IMEI%3A1
    /// ```
    pub fn substitute(&self, params: &ServerUriParams) -> String {
        let mut encoder = Rfc2396Encoder::default();
        let mut uri = String::with_capacity(self.text.len() + 32);
        for piece in self.pieces() {
            match piece {
                Piece::Literal(text) => encoder.push(&mut uri, text),
                Piece::IpLiteral(host) => uri.push_str(host),
                Piece::Parameter(parameter) => match params.get(*parameter) {
                    Some(value) => uri.extend(utf8_percent_encode(value, PARAMETER_VALUE_ENCODE)),
                    None => uri.push_str(UNKNOWN_VALUE),
                },
            }
        }
        uri
    }

    /// Recovers the parameter values from a URI the device built with
    /// [`ServerUri::substitute`], or `None` when `actual` does not fit this template.
    ///
    /// `actual` is either the absolute URI or, as an HTTP server sees it, the
    /// origin form starting at the path (`/cfg/240/01?x=1`). Scheme and host compare
    /// without regard to case, `%XX` escapes of unreserved characters equal the
    /// characters, and fragments are ignored (HTTP never sends them). A value of
    /// `-1` comes back as `None`. When the template puts two parameters next to
    /// each other with a separator their values may contain (`[MCC]-[MNC]`), the
    /// shortest leftmost value wins.
    ///
    /// ```text
    /// template https://dm.example.com/cfg/[MCC]/[MNC]/[DevID]
    /// actual   /cfg/240/01/IMEI%3A493005100592800   ->  mcc 240, mnc 01, dev_id IMEI:493005100592800
    /// ```
    pub fn match_substituted(&self, actual: &str) -> Option<ServerUriParams> {
        let actual = actual.split('#').next().unwrap_or_default();
        let mut template = Vec::new();
        let actual_units = if actual.starts_with('/') && !actual.starts_with("//") {
            if !matches!(self.rest.first(), Some(Piece::Literal(text)) if text.starts_with('/')) {
                template.push(TemplateItem::Units(normalize("/")));
            }
            normalize(actual)
        } else {
            for piece in &self.origin {
                template.push(TemplateItem::from_piece(piece, true));
            }
            normalize(&lowercase_origin(actual))
        };
        for piece in &self.rest {
            if let Piece::Literal(text) = piece
                && let Some((before_fragment, _)) = text.split_once('#')
            {
                template.push(TemplateItem::Units(normalize(before_fragment)));
                break;
            }
            template.push(TemplateItem::from_piece(piece, false));
        }

        let mut matcher = Matcher { template: &template, actual: &actual_units, bound: Default::default(), steps: 0 };
        if !matcher.match_from(0, 0) {
            return None;
        }
        let mut params = ServerUriParams::default();
        for parameter in ServerUriParameter::ALL {
            let Some(units) = matcher.bound.get(parameter.index()).copied().flatten() else {
                continue;
            };
            let value = decode_units(units)?;
            if value != UNKNOWN_VALUE {
                params.set(parameter, Some(value));
            }
        }
        Some(params)
    }

    fn pieces(&self) -> impl Iterator<Item = &Piece> {
        self.origin.iter().chain(&self.rest)
    }
}

impl FromStr for ServerUri {
    type Err = UriError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ServerUri::parse(text)
    }
}

impl fmt::Display for ServerUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl serde::Serialize for ServerUri {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for ServerUri {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        ServerUri::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// RFC 3986 `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_scheme(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|first| first.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// The host is not empty and the port, if any, is digits. Colons inside brackets
/// belong to an IP literal, not to the port.
fn check_authority(authority: &str) -> Result<(), &'static str> {
    let host_and_port = authority.rsplit_once('@').map_or(authority, |(_, after)| after);
    let mut depth = 0_usize;
    let mut port_colon = None;
    for (position, c) in host_and_port.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => port_colon = Some(position),
            _ => {}
        }
    }
    let (host, port) = match port_colon {
        Some(position) => (host_and_port.get(..position).unwrap_or_default(), host_and_port.get(position + 1..)),
        None => (host_and_port, None),
    };
    if host.is_empty() {
        return Err("it has no host");
    }
    if port.is_some_and(|port| !port.bytes().all(|b| b.is_ascii_digit())) {
        return Err("its port is not a number");
    }
    Ok(())
}

/// Splits `text` into literals and `[...]` groups. `offset` is where `text` starts
/// in the whole URI, for error positions; `in_authority` allows IP literal hosts.
fn split_pieces(text: &str, offset: usize, in_authority: bool) -> Result<Vec<Piece>, UriError> {
    let mut pieces = Vec::new();
    let mut remaining = text;
    let mut consumed = offset;
    while !remaining.is_empty() {
        let Some(open) = remaining.find(['[', ']']) else {
            pieces.push(Piece::Literal(remaining.to_owned()));
            break;
        };
        if remaining.get(open..).is_some_and(|from| from.starts_with(']')) {
            return Err(UriError::UnbalancedServerUriBracket(consumed + open));
        }
        if open > 0 {
            pieces.push(Piece::Literal(remaining.get(..open).unwrap_or_default().to_owned()));
        }
        let after_open = remaining.get(open + 1..).unwrap_or_default();
        let close = match after_open.find(['[', ']']) {
            Some(close) if after_open.get(close..).is_some_and(|from| from.starts_with(']')) => close,
            _ => return Err(UriError::UnbalancedServerUriBracket(consumed + open)),
        };
        let name = after_open.get(..close).unwrap_or_default();
        if let Some(parameter) = ServerUriParameter::from_name(name) {
            pieces.push(Piece::Parameter(parameter));
        } else if in_authority && is_ip_literal(name) {
            pieces.push(Piece::IpLiteral(format!("[{name}]")));
        } else {
            return Err(UriError::UnknownServerUriParameter(name.to_owned()));
        }
        let group_length = open + 1 + close + 1;
        remaining = remaining.get(group_length..).unwrap_or_default();
        consumed += group_length;
    }
    Ok(pieces)
}

/// RFC 3986 IP-literal content: an IPv6 address or `v<hex>.<text>` (IPvFuture).
fn is_ip_literal(text: &str) -> bool {
    if text.parse::<std::net::Ipv6Addr>().is_ok() {
        return true;
    }
    let Some(future) = text.strip_prefix(['v', 'V']) else {
        return false;
    };
    let Some((version, address)) = future.split_once('.') else {
        return false;
    };
    !version.is_empty()
        && version.bytes().all(|b| b.is_ascii_hexdigit())
        && !address.is_empty()
        && address.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:".contains(&b))
}

/// Characters RFC 2396 allows unescaped in a URI reference: unreserved, reserved and "#".
fn rfc2396_allows(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.!~*'();/?:@&=+$,#".contains(c)
}

/// Encodes literal text for RFC 2396, keeping state across literals so that only the
/// first "#" of the whole URI stays a fragment delimiter.
#[derive(Default)]
struct Rfc2396Encoder {
    seen_fragment: bool,
}

impl Rfc2396Encoder {
    fn push(&mut self, out: &mut String, text: &str) {
        for (position, c) in text.char_indices() {
            match c {
                '%' if starts_with_hex_pair(text.get(position + 1..).unwrap_or_default()) => out.push('%'),
                '#' if !self.seen_fragment => {
                    self.seen_fragment = true;
                    out.push('#');
                }
                c if c != '%' && c != '#' && rfc2396_allows(c) => out.push(c),
                c => push_percent_encoded(out, c),
            }
        }
    }
}

/// A URI character after normalization: `%XX` of an unreserved character becomes the
/// character, any other `%XX` (and any character a URI cannot hold) becomes its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Char(char),
    Byte(u8),
}

fn normalize(text: &str) -> Vec<Unit> {
    let mut units = Vec::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut chars = text.char_indices();
    while let Some((position, c)) = chars.next() {
        if c == '%'
            && let (Some(high), Some(low)) = (bytes.get(position + 1), bytes.get(position + 2))
            && let (Some(high), Some(low)) = (hex_value(*high), hex_value(*low))
        {
            let byte = high * 16 + low;
            let decoded = char::from(byte);
            units.push(if byte.is_ascii() && is_unreserved(decoded) { Unit::Char(decoded) } else { Unit::Byte(byte) });
            chars.next();
            chars.next();
        } else if c != '%' && (rfc2396_allows(c) || c == '[' || c == ']') {
            units.push(Unit::Char(c));
        } else {
            let mut buffer = [0_u8; 4];
            units.extend(c.encode_utf8(&mut buffer).bytes().map(Unit::Byte));
        }
    }
    units
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit).to_digit(16).and_then(|value| u8::try_from(value).ok())
}

fn decode_units(units: &[Unit]) -> Option<String> {
    let mut bytes = Vec::with_capacity(units.len());
    for unit in units {
        match unit {
            Unit::Char(c) => {
                let mut buffer = [0_u8; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
            }
            Unit::Byte(byte) => bytes.push(*byte),
        }
    }
    String::from_utf8(bytes).ok()
}

/// Lowercases the scheme and authority of an absolute URI; they compare without case.
fn lowercase_origin(uri: &str) -> String {
    let origin_length = uri
        .find("://")
        .map(|scheme_end| {
            let authority_start = scheme_end + 3;
            let authority = uri.get(authority_start..).unwrap_or_default();
            authority_start + authority.find(['/', '?', '#']).unwrap_or(authority.len())
        })
        .unwrap_or(0);
    let (origin, rest) = uri.split_at(origin_length.min(uri.len()));
    format!("{}{rest}", origin.to_ascii_lowercase())
}

enum TemplateItem {
    Units(Vec<Unit>),
    Parameter(ServerUriParameter),
}

impl TemplateItem {
    fn from_piece(piece: &Piece, in_origin: bool) -> Self {
        match piece {
            Piece::Literal(text) | Piece::IpLiteral(text) if in_origin => {
                TemplateItem::Units(normalize(&text.to_ascii_lowercase()))
            }
            Piece::Literal(text) | Piece::IpLiteral(text) => TemplateItem::Units(normalize(text)),
            Piece::Parameter(parameter) => TemplateItem::Parameter(*parameter),
        }
    }
}

/// Backtracking match of a template against a normalized URI, binding parameter values.
struct Matcher<'a> {
    template: &'a [TemplateItem],
    actual: &'a [Unit],
    bound: [Option<&'a [Unit]>; 6],
    steps: usize,
}

impl<'a> Matcher<'a> {
    fn match_from(&mut self, item_index: usize, position: usize) -> bool {
        self.steps += 1;
        if self.steps > MATCH_STEP_BUDGET {
            return false;
        }
        let remaining = self.actual.get(position..).unwrap_or_default();
        let Some(item) = self.template.get(item_index) else {
            return remaining.is_empty();
        };
        match item {
            TemplateItem::Units(expected) => {
                remaining.starts_with(expected) && self.match_from(item_index + 1, position + expected.len())
            }
            TemplateItem::Parameter(parameter) => {
                let slot = parameter.index();
                if let Some(value) = self.bound.get(slot).copied().flatten() {
                    return remaining.starts_with(value) && self.match_from(item_index + 1, position + value.len());
                }
                // A value never holds a raw delimiter: the client percent-encodes it.
                let longest = remaining
                    .iter()
                    .position(|unit| matches!(unit, Unit::Char('/' | '?' | '#')))
                    .unwrap_or(remaining.len());
                for length in 1..=longest {
                    let value = remaining.get(..length).unwrap_or_default();
                    if let Some(bound) = self.bound.get_mut(slot) {
                        *bound = Some(value);
                    }
                    if self.match_from(item_index + 1, position + length) {
                        return true;
                    }
                    if self.steps > MATCH_STEP_BUDGET {
                        break;
                    }
                }
                if let Some(bound) = self.bound.get_mut(slot) {
                    *bound = None;
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> ServerUriParams {
        ServerUriParams {
            dev_id: Some("IMEI:493005100592800".into()),
            mnc: Some("01".into()),
            mcc: Some("240".into()),
            cmnc: Some("02".into()),
            cmcc: Some("244".into()),
            sp_name: Some("Tele Two".into()),
        }
    }

    #[test]
    fn substitutes_every_parameter_percent_encoded() {
        let uri =
            ServerUri::parse("https://dm.example.com/cfg/[MCC]/[MNC]/[DevID]?cmcc=[CMCC]&cmnc=[CMNC]&sp=[SPName]")
                .unwrap();
        assert_eq!(
            uri.substitute(&device()),
            "https://dm.example.com/cfg/240/01/IMEI%3A493005100592800?cmcc=244&cmnc=02&sp=Tele%20Two"
        );
        assert_eq!(
            uri.parameters(),
            vec![
                ServerUriParameter::Mcc,
                ServerUriParameter::Mnc,
                ServerUriParameter::DevId,
                ServerUriParameter::Cmcc,
                ServerUriParameter::Cmnc,
                ServerUriParameter::SpName
            ]
        );
    }

    #[test]
    fn unknown_values_become_minus_one() {
        let uri = ServerUri::parse("https://prov.sonymobile.com/Settings/[MCC]/[MNC]/MMS").unwrap();
        assert_eq!(uri.substitute(&ServerUriParams::default()), "https://prov.sonymobile.com/Settings/-1/-1/MMS");
    }

    #[test]
    fn literal_text_is_encoded_per_rfc2396() {
        let uri = ServerUri::parse("http://h.example/a{b}|c^d\"e%41%zz/é/[DevID]#f#g").unwrap();
        let params = ServerUriParams { dev_id: Some("x/y?z".into()), ..Default::default() };
        assert_eq!(uri.substitute(&params), "http://h.example/a%7Bb%7D%7Cc%5Ed%22e%41%25zz/%C3%A9/x%2Fy%3Fz#f%23g");
    }

    #[test]
    fn names_are_case_insensitive_and_repeatable() {
        let uri = ServerUri::parse("https://h.example/[devid]/[DEVID]/[spname]").unwrap();
        assert_eq!(uri.parameters(), vec![ServerUriParameter::DevId, ServerUriParameter::SpName]);
        assert_eq!(
            uri.substitute(&device()),
            "https://h.example/IMEI%3A493005100592800/IMEI%3A493005100592800/Tele%20Two"
        );
        assert_eq!(uri.as_str(), "https://h.example/[devid]/[DEVID]/[spname]");
    }

    #[test]
    fn ip_literal_hosts_are_not_parameters() {
        let uri = ServerUri::parse("https://[2001:db8::1]:8443/dm/[DevID]").unwrap();
        assert_eq!(uri.parameters(), vec![ServerUriParameter::DevId]);
        assert_eq!(uri.substitute(&ServerUriParams::default()), "https://[2001:db8::1]:8443/dm/-1");
        assert!(ServerUri::parse("http://[v1.fe80::a+en1]/").is_ok());
        assert!(ServerUri::parse("https://[SPName].example.com:8080/").is_ok());
    }

    #[test]
    fn rejects_malformed_templates_with_distinct_errors() {
        let cases: &[(&str, UriError)] = &[
            ("", UriError::Empty),
            ("https://h.example/a b", UriError::InvalidCharacter(' ')),
            (
                "dm.example.com/path",
                UriError::InvalidServerUri("dm.example.com/path".into(), "not an absolute URI: it has no scheme"),
            ),
            (
                "1http://h/",
                UriError::InvalidServerUri("1http://h/".into(), "not an absolute URI: it does not start with a scheme"),
            ),
            ("ftp://h.example/", UriError::UnsupportedServerUriScheme("ftp".into())),
            ("urn:oma:mo:x:1.0", UriError::UnsupportedServerUriScheme("urn".into())),
            (
                "https:/h.example/",
                UriError::InvalidServerUri("https:/h.example/".into(), "no \"//\" and host after the scheme"),
            ),
            ("https:///path", UriError::InvalidServerUri("https:///path".into(), "it has no host")),
            ("https://user@:80/", UriError::InvalidServerUri("https://user@:80/".into(), "it has no host")),
            (
                "https://h.example:80a/",
                UriError::InvalidServerUri("https://h.example:80a/".into(), "its port is not a number"),
            ),
            ("https://h.example/[IMEI]", UriError::UnknownServerUriParameter("IMEI".into())),
            ("https://h.example/[]", UriError::UnknownServerUriParameter(String::new())),
            ("https://h.example/[::1]", UriError::UnknownServerUriParameter("::1".into())),
            ("https://h.example/[DevID", UriError::UnbalancedServerUriBracket(18)),
            ("https://h.example/DevID]", UriError::UnbalancedServerUriBracket(23)),
            ("https://h.example/[[DevID]]", UriError::UnbalancedServerUriBracket(18)),
            ("https://h.example/[MCC]/[DevID", UriError::UnbalancedServerUriBracket(24)),
        ];
        for (text, expected) in cases {
            assert_eq!(ServerUri::parse(text).as_ref(), Err(expected), "{text}");
        }
        assert_eq!(UriError::UnknownServerUriParameter("IMEI".into()).status_code(), 400);
    }

    #[test]
    fn matches_absolute_and_origin_form() {
        let uri = ServerUri::parse("https://DM.example.com/cfg/[MCC]/[MNC]/[DevID]?sp=[SPName]#top").unwrap();
        let substituted = uri.substitute(&device());
        let expected = ServerUriParams { cmnc: None, cmcc: None, ..device() };
        assert_eq!(uri.match_substituted(&substituted), Some(expected.clone()));
        assert_eq!(
            uri.match_substituted("HTTPS://dm.EXAMPLE.com/cfg/240/01/IMEI%3a493005100592800?sp=Tele%20Two"),
            Some(expected.clone())
        );
        assert_eq!(uri.match_substituted("/cfg/240/01/IMEI%3A493005100592800?sp=Tele%20Two"), Some(expected));
        // Percent-encoded unreserved characters equal the characters themselves.
        let encoded_digits = uri.match_substituted("/cfg/%32%340/01/x?sp=-1").unwrap();
        assert_eq!(encoded_digits.mcc.as_deref(), Some("240"));
        assert_eq!(encoded_digits.sp_name, None);
    }

    #[test]
    fn rejects_uris_that_do_not_fit() {
        let uri = ServerUri::parse("https://dm.example.com/cfg/[MCC]/[MNC]/MMS").unwrap();
        assert_eq!(uri.match_substituted("https://other.example.com/cfg/240/01/MMS"), None);
        assert_eq!(uri.match_substituted("/cfg/240/MMS"), None);
        assert_eq!(uri.match_substituted("/cfg//01/MMS"), None);
        assert_eq!(uri.match_substituted("/cfg/240/01/MMS/extra"), None);
        assert_eq!(uri.match_substituted("/cfg/2%2F4/01/MMS").unwrap().mcc.as_deref(), Some("2/4"));
        assert_eq!(uri.match_substituted("/cfg/%FF/01/MMS"), None);
    }

    #[test]
    fn repeated_parameters_must_agree_and_adjacent_ones_resolve_shortest_first() {
        let repeated = ServerUri::parse("https://h.example/[DevID]/x/[DevID]").unwrap();
        assert_eq!(repeated.match_substituted("/abc/x/abc").unwrap().dev_id.as_deref(), Some("abc"));
        assert_eq!(repeated.match_substituted("/abc/x/abd"), None);
        let adjacent = ServerUri::parse("https://h.example/[MCC]-[MNC]").unwrap();
        let unknown = adjacent.match_substituted("/-1--1").unwrap();
        assert_eq!((unknown.mcc, unknown.mnc), (None, None));
        let known = adjacent.match_substituted("/240-01").unwrap();
        assert_eq!((known.mcc.as_deref(), known.mnc.as_deref()), (Some("240"), Some("01")));
    }

    #[test]
    fn template_without_path_matches_root_origin_form() {
        let uri = ServerUri::parse("https://h.example?dev=[DevID]").unwrap();
        assert_eq!(uri.match_substituted("/?dev=abc").unwrap().dev_id.as_deref(), Some("abc"));
        assert!(uri.is_https());
        assert!(!ServerUri::parse("http://h.example/").unwrap().is_https());
    }

    #[test]
    fn pathological_templates_give_up_instead_of_exploding() {
        let template = format!("https://h.example/{}", "[DevID][MCC][MNC][CMCC][CMNC][SPName]".repeat(4));
        let uri = ServerUri::parse(&template).unwrap();
        let actual = format!("/{}!", "a".repeat(200));
        assert_eq!(uri.match_substituted(&actual), None);
    }

    #[test]
    fn serde_uses_the_text_form() {
        let uri: ServerUri = serde_json::from_str("\"https://h.example/[DevID]\"").unwrap();
        assert_eq!(uri.parameters(), vec![ServerUriParameter::DevId]);
        assert_eq!(serde_json::to_string(&uri).unwrap(), "\"https://h.example/[DevID]\"");
        assert!(serde_json::from_str::<ServerUri>("\"https://h.example/[Nope]\"").is_err());
        assert_eq!("https://h.example/".parse::<ServerUri>().unwrap().to_string(), "https://h.example/");
    }
}
