//! The notifier's settings, declared once: flags and `OMADM_*` variables (clap), the `[notifier]` TOML table
//! (serde), every field optional; [`NotifierSettings::resolve`] fills the defaults and checks the values.
//!
//! ```text
//! --notifier-server-id ID           OMADM_SERVER_ID                 server_id             "omadm"
//! --notifier-dedup-window SECONDS   OMADM_NOTIFIER_DEDUP_WINDOW     dedup_window          60
//! --notifier-inventory-max-age S    OMADM_INVENTORY_MAX_AGE         inventory_max_age     86400
//! --notifier-udp-bind HOST:PORT     OMADM_NOTIFIER_UDP_BIND         udp_bind              "0.0.0.0:0"
//! --notifier-udp-rate N             OMADM_NOTIFIER_UDP_RATE         udp_rate              0 (no limit)
//! --notifier-batch-size N           OMADM_NOTIFIER_BATCH_SIZE       batch_size            100
//! --notifier-max-attempts N         OMADM_NOTIFIER_MAX_ATTEMPTS     max_attempts          5
//! --notifier-retry-delay SECONDS    OMADM_NOTIFIER_RETRY_DELAY      retry_delay           10
//! --notifier-retry-max-delay S      OMADM_NOTIFIER_RETRY_MAX_DELAY  retry_max_delay       300
//! --notifier-smpp-host HOST         OMADM_SMPP_HOST                 smpp_host             none: no SMS transport
//! --notifier-smpp-port PORT         OMADM_SMPP_PORT                 smpp_port             2775
//! --notifier-smpp-system-id ID      OMADM_SMPP_SYSTEM_ID            smpp_system_id        required with a host
//! --notifier-smpp-password PW       OMADM_SMPP_PASSWORD             smpp_password         ""
//! --notifier-smpp-system-type T     OMADM_SMPP_SYSTEM_TYPE          smpp_system_type      ""
//! --notifier-smpp-source-addr A     OMADM_SMPP_SOURCE_ADDR          smpp_source_addr      "" (the SMSC's default)
//! --notifier-smpp-tps N             OMADM_SMPP_TPS                  smpp_tps              10
//! --notifier-smpp-bind MODE         OMADM_SMPP_BIND                 smpp_bind             "transceiver"
//! --notifier-push-url URL           OMADM_PUSH_URL                  push_url              none: no push transport
//! --notifier-push-auth-header H     OMADM_PUSH_AUTH_HEADER          push_auth_header      none ("Name: value")
//! --notifier-push-body-template T   OMADM_PUSH_BODY_TEMPLATE        push_body_template    FCM HTTP v1 message
//! --notifier-push-timeout SECONDS   OMADM_PUSH_TIMEOUT              push_timeout          10
//! --notifier-push-rate N            OMADM_PUSH_RATE                 push_rate             0 (no limit)
//! ```
//!
//! The flags carry a `notifier-` prefix so that `omadm serve` can take them beside the gateway's; the server id
//! and the inventory age share their variables with the gateway's, since they mean the same thing there. The
//! SMPP variables are `OMADM_SMPP_*`: the SMSC account is the operator's, not the notifier's; so are the push
//! gateway's, `OMADM_PUSH_*`. The rates (`smpp_tps`, `push_rate`, `udp_rate`: sends per second) are shared by
//! every replica through the Store (`rate::SharedRate`).

use std::net::SocketAddr;
use std::time::Duration;

use omadm_core::clock::Millis;
use serde::{Deserialize, Serialize};

use crate::NotifierError;
use crate::plan::{PackageRules, RetryPolicy};
use crate::push::{BodyTemplate, DEFAULT_BODY_TEMPLATE};

/// The consumer group every notifier replica joins.
pub const CONSUMER_GROUP: &str = "omadm-notifier";

/// The notifier's settings as given: unset fields take their defaults in [`NotifierSettings::resolve`].
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierArgs {
    /// SERVER-ID of every Package#0: this server's DMAcc ServerID [default: omadm].
    #[arg(id = "notifier_server_id", long = "notifier-server-id", env = "OMADM_SERVER_ID", value_name = "ID")]
    pub server_id: Option<String>,
    /// A request for a device that was sent a Package#0 less than this long ago joins it (0: never) [default: 60].
    #[arg(long = "notifier-dedup-window", env = "OMADM_NOTIFIER_DEDUP_WINDOW", value_name = "SECONDS")]
    pub dedup_window: Option<u64>,
    /// REQ-MOS is set when the device's inventory is older than this, or was never read [default: 86400].
    #[arg(
        id = "notifier_inventory_max_age",
        long = "notifier-inventory-max-age",
        env = "OMADM_INVENTORY_MAX_AGE",
        value_name = "SECONDS"
    )]
    pub inventory_max_age: Option<u64>,
    /// The address WAP Push datagrams leave from [default: 0.0.0.0:0].
    #[arg(long = "notifier-udp-bind", env = "OMADM_NOTIFIER_UDP_BIND", value_name = "HOST:PORT")]
    pub udp_bind: Option<SocketAddr>,
    /// WAP Push datagrams per second at most, all replicas together; 0: no limit [default: 0].
    #[arg(long = "notifier-udp-rate", env = "OMADM_NOTIFIER_UDP_RATE", value_name = "N")]
    pub udp_rate: Option<u32>,
    /// Requests read from the bus per batch, at most [default: 100].
    #[arg(long = "notifier-batch-size", env = "OMADM_NOTIFIER_BATCH_SIZE", value_name = "N")]
    pub batch_size: Option<usize>,
    /// Attempts per request, the first included, while its sends fail in a way that may pass (1: no retry)
    /// [default: 5].
    #[arg(
        id = "notifier_max_attempts",
        long = "notifier-max-attempts",
        env = "OMADM_NOTIFIER_MAX_ATTEMPTS",
        value_name = "N"
    )]
    pub max_attempts: Option<u32>,
    /// The wait before a request's second attempt; it doubles per attempt [default: 10].
    #[arg(
        id = "notifier_retry_delay",
        long = "notifier-retry-delay",
        env = "OMADM_NOTIFIER_RETRY_DELAY",
        value_name = "SECONDS"
    )]
    pub retry_delay: Option<u64>,
    /// The longest wait between two attempts [default: 300].
    #[arg(
        id = "notifier_retry_max_delay",
        long = "notifier-retry-max-delay",
        env = "OMADM_NOTIFIER_RETRY_MAX_DELAY",
        value_name = "SECONDS"
    )]
    pub retry_max_delay: Option<u64>,
    /// The SMSC's host for WAP Push over SMS (SMPP 3.4); unset: no SMS transport.
    #[arg(long = "notifier-smpp-host", env = "OMADM_SMPP_HOST", value_name = "HOST")]
    pub smpp_host: Option<String>,
    /// The SMSC's SMPP port [default: 2775].
    #[arg(long = "notifier-smpp-port", env = "OMADM_SMPP_PORT", value_name = "PORT")]
    pub smpp_port: Option<u16>,
    /// system_id of the bind_transmitter (the SMSC account); required with a host.
    #[arg(long = "notifier-smpp-system-id", env = "OMADM_SMPP_SYSTEM_ID", value_name = "ID")]
    pub smpp_system_id: Option<String>,
    /// password of the bind_transmitter [default: empty].
    #[arg(
        long = "notifier-smpp-password",
        env = "OMADM_SMPP_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub smpp_password: Option<String>,
    /// system_type of the bind_transmitter, as the SMSC operator asks [default: empty].
    #[arg(long = "notifier-smpp-system-type", env = "OMADM_SMPP_SYSTEM_TYPE", value_name = "TYPE")]
    pub smpp_system_type: Option<String>,
    /// source_addr of every submit_sm: `+491...` (international), digits, or alphanumeric [default: empty].
    #[arg(long = "notifier-smpp-source-addr", env = "OMADM_SMPP_SOURCE_ADDR", value_name = "ADDRESS")]
    pub smpp_source_addr: Option<String>,
    /// submit_sm per second at most, the SMSC account's throughput [default: 10].
    #[arg(long = "notifier-smpp-tps", env = "OMADM_SMPP_TPS", value_name = "N")]
    pub smpp_tps: Option<u32>,
    /// `transceiver`: submits and the SMSC's delivery receipts on one bind; `transmitter`: submits only, no
    /// receipts read (for an account that may not bind as transceiver) [default: transceiver].
    #[arg(long = "notifier-smpp-bind", env = "OMADM_SMPP_BIND", value_name = "MODE")]
    pub smpp_bind: Option<SmppBind>,
    /// The push gateway's URL (Appendix D.2; for FCM `https://fcm.googleapis.com/v1/projects/ID/messages:send`);
    /// unset: no push transport.
    #[arg(long = "notifier-push-url", env = "OMADM_PUSH_URL", value_name = "URL")]
    pub push_url: Option<String>,
    /// The header every push request carries, as `Name: value` (`Authorization: Bearer ya29...`) [default: none].
    #[arg(
        long = "notifier-push-auth-header",
        env = "OMADM_PUSH_AUTH_HEADER",
        value_name = "HEADER",
        hide_env_values = true
    )]
    pub push_auth_header: Option<String>,
    /// The JSON body of a push request, `{{RegID}}` and `{{SMS}}` standing for the device's RegID and the base64
    /// Package#0 [default: {"message":{"token":"{{RegID}}","data":{"SMS":"{{SMS}}"}}}].
    #[arg(long = "notifier-push-body-template", env = "OMADM_PUSH_BODY_TEMPLATE", value_name = "JSON")]
    pub push_body_template: Option<String>,
    /// Seconds a push request may take, connecting included, before it counts as failed [default: 10].
    #[arg(long = "notifier-push-timeout", env = "OMADM_PUSH_TIMEOUT", value_name = "SECONDS")]
    pub push_timeout: Option<u64>,
    /// Requests to the push gateway per second at most, all replicas together; 0: no limit [default: 0].
    #[arg(long = "notifier-push-rate", env = "OMADM_PUSH_RATE", value_name = "N")]
    pub push_rate: Option<u32>,
}

/// The notifier's settings, defaults filled in and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifierSettings {
    pub server_id: String,
    pub dedup_window: Duration,
    pub inventory_max_age: Duration,
    pub udp_bind: SocketAddr,
    /// Datagrams per second, all replicas together; 0: no limit.
    pub udp_rate: u32,
    pub batch_size: usize,
    /// When a request whose sends failed is tried again.
    pub retry: RetryPolicy,
    /// The SMSC to send WAP Push over SMS through; `None`: no SMS transport.
    pub smpp: Option<SmppSettings>,
    /// The push gateway to send Package#0 through (D.2); `None`: no push transport.
    pub push: Option<PushSettings>,
}

/// The push gateway of the push transport, checked.
#[derive(Clone, PartialEq, Eq)]
pub struct PushSettings {
    /// An `http` or `https` URL.
    pub url: String,
    /// (name, value) of the header every request carries, e.g. `Authorization`, `Bearer ya29...`.
    pub auth_header: Option<(String, String)>,
    pub body_template: BodyTemplate,
    /// A request that takes longer (connecting included) fails.
    pub timeout: Duration,
    /// Requests per second, all replicas together; 0: no limit.
    pub rate: u32,
}

impl std::fmt::Debug for PushSettings {
    /// Everything but the auth header's value, which a log line must never carry.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PushSettings")
            .field("url", &self.url)
            .field("auth_header", &self.auth_header.as_ref().map(|(name, _)| format!("{name}: <set>")))
            .field("body_template", &self.body_template)
            .field("timeout", &self.timeout)
            .field("rate", &self.rate)
            .finish()
    }
}

/// How the SMS transport binds to the SMSC (SMPP 3.4 4.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmppBind {
    /// bind_transceiver: submit_sm out, deliver_sm (delivery receipts) in, on one connection.
    #[default]
    Transceiver,
    /// bind_transmitter: submit_sm only; the SMSC sends no receipts on it.
    Transmitter,
}

/// The SMSC account of the SMS transport, checked.
#[derive(Clone, PartialEq, Eq)]
pub struct SmppSettings {
    pub host: String,
    pub port: u16,
    /// At most 15 characters (SMPP 3.4 5.2.1: C-Octet String of 16 with its NUL).
    pub system_id: String,
    /// At most 8 characters.
    pub password: String,
    /// At most 12 characters.
    pub system_type: String,
    /// At most 20 characters.
    pub source_addr: String,
    /// submit_sm per second, at least 1.
    pub tps: u32,
    pub bind: SmppBind,
}

impl std::fmt::Debug for SmppSettings {
    /// Everything but the password, which a log line must never carry.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SmppSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("system_id", &self.system_id)
            .field("password", &if self.password.is_empty() { "" } else { "<set>" })
            .field("system_type", &self.system_type)
            .field("source_addr", &self.source_addr)
            .field("tps", &self.tps)
            .field("bind", &self.bind)
            .finish()
    }
}

impl NotifierSettings {
    /// `args` with every unset field at its default; refuses an empty server id and a batch size of 0.
    pub fn resolve(args: &NotifierArgs) -> Result<NotifierSettings, NotifierError> {
        let server_id = args.server_id.clone().unwrap_or_else(|| "omadm".to_owned());
        if server_id.trim().is_empty() {
            return Err(NotifierError::Settings("the notifier's server id is empty".to_owned()));
        }
        let batch_size = args.batch_size.unwrap_or(100);
        if batch_size == 0 {
            return Err(NotifierError::Settings("the notifier's batch size must be at least 1".to_owned()));
        }
        let smpp = smpp_settings(args)?;
        let push = push_settings(args)?;
        let retry = retry_policy(args)?;
        Ok(NotifierSettings {
            retry,
            smpp,
            push,
            server_id,
            dedup_window: Duration::from_secs(args.dedup_window.unwrap_or(60)),
            inventory_max_age: Duration::from_secs(args.inventory_max_age.unwrap_or(86_400)),
            udp_bind: args.udp_bind.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
            udp_rate: args.udp_rate.unwrap_or(0),
            batch_size,
        })
    }

    /// The rules of every plan, given the transports the notifier has.
    pub(crate) fn package_rules(&self, transports: Vec<&'static str>) -> PackageRules {
        PackageRules {
            server_id: self.server_id.clone(),
            inventory_max_age: millis(self.inventory_max_age),
            transports,
        }
    }

    pub(crate) fn dedup_window_millis(&self) -> Millis {
        millis(self.dedup_window)
    }
}

/// The retry settings, checked: at least one attempt, a first delay of at least a second, a cap not below it.
fn retry_policy(args: &NotifierArgs) -> Result<RetryPolicy, NotifierError> {
    let max_attempts = args.max_attempts.unwrap_or(5);
    let first_delay = args.retry_delay.unwrap_or(10);
    let max_delay = args.retry_max_delay.unwrap_or(300.max(first_delay));
    if max_attempts == 0 {
        return Err(NotifierError::Settings("the notifier's max attempts must be at least 1".to_owned()));
    }
    if first_delay == 0 || max_delay < first_delay {
        return Err(NotifierError::Settings(format!(
            "the notifier's retry delay ({first_delay} s) must be at least 1 s and at most its max delay ({max_delay} s)"
        )));
    }
    Ok(RetryPolicy {
        max_attempts,
        first_delay: first_delay.saturating_mul(1000),
        max_delay: max_delay.saturating_mul(1000),
    })
}

/// The SMSC settings when a host is given; each text within its SMPP 3.4 field length (5.2), so a bind never
/// fails on encoding.
fn smpp_settings(args: &NotifierArgs) -> Result<Option<SmppSettings>, NotifierError> {
    let Some(host) = args.smpp_host.clone().filter(|host| !host.trim().is_empty()) else {
        return Ok(None);
    };
    let refuse = |message: String| Err(NotifierError::Settings(message));
    let Some(system_id) = args.smpp_system_id.clone().filter(|id| !id.is_empty()) else {
        return refuse(format!("the SMSC {host} is set but no SMPP system id (--notifier-smpp-system-id)"));
    };
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    let (password, system_type, source_addr) =
        (text(&args.smpp_password), text(&args.smpp_system_type), text(&args.smpp_source_addr));
    let fields = [
        ("system id", &system_id, 15),
        ("password", &password, 8),
        ("system type", &system_type, 12),
        ("source address", &source_addr, 20),
    ];
    for (name, value, longest) in fields {
        if value.len() > longest || !value.is_ascii() || value.contains('\0') {
            return refuse(format!("the SMPP {name} must be at most {longest} ASCII characters"));
        }
    }
    let tps = args.smpp_tps.unwrap_or(10);
    if tps == 0 {
        return refuse("the SMPP submit rate (--notifier-smpp-tps) must be at least 1".to_owned());
    }
    Ok(Some(SmppSettings {
        host,
        port: args.smpp_port.unwrap_or(2775),
        system_id,
        password,
        system_type,
        source_addr,
        tps,
        bind: args.smpp_bind.unwrap_or_default(),
    }))
}

/// The push gateway when a URL is given: an http(s) URL, a `Name: value` header, a template that renders to
/// JSON with both placeholders, a timeout of at least a second.
fn push_settings(args: &NotifierArgs) -> Result<Option<PushSettings>, NotifierError> {
    let Some(url) = args.push_url.clone().filter(|url| !url.trim().is_empty()) else {
        return Ok(None);
    };
    let refuse = |message: String| Err(NotifierError::Settings(message));
    let url = url.trim().to_owned();
    if !(url.starts_with("http://") || url.starts_with("https://")) || reqwest::Url::parse(&url).is_err() {
        return refuse(format!("the push gateway URL {url:?} is not an http(s) URL (--notifier-push-url)"));
    }
    let auth_header = match args.push_auth_header.as_deref().map(str::trim).filter(|header| !header.is_empty()) {
        None => None,
        Some(header) => {
            let parsed =
                header.split_once(':').map(|(name, value)| (name.trim(), value.trim())).filter(|(name, value)| {
                    reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok()
                        && reqwest::header::HeaderValue::from_str(value).is_ok()
                        && !value.is_empty()
                });
            let Some((name, value)) = parsed else {
                return refuse("the push auth header must be `Name: value` (--notifier-push-auth-header)".to_owned());
            };
            Some((name.to_owned(), value.to_owned()))
        }
    };
    let template = args.push_body_template.as_deref().unwrap_or(DEFAULT_BODY_TEMPLATE);
    let body_template = BodyTemplate::new(template)
        .map_err(|error| NotifierError::Settings(format!("the push body template: {error}")))?;
    let timeout = args.push_timeout.unwrap_or(10);
    if timeout == 0 {
        return refuse("the push timeout (--notifier-push-timeout) must be at least 1 second".to_owned());
    }
    Ok(Some(PushSettings {
        url,
        auth_header,
        body_template,
        timeout: Duration::from_secs(timeout),
        rate: args.push_rate.unwrap_or(0),
    }))
}

fn millis(duration: Duration) -> Millis {
    Millis::try_from(duration.as_millis()).unwrap_or(Millis::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::Parser;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Command {
        #[command(flatten)]
        notifier: NotifierArgs,
        /// The gateway's flag of the same name: flattened together they must not clash.
        #[arg(long)]
        server_id: Option<String>,
    }

    #[test]
    fn defaults_fill_what_is_unset() {
        let settings = NotifierSettings::resolve(&NotifierArgs::default()).unwrap();
        assert_eq!(
            settings,
            NotifierSettings {
                server_id: "omadm".to_owned(),
                dedup_window: Duration::from_secs(60),
                inventory_max_age: Duration::from_secs(86_400),
                udp_bind: "0.0.0.0:0".parse().unwrap(),
                udp_rate: 0,
                batch_size: 100,
                retry: RetryPolicy { max_attempts: 5, first_delay: 10_000, max_delay: 300_000 },
                smpp: None,
                push: None,
            }
        );
    }

    #[test]
    fn a_push_gateway_is_configured_by_its_url_and_checked() {
        let parsed = Command::try_parse_from([
            "omadm",
            "--notifier-push-url",
            "https://fcm.googleapis.com/v1/projects/p/messages:send",
            "--notifier-push-auth-header",
            "Authorization: Bearer ya29.secret",
        ])
        .unwrap();
        let file: NotifierArgs = toml::from_str("push_timeout = 3\n").unwrap();
        let merged = omadm_runtime::settings::layer(&parsed.notifier, &file).unwrap();
        let push = NotifierSettings::resolve(&merged).unwrap().push.unwrap();
        assert_eq!(push.url, "https://fcm.googleapis.com/v1/projects/p/messages:send");
        assert_eq!(push.auth_header, Some(("Authorization".to_owned(), "Bearer ya29.secret".to_owned())));
        assert_eq!(push.timeout, Duration::from_secs(3));
        assert_eq!(push.body_template.render("tok", "IQ=="), r#"{"message":{"token":"tok","data":{"SMS":"IQ=="}}}"#);
        assert!(!format!("{push:?}").contains("ya29"), "the credential stays out of logs");
        let base = NotifierArgs { push_url: Some("http://127.0.0.1:1/send".to_owned()), ..NotifierArgs::default() };
        assert_eq!(NotifierSettings::resolve(&base).unwrap().push.unwrap().auth_header, None);
        for bad in [
            NotifierArgs { push_url: Some("fcm.googleapis.com/send".to_owned()), ..base.clone() },
            NotifierArgs { push_auth_header: Some("Bearer ya29".to_owned()), ..base.clone() },
            NotifierArgs { push_auth_header: Some("Bad Name: x".to_owned()), ..base.clone() },
            NotifierArgs { push_body_template: Some(r#"{"token":"{{RegID}}"}"#.to_owned()), ..base.clone() },
            NotifierArgs { push_body_template: Some("{{RegID}} {{SMS}}".to_owned()), ..base.clone() },
            NotifierArgs { push_timeout: Some(0), ..base.clone() },
        ] {
            assert!(matches!(NotifierSettings::resolve(&bad), Err(NotifierError::Settings(_))), "{bad:?}");
        }
        assert_eq!(NotifierSettings::resolve(&NotifierArgs::default()).unwrap().push, None, "no URL, no push");
    }

    #[test]
    fn retry_settings_are_checked() {
        let args = |max_attempts, retry_delay, retry_max_delay| NotifierArgs {
            max_attempts,
            retry_delay,
            retry_max_delay,
            ..NotifierArgs::default()
        };
        let policy = NotifierSettings::resolve(&args(Some(1), Some(2), Some(3))).unwrap().retry;
        assert_eq!(policy, RetryPolicy { max_attempts: 1, first_delay: 2_000, max_delay: 3_000 });
        let raised = NotifierSettings::resolve(&args(None, Some(600), None)).unwrap().retry;
        assert_eq!(raised.max_delay, 600_000, "an unset cap is never below the first delay");
        for refused in [args(Some(0), None, None), args(None, Some(0), None), args(None, Some(20), Some(10))] {
            assert!(NotifierSettings::resolve(&refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn flags_and_the_toml_table_fill_the_same_struct() {
        let parsed = Command::try_parse_from([
            "omadm",
            "--notifier-server-id",
            "dms.example.com",
            "--notifier-dedup-window",
            "5",
            "--notifier-udp-bind",
            "127.0.0.1:0",
            "--server-id",
            "gateway's",
        ])
        .unwrap();
        assert_eq!(parsed.notifier.server_id.as_deref(), Some("dms.example.com"));
        assert_eq!(parsed.server_id.as_deref(), Some("gateway's"));
        let file: NotifierArgs = toml::from_str("dedup_window = 9\nbatch_size = 10\ninventory_max_age = 1\n").unwrap();
        let merged = omadm_runtime::settings::layer(&parsed.notifier, &file).unwrap();
        let settings = NotifierSettings::resolve(&merged).unwrap();
        assert_eq!(settings.server_id, "dms.example.com");
        assert_eq!(settings.dedup_window, Duration::from_secs(5), "the flag wins over the file");
        assert_eq!((settings.batch_size, settings.inventory_max_age), (10, Duration::from_secs(1)));
        assert!(toml::from_str::<NotifierArgs>("dedup_windw = 9\n").is_err(), "unknown keys are refused");
    }

    #[test]
    fn an_smsc_is_configured_by_its_host_and_checked() {
        let parsed = Command::try_parse_from([
            "omadm",
            "--notifier-smpp-host",
            "smsc.example.net",
            "--notifier-smpp-system-id",
            "omadm",
            "--notifier-smpp-password",
            "secret",
        ])
        .unwrap();
        let file: NotifierArgs = toml::from_str(
            "smpp_port = 2776\nsmpp_tps = 50\nsmpp_source_addr = \"+4930123\"\nsmpp_bind = \"transmitter\"\n",
        )
        .unwrap();
        let merged = omadm_runtime::settings::layer(&parsed.notifier, &file).unwrap();
        let smpp = NotifierSettings::resolve(&merged).unwrap().smpp.unwrap();
        assert_eq!(
            smpp,
            SmppSettings {
                host: "smsc.example.net".to_owned(),
                port: 2776,
                system_id: "omadm".to_owned(),
                password: "secret".to_owned(),
                system_type: String::new(),
                source_addr: "+4930123".to_owned(),
                tps: 50,
                bind: SmppBind::Transmitter,
            }
        );
        assert!(!format!("{smpp:?}").contains("secret"), "the password stays out of logs");
        let base = NotifierArgs { smpp_host: Some("smsc".to_owned()), ..NotifierArgs::default() };
        assert!(matches!(NotifierSettings::resolve(&base), Err(NotifierError::Settings(_))), "no system id");
        let with_id = NotifierArgs { smpp_system_id: Some("id".to_owned()), ..base };
        let defaults = NotifierSettings::resolve(&with_id).unwrap().smpp.unwrap();
        assert_eq!((defaults.port, defaults.bind), (2775, SmppBind::Transceiver));
        for bad in [
            NotifierArgs { smpp_password: Some("nine char".to_owned()), ..with_id.clone() },
            NotifierArgs { smpp_system_id: Some("sixteen chars ..".to_owned()), ..with_id.clone() },
            NotifierArgs { smpp_tps: Some(0), ..with_id.clone() },
        ] {
            assert!(matches!(NotifierSettings::resolve(&bad), Err(NotifierError::Settings(_))), "{bad:?}");
        }
        let off = NotifierArgs { smpp_host: None, ..with_id };
        assert_eq!(NotifierSettings::resolve(&off).unwrap().smpp, None, "no host, no SMS transport");
    }

    #[test]
    fn empty_server_ids_and_empty_batches_are_refused() {
        let empty = NotifierArgs { server_id: Some(" ".to_owned()), ..NotifierArgs::default() };
        assert!(matches!(NotifierSettings::resolve(&empty), Err(NotifierError::Settings(_))));
        let no_batch = NotifierArgs { batch_size: Some(0), ..NotifierArgs::default() };
        assert!(matches!(NotifierSettings::resolve(&no_batch), Err(NotifierError::Settings(_))));
    }
}
