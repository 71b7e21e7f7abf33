//! `omadm notification encode|decode`: build, sign and wrap a Package#0, or unwrap, decode and verify one.
//!
//! ```text
//! $ omadm notification encode --server-id srv --req-mos
//! 210010037372764000
//! $ omadm notification decode 210010037372764000
//! {"version": 2, "options": {"server_id": "srv", ..., "req_mos": true, "unknown": []}, "digest_valid": null}
//! ```
//!
//! The secret is the account's AuthSecret, a `chr` node, so it is taken as
//! text and signed as its UTF-8 bytes. omadm-proto has no clock: when
//! `--time` (encode) or `--now` (decode with `--max-age`) is left out, this
//! tool reads the system clock.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use omadm_proto::notification::{self, ConnectionType, Notification, PreferredConnectionTypes, UnknownOption};
use serde_json::{Value, json};

use super::Output;

/// The `omadm notification` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum NotificationCommand {
    /// Build a Package#0 and print it as lowercase hex on one line (base64 with --base64).
    Encode(EncodeArgs),
    /// Decode a Package#0 (hex, or base64 with --base64) and print its options as JSON;
    /// with --secret, also verify its SHA256-DIGEST and fail if it is wrong or too old.
    Decode(DecodeArgs),
}

/// Arguments of `omadm notification encode`.
#[derive(Debug, clap::Args)]
pub struct EncodeArgs {
    /// SERVER-ID option: the DMAcc ServerID of the server.
    #[arg(long, value_name = "ID")]
    server_id: Option<String>,
    /// NOTIFICATION-ID option (0-65535).
    #[arg(long, value_name = "N")]
    notification_id: Option<u16>,
    /// PREFERRED-CON-TYPE option, highest priority first: any|mobile|wireless|wireline, comma separated.
    #[arg(long, value_name = "TYPES", value_delimiter = ',')]
    con_type: Vec<ConnectionType>,
    /// REQ-MOS option: ask for the MOS array in Package#1.
    #[arg(long)]
    req_mos: bool,
    /// An option this tool has no flag for, as NUMBER:HEX (e.g. 9:cafe); repeatable.
    #[arg(long = "option", value_name = "NUMBER:HEX")]
    unknown_options: Vec<String>,
    /// Sign with SHA256-DIGEST using this AuthSecret.
    #[arg(long, value_name = "SECRET")]
    secret: Option<String>,
    /// POSIX time to put in SHA256-DIGEST (default: the system clock).
    #[arg(long, value_name = "SECONDS")]
    time: Option<u32>,
    /// Wrap the package in a connectionless WAP Push PDU (Appendix D.1).
    #[arg(long)]
    wsp: bool,
    /// WSP transaction id of the push PDU (with --wsp; default 0).
    #[arg(long, value_name = "TID")]
    tid: Option<u8>,
    /// Print base64 (the push-service "SMS" value, Appendix D.2.5) instead of hex.
    #[arg(long)]
    base64: bool,
}

/// Arguments of `omadm notification decode`.
#[derive(Debug, clap::Args)]
pub struct DecodeArgs {
    /// The package as hex (whitespace and a 0x prefix allowed), or with --base64 as base64 or {"SMS": "..."}.
    #[arg(value_name = "PACKAGE")]
    input: String,
    /// Verify SHA256-DIGEST with this AuthSecret.
    #[arg(long, value_name = "SECRET")]
    secret: Option<String>,
    /// Refuse a signature older than this many seconds (or as far in the future).
    #[arg(long, value_name = "SECONDS")]
    max_age: Option<u32>,
    /// POSIX time to judge --max-age against (default: the system clock).
    #[arg(long, value_name = "SECONDS")]
    now: Option<u32>,
    /// The input is a WAP Push PDU carrying the package.
    #[arg(long)]
    wsp: bool,
    /// The input is base64 (bare or as a push message {"SMS": "..."}) instead of hex.
    #[arg(long)]
    base64: bool,
}

/// Runs one subcommand; errors come back as one-line reasons for main to print.
pub fn run(command: NotificationCommand) -> anyhow::Result<Output> {
    match command {
        NotificationCommand::Encode(args) => encode(args),
        NotificationCommand::Decode(args) => decode(args),
    }
}

// Flag dependencies are checked here rather than with clap's `requires`, whose
// message names the missing flag only on its second line.
fn encode(args: EncodeArgs) -> anyhow::Result<Output> {
    if args.time.is_some() && args.secret.is_none() {
        bail!("--time sets the SHA256-DIGEST time and needs --secret to sign with");
    }
    if args.tid.is_some() && !args.wsp {
        bail!("--tid is the WAP Push transaction id and needs --wsp");
    }
    let preferred_connection_types = if args.con_type.is_empty() {
        None
    } else {
        Some(PreferredConnectionTypes::new(args.con_type).context("invalid --con-type")?)
    };
    let unknown_options =
        args.unknown_options.iter().map(|text| parse_unknown_option(text)).collect::<anyhow::Result<Vec<_>>>()?;
    let notification = Notification {
        server_id: args.server_id,
        preferred_connection_types,
        notification_id: args.notification_id,
        digest: None,
        request_mos: args.req_mos,
        unknown_options,
    };
    let package = match &args.secret {
        Some(secret) => {
            let time = match args.time {
                Some(time) => time,
                None => system_time()?,
            };
            notification.encode_signed(secret.as_bytes(), time)
        }
        None => notification.encode(),
    }
    .context("cannot encode the notification")?;
    let bytes = if args.wsp { notification::wrap_push(&package, args.tid.unwrap_or(0)) } else { package };
    let text = if args.base64 { notification::encode_base64(&bytes) } else { hex::encode(&bytes) };
    Ok(Output::Text(text))
}

fn decode(args: DecodeArgs) -> anyhow::Result<Output> {
    if args.max_age.is_some() && args.secret.is_none() {
        bail!("--max-age needs --secret: an unverified time proves nothing");
    }
    let received = if args.base64 {
        notification::from_push_text(&args.input).context("invalid base64 input")?
    } else {
        parse_hex(&args.input)?
    };
    let package =
        if args.wsp { notification::unwrap_push(&received).context("invalid WAP Push PDU")? } else { &received[..] };
    let decoded = Notification::decode(package).context("malformed notification")?;
    let digest_valid = match (&args.secret, decoded.digest) {
        (Some(secret), Some(_)) => {
            let now = match (args.now, args.max_age) {
                (Some(now), _) => now,
                (None, Some(_)) => system_time()?,
                // Without an age limit the time plays no part.
                (None, None) => 0,
            };
            notification::verify(package, Some(secret.as_bytes()), now, args.max_age)
                .context("notification rejected")?;
            Value::Bool(true)
        }
        _ => Value::Null,
    };
    Ok(Output::Json(json!({
        "version": notification::VERSION,
        "options": options_json(&decoded),
        "digest_valid": digest_valid,
    })))
}

fn options_json(decoded: &Notification) -> Value {
    json!({
        "server_id": decoded.server_id,
        "preferred_con_types": decoded
            .preferred_connection_types
            .as_ref()
            .map(|types| types.as_slice().iter().map(|kind| kind.name()).collect::<Vec<_>>()),
        "notification_id": decoded.notification_id,
        "digest": decoded.digest.map(|digest| json!({ "time": digest.time, "hash": hex::encode(digest.hash) })),
        "req_mos": decoded.request_mos,
        "unknown": decoded
            .unknown_options
            .iter()
            .map(|option| json!({ "number": option.number, "value": hex::encode(&option.value) }))
            .collect::<Vec<_>>(),
    })
}

/// Hex with any whitespace and an optional `0x` prefix, e.g. `0x21 00 10 03`.
fn parse_hex(input: &str) -> anyhow::Result<Vec<u8>> {
    let trimmed = input.trim();
    let without_prefix = trimmed.strip_prefix("0x").or_else(|| trimmed.strip_prefix("0X")).unwrap_or(trimmed);
    let digits: String = without_prefix.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(&digits).context("invalid hex input")
}

/// `NUMBER:HEX`, e.g. `9:cafe` or `12:` for an empty value.
fn parse_unknown_option(text: &str) -> anyhow::Result<UnknownOption> {
    let Some((number, value)) = text.split_once(':') else {
        bail!("invalid --option {text:?}: expected NUMBER:HEX, e.g. 9:cafe");
    };
    let number: u16 = number.trim().parse().with_context(|| format!("invalid --option number {number:?}"))?;
    let value = hex::decode(value.trim()).with_context(|| format!("invalid --option value {value:?}"))?;
    Ok(UnknownOption { number, value })
}

fn system_time() -> anyhow::Result<u32> {
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).context("system clock is before 1970")?.as_secs();
    u32::try_from(seconds).context("system clock is past 2106, beyond the 32-bit POSIX time of SHA256-DIGEST")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_input_forms() {
        assert_eq!(parse_hex("0x2000").unwrap(), vec![0x20, 0x00]);
        assert_eq!(parse_hex(" 20 00\n").unwrap(), vec![0x20, 0x00]);
        assert_eq!(parse_hex("0X2000").unwrap(), vec![0x20, 0x00]);
        assert!(parse_hex("200").is_err());
        assert!(parse_hex("zz").is_err());
    }

    #[test]
    fn unknown_option_forms() {
        assert_eq!(parse_unknown_option("9:cafe").unwrap(), UnknownOption { number: 9, value: vec![0xca, 0xfe] });
        assert_eq!(parse_unknown_option("12:").unwrap(), UnknownOption { number: 12, value: vec![] });
        assert!(parse_unknown_option("9").is_err());
        assert!(parse_unknown_option("x:00").is_err());
        assert!(parse_unknown_option("9:0").is_err());
    }
}
