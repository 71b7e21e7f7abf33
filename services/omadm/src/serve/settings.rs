//! The settings of `omadm serve` and `omadm gateway`: declared once ([`ServeArgs`]: flags, `OMADM_*` variables
//! and the `--config` TOML file by the same derive), layered flags over file, then defaults and checks.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use omadm_campaigns::{CampaignsArgs, CampaignsSettings};
use omadm_gateway::{BootstrapConfig, GcmOffer};
use omadm_notifier::{NotifierArgs, NotifierSettings};
use omadm_runtime::logging::LogFormat;
use omadm_runtime::settings;
use serde::{Deserialize, Serialize};

/// The ops listener's address unless `--ops-listen` says otherwise.
pub const DEFAULT_OPS_LISTEN: &str = "127.0.0.1:9464";

/// `omadm serve` / `omadm gateway` flags; every one also reads an `OMADM_*` variable and a `--config` TOML field
/// of the same name in snake_case (bootstrap settings in a `[bootstrap]` table, GCM in `[bootstrap.gcm]`).
#[derive(Debug, Default, Clone, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (flags and environment win over it).
    #[arg(long, env = "OMADM_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to listen on for devices and the operator API [default: 127.0.0.1:8080].
    #[arg(long, env = "OMADM_LISTEN", value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Address of the ops listener (/metrics, /healthz, /readyz), or `none` [default: 127.0.0.1:9464].
    #[arg(long, env = "OMADM_OPS_LISTEN", value_name = "HOST:PORT|none")]
    pub ops_listen: Option<String>,
    /// Directory of the embedded store, the event files and generated secrets (created 0700) [default: ./omadm-data].
    #[arg(long, env = "OMADM_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Start even though the data dir is readable or writable by other users (it holds every device's secrets).
    #[arg(long, env = "OMADM_ALLOW_SHARED_DATA_DIR", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub allow_shared_data_dir: Option<bool>,
    /// Bearer token of the operator API [default: generated once and kept in the data dir].
    #[arg(long, env = "OMADM_ADMIN_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Base URL devices reach this server at, for CONT, repository and alert URLs [default: http://{listen}].
    #[arg(long, env = "OMADM_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// Queued commands per Package#2 [default: 10].
    #[arg(long, env = "OMADM_MAX_COMMANDS_PER_PACKAGE", value_name = "N")]
    pub max_commands_per_package: Option<usize>,
    /// Seconds of silence after which a session expires and its unanswered commands are queued again [default: 300].
    #[arg(long, env = "OMADM_SESSION_TIMEOUT", value_name = "SECONDS")]
    pub session_timeout: Option<u64>,
    /// Seconds after which DevInfo/SessionInfo are read again at the next session [default: 86400].
    #[arg(long, env = "OMADM_INVENTORY_MAX_AGE", value_name = "SECONDS")]
    pub inventory_max_age: Option<u64>,
    /// Times a command is sent without an answer before it expires [default: 5].
    #[arg(long, env = "OMADM_MAX_ATTEMPTS", value_name = "N")]
    pub max_attempts: Option<u32>,
    /// Generic Alert MIME types answered 200/202, comma separated; others get 415 [default: all accepted].
    #[arg(long, env = "OMADM_ALERT_MIME_TYPES", value_name = "TYPES", value_delimiter = ',')]
    pub alert_mime_types: Option<Vec<String>>,
    /// Largest request body from devices and operators, in bytes [default: 1048576].
    #[arg(long, env = "OMADM_MAX_BODY_BYTES", value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Largest repository item an operator may publish, in bytes; streamed, so memory does not grow with it
    /// [default: 4294967296 (4 GiB)].
    #[arg(long, env = "OMADM_MAX_REPOSITORY_BYTES", value_name = "BYTES")]
    pub max_repository_bytes: Option<u64>,
    /// Register an unknown device on its first session when it authenticates with this password [default: off].
    #[arg(long, env = "OMADM_AUTO_REGISTER_PASSWORD", value_name = "PASSWORD", hide_env_values = true)]
    pub auto_register_password: Option<String>,
    /// Log lines as text or JSON, on stderr [default: text].
    #[arg(long, env = "OMADM_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// HTTP authentication realm of devices [default: omadm].
    #[arg(long, env = "OMADM_REALM", value_name = "REALM")]
    pub realm: Option<String>,
    /// HTTP worker threads [default: one per CPU core].
    #[arg(long, env = "OMADM_WORKERS", value_name = "N")]
    pub workers: Option<usize>,
    /// Seconds a client has to send a request head before it gets 408 [default: 5].
    #[arg(long, env = "OMADM_REQUEST_TIMEOUT", value_name = "SECONDS")]
    pub request_timeout: Option<u64>,
    /// Seconds in-flight requests get to finish on SIGTERM [default: 30].
    #[arg(long, env = "OMADM_SHUTDOWN_TIMEOUT", value_name = "SECONDS")]
    pub shutdown_timeout: Option<u64>,
    /// Prefix of event topic names (file names under {data-dir}/events) [default: omadm.].
    #[arg(long, env = "OMADM_TOPIC_PREFIX", value_name = "PREFIX")]
    pub topic_prefix: Option<String>,
    /// The store, by URL: a directory (or file://DIR) for the embedded engine, redis://HOST:PORT[/DB],
    /// redis+cluster://HOST:PORT,HOST:PORT, or a comma list of redis:// URLs [serve default: {data-dir}/store;
    /// gateway: required, shared].
    #[arg(long, env = "OMADM_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// The event bus, by URL: a directory (or file://DIR) for JSONL files, or kafka://HOST:PORT[,HOST:PORT]
    /// [serve default: {data-dir}/events; gateway: required].
    #[arg(long, env = "OMADM_BUS", value_name = "URL")]
    pub bus: Option<String>,
    /// Where the Data Repository's bytes live, by URL: a directory (or file://DIR; a volume every node shares in a
    /// cluster), s3://BUCKET[/PREFIX][?endpoint=URL&region=R&allow_http=true...] (credentials from AWS_* variables),
    /// or memory:// (this process only) [serve default: {data-dir}/content; gateway: required, shared].
    #[arg(long, env = "OMADM_CONTENT", value_name = "URL")]
    pub content: Option<String>,
    /// Alias of --store for Redis: a bare HOST:PORT means redis://HOST:PORT.
    #[arg(long, env = "OMADM_REDIS", value_name = "URL", conflicts_with = "store")]
    pub redis: Option<String>,
    /// Alias of --bus for Kafka: bare brokers HOST:PORT[,HOST:PORT] mean kafka://HOST:PORT[,HOST:PORT].
    #[arg(long, env = "OMADM_KAFKA", value_name = "BROKERS", conflicts_with = "bus")]
    pub kafka: Option<String>,
    /// The JSONL event files are rotated once one reaches this size [default: 67108864 (64 MiB)].
    #[arg(long, env = "OMADM_EVENTS_SEGMENT_BYTES", value_name = "BYTES")]
    pub events_segment_bytes: Option<u64>,
    /// Rotated JSONL segments kept per topic, the newest; older ones are deleted [default: 8].
    #[arg(long, env = "OMADM_EVENTS_RETAINED_SEGMENTS", value_name = "N")]
    pub events_retained_segments: Option<usize>,
    /// Partitions of each topic created on Kafka (existing topics are left as they are) [default: 6].
    #[arg(long, env = "OMADM_KAFKA_PARTITIONS", value_name = "N")]
    pub kafka_partitions: Option<i32>,
    /// Replicas of each partition created on Kafka [default: 1; 3 on a production cluster].
    #[arg(long, env = "OMADM_KAFKA_REPLICATION", value_name = "N")]
    pub kafka_replication: Option<i32>,
    /// A librdkafka setting as KEY=VALUE (security.protocol=SASL_SSL...), applied after omadm's; repeatable.
    #[arg(
        long = "kafka-setting",
        env = "OMADM_KAFKA_SETTINGS",
        value_name = "KEY=VALUE",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub kafka_settings: Option<Vec<String>>,
    /// Address of the internal listener, where peers forward device requests [default: none, peers never forward here].
    #[arg(long, env = "OMADM_INTERNAL_LISTEN", value_name = "HOST:PORT")]
    pub internal_listen: Option<String>,
    /// Base URL peers reach the internal listener at [default: http://{internal-listen}].
    #[arg(long, env = "OMADM_INTERNAL_URL", value_name = "URL")]
    pub internal_url: Option<String>,
    /// This node's id in the cluster [default: random per process].
    #[arg(long, env = "OMADM_NODE_ID", value_name = "ID")]
    pub node_id: Option<String>,
    /// Shared secret of the internal listeners [default: derived from the admin token].
    #[arg(long, env = "OMADM_INTERNAL_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub internal_token: Option<String>,
    /// Key of the HTTP Digest nonces, hex, the same on every node [default: {data-dir}/nonce-key, or derived from
    /// the admin token on a shared store].
    #[arg(long, env = "OMADM_NONCE_KEY", value_name = "HEX", hide_env_values = true)]
    pub nonce_key: Option<String>,
    /// Milliseconds between heartbeats of this node [default: 1000].
    #[arg(long, env = "OMADM_HEARTBEAT_INTERVAL_MS", value_name = "MS")]
    pub heartbeat_interval_ms: Option<u64>,
    /// Milliseconds without a heartbeat after which a node counts as gone [default: 5000].
    #[arg(long, env = "OMADM_NODE_TTL_MS", value_name = "MS")]
    pub node_ttl_ms: Option<u64>,
    /// Milliseconds a device's session lease lasts after its last renewal [default: 30000].
    #[arg(long, env = "OMADM_LEASE_TTL_MS", value_name = "MS")]
    pub lease_ttl_ms: Option<u64>,
    /// Milliseconds a forwarded request may take before its owner counts as unreachable [default: 10000].
    #[arg(long, env = "OMADM_FORWARD_TIMEOUT_MS", value_name = "MS")]
    pub forward_timeout_ms: Option<u64>,
    /// Unpublished events one outbox shard may hold before commits are refused (503) [default: 1000000].
    #[arg(long, env = "OMADM_OUTBOX_LIMIT", value_name = "EVENTS")]
    pub outbox_limit: Option<u64>,
    /// Ended sessions kept in each device's history [default: 50].
    #[arg(long, env = "OMADM_SESSION_HISTORY", value_name = "N")]
    pub session_history: Option<usize>,
    /// Milliseconds of the window a device's sessions are counted in [default: 60000].
    #[arg(long, env = "OMADM_SESSION_RATE_WINDOW_MS", value_name = "MS")]
    pub session_rate_window_ms: Option<u64>,
    /// Package#1s one device may send per window; past it 429 with Retry-After [default: 30].
    #[arg(long, env = "OMADM_MAX_SESSIONS_PER_DEVICE", value_name = "N")]
    pub max_sessions_per_device: Option<u64>,
    /// Largest single device upload (HPUT/HPOST), in bytes; past it 413 [default: 4194304].
    #[arg(long, env = "OMADM_MAX_UPLOAD_BYTES", value_name = "BYTES")]
    pub max_upload_bytes: Option<usize>,
    /// Bytes all uploads of one device may hold; past it 413 [default: 16777216].
    #[arg(long, env = "OMADM_MAX_UPLOAD_BYTES_PER_DEVICE", value_name = "BYTES")]
    pub max_upload_bytes_per_device: Option<u64>,
    /// Items one device's uploads may be; past it 413 [default: 100].
    #[arg(long, env = "OMADM_MAX_UPLOADS_PER_DEVICE", value_name = "N")]
    pub max_uploads_per_device: Option<u64>,
    /// Bytes all device uploads together may hold; past it 507 [default: 1073741824].
    #[arg(long, env = "OMADM_MAX_UPLOAD_TOTAL_BYTES", value_name = "BYTES")]
    pub max_upload_total_bytes: Option<u64>,
    #[command(flatten)]
    #[serde(default)]
    pub bootstrap: BootstrapArgs,
    /// The notifier role's settings (the `[notifier]` table); `serve` runs it in-process, `notifier` alone.
    #[command(flatten)]
    #[serde(default)]
    pub notifier: NotifierArgs,
    /// The campaigns role's settings (the `[campaigns]` table); `serve` runs it in-process, `campaigns` alone.
    #[command(flatten)]
    #[serde(default)]
    pub campaigns: CampaignsArgs,
}

/// What `/bootstrap` hands out (the `[bootstrap]` table of the file).
#[derive(Debug, Default, Clone, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapArgs {
    /// DMAcc ServerID of this server, handed out by /bootstrap and used for DMDAC checks [default: omadm].
    #[arg(long, env = "OMADM_SERVER_ID", value_name = "ID")]
    pub server_id: Option<String>,
    /// DMAcc Name handed out by /bootstrap [default: omadm].
    #[arg(long, env = "OMADM_SERVER_NAME", value_name = "NAME")]
    pub server_name: Option<String>,
    /// MOIDs this server may manage (DMAcc Permissions), comma separated [default: *].
    #[arg(long, env = "OMADM_PERMITTED_MOIDS", value_name = "MOIDS", value_delimiter = ',')]
    pub permitted_moids: Option<Vec<String>>,
    /// A DEFAULT command /bootstrap hands out, as MOID=ServerURI; repeatable (in the file: `{ moid, server_uri }`).
    #[arg(
        long = "bootstrap-default",
        env = "OMADM_BOOTSTRAP_DEFAULTS",
        value_name = "MOID=SERVERURI",
        value_delimiter = ','
    )]
    pub defaults: Option<Vec<BootstrapDefault>>,
    #[command(flatten)]
    #[serde(default)]
    pub gcm: GcmArgs,
}

/// DMAcc Push/GCM handed out by /bootstrap (D.2.3; the `[bootstrap.gcm]` table).
#[derive(Debug, Default, Clone, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcmArgs {
    /// GCM sender ID handed out by /bootstrap as DMAcc Push/GCM/SenderID; setting it offers GCM push, with
    /// RegURL `{public_url}/push/gcm/register` and UnRegURL `{public_url}/push/gcm/unregister`.
    #[arg(long = "gcm-sender-id", env = "OMADM_GCM_SENDER_ID", value_name = "ID")]
    pub sender_id: Option<String>,
    /// Push/GCM/RegParams: extra registration parameters, already URI-query encoded.
    #[arg(long = "gcm-reg-params", env = "OMADM_GCM_REG_PARAMS", value_name = "QUERY")]
    pub reg_params: Option<String>,
}

/// One DEFAULT command of the bootstrap account: `MOID=ServerURI` on the command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapDefault {
    pub moid: String,
    pub server_uri: String,
}

impl FromStr for BootstrapDefault {
    type Err = String;

    fn from_str(pair: &str) -> Result<Self, Self::Err> {
        match pair.split_once('=') {
            Some((moid, server_uri)) if !moid.trim().is_empty() && !server_uri.trim().is_empty() => {
                Ok(BootstrapDefault { moid: moid.trim().to_owned(), server_uri: server_uri.trim().to_owned() })
            }
            _ => Err(format!("{pair:?} must be MOID=ServerURI")),
        }
    }
}

/// Which command runs: the same roles, different defaults and requirements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `omadm serve`: everything on one node; the data dir unless shared backends are named.
    Serve,
    /// `omadm gateway`: one node of a cluster on shared backends.
    Gateway,
    /// `omadm notifier`: the notifier role alone, on shared backends.
    Notifier,
    /// `omadm campaigns`: the campaigns role alone, on shared backends.
    Campaigns,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Serve => "serve",
            Role::Gateway => "gateway",
            Role::Notifier => "notifier",
            Role::Campaigns => "campaigns",
        }
    }
}

/// Everything `omadm serve` runs with, after flags, environment, file and defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    pub role: Role,
    pub listen: String,
    /// `None`: no ops listener (`--ops-listen none`).
    pub ops_listen: Option<String>,
    pub data_dir: PathBuf,
    pub allow_shared_data_dir: bool,
    pub admin_token: Option<String>,
    pub public_url: Option<String>,
    pub max_commands_per_package: usize,
    pub session_timeout: Duration,
    pub inventory_max_age: Duration,
    pub max_attempts: u32,
    pub alert_mime_types: Vec<String>,
    pub max_body_bytes: usize,
    pub max_repository_bytes: u64,
    pub auto_register_password: Option<String>,
    pub log_format: LogFormat,
    pub realm: String,
    pub bootstrap: BootstrapConfig,
    pub workers: Option<usize>,
    pub request_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub topic_prefix: String,
    /// The store URL; the embedded store under the data dir unless one was given.
    pub store: String,
    /// The bus URL; the JSONL files under the data dir unless one was given.
    pub bus: String,
    /// The content engine's URL; the directory `content` under the data dir unless one was given.
    pub content: String,
    pub events_retention: omadm_core::bus::JsonlRetention,
    pub kafka_partitions: i32,
    pub kafka_replication: i32,
    pub kafka_settings: Vec<(String, String)>,
    pub internal_listen: Option<String>,
    pub internal_url: Option<String>,
    pub node_id: Option<String>,
    pub internal_token: Option<String>,
    pub nonce_key: Option<Vec<u8>>,
    pub heartbeat_interval: Duration,
    pub node_ttl: Duration,
    pub lease_ttl: Duration,
    pub forward_timeout: Duration,
    pub outbox_limit: u64,
    pub session_history: usize,
    pub session_rate: omadm_gateway::SessionRateLimit,
    pub uploads: omadm_gateway::UploadQuotaConfig,
    pub notifier: NotifierSettings,
    pub campaigns: CampaignsSettings,
}

impl Settings {
    /// Reads `--config` (if any) under the flags, then fills in defaults and checks the result.
    pub fn load(args: ServeArgs, role: Role) -> anyhow::Result<Settings> {
        let file: ServeArgs = settings::read_toml(args.config.as_deref())?;
        Settings::resolve(settings::layer(&args, &file)?, role)
    }

    /// The store is the embedded engine (under a directory of this host), which admits one process only.
    pub fn embedded_store(&self) -> bool {
        is_embedded_store(&self.store)
    }

    /// Both the store and the bus are the data dir's own (nothing named by --store or --bus).
    pub fn data_dir_only(&self) -> bool {
        self.store == default_store(&self.data_dir) && self.bus == default_bus(&self.data_dir)
    }

    /// The content engine is the data dir's own directory.
    pub fn content_in_data_dir(&self) -> bool {
        std::path::Path::new(self.content.strip_prefix("file://").unwrap_or(&self.content))
            == self.data_dir.join("content")
    }

    /// The bus is JSONL files in a directory of this host.
    pub fn jsonl_bus(&self) -> bool {
        !self.bus.starts_with("kafka://")
    }

    /// Defaults for what `args` (already layered) leaves unset, then the checks.
    pub fn resolve(args: ServeArgs, role: Role) -> anyhow::Result<Settings> {
        let data_dir = args.data_dir.unwrap_or_else(|| PathBuf::from("./omadm-data"));
        let store_given = args.store.is_some() || args.redis.is_some();
        let bus_given = args.bus.is_some() || args.kafka.is_some();
        let content_given = args.content.is_some();
        let content = args
            .content
            .map_or_else(|| data_dir.join("content").to_string_lossy().into_owned(), |url| url.trim().to_owned());
        let store = match (args.store, args.redis) {
            (Some(url), _) => url.trim().to_owned(),
            (None, Some(redis)) => with_scheme(&redis, "redis://"),
            (None, None) => default_store(&data_dir),
        };
        let bus = match (args.bus, args.kafka) {
            (Some(url), _) => url.trim().to_owned(),
            (None, Some(brokers)) => with_scheme(&brokers, "kafka://"),
            (None, None) => default_bus(&data_dir),
        };
        let retention = omadm_core::bus::JsonlRetention::default();
        let (rate, uploads) = (omadm_gateway::SessionRateLimit::default(), omadm_gateway::UploadQuotaConfig::default());
        let bootstrap = bootstrap_config(args.bootstrap)?;
        // The Package#0 SERVER-ID is the DMAcc ServerID devices were given; the inventory age is the gateway's.
        let notifier_args = NotifierArgs {
            server_id: args.notifier.server_id.or_else(|| Some(bootstrap.server_id.clone())),
            inventory_max_age: args.notifier.inventory_max_age.or(args.inventory_max_age),
            ..args.notifier
        };
        let notifier = NotifierSettings::resolve(&notifier_args)?;
        let campaigns = CampaignsSettings::resolve(&args.campaigns).map_err(anyhow::Error::msg)?;
        let settings = Settings {
            role,
            listen: args.listen.unwrap_or_else(|| "127.0.0.1:8080".to_owned()),
            ops_listen: match args.ops_listen {
                Some(address) if address.trim().eq_ignore_ascii_case("none") => None,
                Some(address) => Some(address.trim().to_owned()),
                None => Some(DEFAULT_OPS_LISTEN.to_owned()),
            },
            data_dir,
            allow_shared_data_dir: args.allow_shared_data_dir.unwrap_or(false),
            admin_token: args.admin_token,
            public_url: args.public_url.map(|url| url.trim_end_matches('/').to_owned()),
            max_commands_per_package: args.max_commands_per_package.unwrap_or(10),
            session_timeout: Duration::from_secs(args.session_timeout.unwrap_or(300)),
            inventory_max_age: Duration::from_secs(args.inventory_max_age.unwrap_or(86_400)),
            max_attempts: args.max_attempts.unwrap_or(5),
            alert_mime_types: args.alert_mime_types.unwrap_or_default(),
            max_body_bytes: args.max_body_bytes.unwrap_or(1 << 20),
            max_repository_bytes: args.max_repository_bytes.unwrap_or(4 << 30),
            auto_register_password: args.auto_register_password,
            log_format: args.log_format.unwrap_or(LogFormat::Text),
            realm: args.realm.unwrap_or_else(|| omadm_core::auth::DEFAULT_REALM.to_owned()),
            bootstrap,
            workers: args.workers,
            request_timeout: Duration::from_secs(args.request_timeout.unwrap_or(5)),
            shutdown_timeout: Duration::from_secs(args.shutdown_timeout.unwrap_or(30)),
            topic_prefix: args.topic_prefix.unwrap_or_else(|| "omadm.".to_owned()),
            store,
            bus,
            content,
            events_retention: omadm_core::bus::JsonlRetention {
                segment_bytes: args.events_segment_bytes.unwrap_or(retention.segment_bytes),
                retained_segments: args.events_retained_segments.unwrap_or(retention.retained_segments),
            },
            kafka_partitions: args.kafka_partitions.unwrap_or(6),
            kafka_replication: args.kafka_replication.unwrap_or(1),
            kafka_settings: args
                .kafka_settings
                .unwrap_or_default()
                .iter()
                .map(|pair| parse_kafka_setting(pair))
                .collect::<anyhow::Result<_>>()?,
            internal_listen: args.internal_listen,
            internal_url: args.internal_url.map(|url| url.trim_end_matches('/').to_owned()),
            node_id: args.node_id,
            internal_token: args.internal_token,
            nonce_key: match args.nonce_key {
                Some(text) => Some(hex::decode(text.trim()).context("--nonce-key must be hex")?),
                None => None,
            },
            heartbeat_interval: Duration::from_millis(args.heartbeat_interval_ms.unwrap_or(1_000)),
            node_ttl: Duration::from_millis(args.node_ttl_ms.unwrap_or(5_000)),
            lease_ttl: Duration::from_millis(args.lease_ttl_ms.unwrap_or(30_000)),
            forward_timeout: Duration::from_millis(args.forward_timeout_ms.unwrap_or(10_000)),
            outbox_limit: args
                .outbox_limit
                .unwrap_or(omadm_core::store::StoreOptions::default().outbox_limit_per_shard),
            session_history: args
                .session_history
                .unwrap_or(omadm_core::store::StoreOptions::default().session_history_per_device),
            session_rate: omadm_gateway::SessionRateLimit {
                window: args.session_rate_window_ms.unwrap_or(rate.window),
                max_sessions_per_device: args.max_sessions_per_device.unwrap_or(rate.max_sessions_per_device),
            },
            uploads: omadm_gateway::UploadQuotaConfig {
                max_item_bytes: args.max_upload_bytes.unwrap_or(uploads.max_item_bytes),
                max_bytes_per_device: args.max_upload_bytes_per_device.unwrap_or(uploads.max_bytes_per_device),
                max_items_per_device: args.max_uploads_per_device.unwrap_or(uploads.max_items_per_device),
                max_total_bytes: args.max_upload_total_bytes.unwrap_or(uploads.max_total_bytes),
            },
            notifier,
            campaigns,
        };
        settings.check(store_given, bus_given, content_given)?;
        Ok(settings)
    }

    fn check(&self, store_given: bool, bus_given: bool, content_given: bool) -> anyhow::Result<()> {
        if self.max_commands_per_package == 0 {
            bail!("--max-commands-per-package must be at least 1");
        }
        if self.session_timeout.is_zero() {
            bail!("--session-timeout must be at least 1 second");
        }
        if self.max_attempts == 0 {
            bail!("--max-attempts must be at least 1");
        }
        if self.max_body_bytes < 1024 {
            bail!("--max-body-bytes must be at least 1024");
        }
        if self.workers == Some(0) {
            bail!("--workers must be at least 1");
        }
        if self.admin_token.as_deref().is_some_and(|token| token.trim().len() < 8) {
            bail!("--admin-token must be at least 8 characters");
        }
        if self.auto_register_password.as_deref().is_some_and(str::is_empty) {
            bail!("--auto-register-password must not be empty");
        }
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            bail!("--public-url must start with http:// or https://, got {url:?}");
        }
        if let Some(url) = &self.internal_url
            && !url.starts_with("http://")
        {
            bail!("--internal-url must start with http://, got {url:?}");
        }
        if self.internal_token.as_deref().is_some_and(|token| token.trim().len() < 16) {
            bail!("--internal-token must be at least 16 characters");
        }
        if self.nonce_key.as_ref().is_some_and(|key| key.len() < 16) {
            bail!("--nonce-key must be at least 16 bytes (32 hex digits)");
        }
        if self.node_id.as_deref().is_some_and(|id| id.trim().is_empty() || id.chars().any(char::is_whitespace)) {
            bail!("--node-id must be non-empty without spaces");
        }
        if self.heartbeat_interval.is_zero() || self.node_ttl <= self.heartbeat_interval {
            bail!("--node-ttl-ms must be longer than --heartbeat-interval-ms, and both above 0");
        }
        if self.lease_ttl.is_zero() || self.forward_timeout.is_zero() {
            bail!("--lease-ttl-ms and --forward-timeout-ms must be above 0");
        }
        if self.events_retention.segment_bytes == 0 {
            bail!("--events-segment-bytes must be above 0");
        }
        if self.kafka_partitions < 1 || self.kafka_replication < 1 {
            bail!("--kafka-partitions and --kafka-replication must be at least 1");
        }
        if self.outbox_limit == 0 {
            bail!("--outbox-limit must be at least 1");
        }
        if self.session_history == 0 {
            bail!("--session-history must be at least 1");
        }
        if self.session_rate.window == 0 || self.session_rate.max_sessions_per_device == 0 {
            bail!("--session-rate-window-ms and --max-sessions-per-device must be at least 1");
        }
        if self.uploads.max_item_bytes == 0 {
            bail!("--max-upload-bytes must be at least 1");
        }
        // Port 0 twice asks for two different free ports.
        if self.ops_listen.as_deref().is_some_and(|address| address == self.listen && !address.ends_with(":0")) {
            bail!("--ops-listen must differ from --listen: /metrics must not reach devices");
        }
        // What a role on shared backends cannot run without; `serve` has a default for everything.
        let required: &[(&str, bool)] = match self.role {
            Role::Serve => &[],
            Role::Gateway => &[
                ("--store", !store_given),
                ("--bus", !bus_given),
                ("--content", !content_given),
                ("--admin-token", self.admin_token.is_none()),
                ("--public-url", self.public_url.is_none()),
                ("--internal-listen", self.internal_listen.is_none()),
            ],
            Role::Notifier | Role::Campaigns => &[("--store", !store_given), ("--bus", !bus_given)],
        };
        let missing: Vec<&str> = required.iter().filter_map(|(flag, absent)| absent.then_some(*flag)).collect();
        let role = self.role.name();
        if !missing.is_empty() {
            bail!("omadm {role} needs {}", missing.join(", "));
        }
        if self.role != Role::Serve && self.embedded_store() {
            bail!("omadm {role} needs a shared store (redis:// or redis+cluster://), not {}", self.store);
        }
        Ok(())
    }
}

fn default_store(data_dir: &std::path::Path) -> String {
    data_dir.join("store").to_string_lossy().into_owned()
}

fn default_bus(data_dir: &std::path::Path) -> String {
    data_dir.join("events").to_string_lossy().into_owned()
}

/// Whether a store URL names the embedded engine.
fn is_embedded_store(url: &str) -> bool {
    !(url.starts_with("redis://") || url.starts_with("redis+cluster://"))
}

/// `given` with `scheme` in front unless it has one (`--redis host:port`, `--kafka host:9092,host:9092`).
fn with_scheme(given: &str, scheme: &str) -> String {
    let given = given.trim();
    if given.contains("://") { given.to_owned() } else { format!("{scheme}{given}") }
}

/// `KEY=VALUE` of `--kafka-setting`.
fn parse_kafka_setting(pair: &str) -> anyhow::Result<(String, String)> {
    match pair.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_owned(), value.trim().to_owned())),
        _ => bail!("--kafka-setting {pair:?} must be KEY=VALUE"),
    }
}

fn bootstrap_config(args: BootstrapArgs) -> anyhow::Result<BootstrapConfig> {
    Ok(BootstrapConfig {
        server_id: args.server_id.unwrap_or_else(|| "omadm".to_owned()),
        server_name: args.server_name.unwrap_or_else(|| "omadm".to_owned()),
        permitted_moids: args.permitted_moids.unwrap_or_else(|| vec!["*".to_owned()]),
        defaults: args
            .defaults
            .unwrap_or_default()
            .into_iter()
            .map(|default| (default.server_uri, default.moid))
            .collect(),
        gcm: gcm_push(args.gcm),
    })
}

/// Push/GCM of the bootstrap account: offered when a sender ID is set; its URLs are the routes the gateway mounts.
fn gcm_push(args: GcmArgs) -> Option<GcmOffer> {
    let sender_id = args.sender_id.filter(|id| !id.trim().is_empty())?;
    Some(GcmOffer { sender_id, registration_parameters: args.reg_params.filter(|params| !params.is_empty()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_file(text: &str) -> ServeArgs {
        toml::from_str(text).unwrap()
    }

    fn layered(args: ServeArgs, file: &str, role: Role) -> anyhow::Result<Settings> {
        Settings::resolve(settings::layer(&args, &from_file(file)).unwrap(), role)
    }

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        let file = r#"
            listen = "0.0.0.0:9000"
            max_commands_per_package = 3
            session_timeout = 60
            [bootstrap]
            server_id = "dms.example.com"
            defaults = [{ moid = "urn:oma:mo:oma-dm-devinfo:1.2", server_uri = "https://dms.example.com/repo/devinfo" }]
            "#;
        let args = ServeArgs { listen: Some("127.0.0.1:7000".to_owned()), ..ServeArgs::default() };
        let settings = layered(args, file, Role::Serve).unwrap();
        assert_eq!(settings.listen, "127.0.0.1:7000");
        assert_eq!(settings.max_commands_per_package, 3);
        assert_eq!(settings.session_timeout, Duration::from_secs(60));
        assert_eq!(settings.bootstrap.server_id, "dms.example.com");
        assert_eq!(settings.bootstrap.permitted_moids, vec!["*".to_owned()]);
        assert_eq!(
            settings.bootstrap.defaults,
            vec![("https://dms.example.com/repo/devinfo".to_owned(), "urn:oma:mo:oma-dm-devinfo:1.2".to_owned())]
        );
        assert_eq!(settings.data_dir, PathBuf::from("./omadm-data"));
        assert_eq!(settings.store, "./omadm-data/store");
        assert_eq!(settings.bus, "./omadm-data/events");
        assert!(settings.embedded_store() && settings.jsonl_bus() && settings.data_dir_only());
        assert_eq!(settings.content, "./omadm-data/content");
        assert!(settings.content_in_data_dir());
        assert_eq!(settings.max_repository_bytes, 4 << 30);
        assert_eq!(settings.ops_listen.as_deref(), Some(DEFAULT_OPS_LISTEN));
        assert!(!settings.allow_shared_data_dir);
        assert_eq!(settings.max_body_bytes, 1 << 20);
    }

    #[test]
    fn gcm_push_is_offered_by_a_sender_id_at_the_mounted_urls() {
        assert_eq!(layered(ServeArgs::default(), "", Role::Serve).unwrap().bootstrap.gcm, None);
        let file = "public_url = \"https://dm.example.com\"\n[bootstrap.gcm]\nsender_id = \"42\"\n";
        let mut args = ServeArgs::default();
        args.bootstrap.gcm.reg_params = Some("fleet=meters".to_owned());
        let settings = layered(args, file, Role::Serve).unwrap();
        let gcm = settings.bootstrap.gcm.unwrap().gcm_push(settings.public_url.as_deref().unwrap());
        assert_eq!(gcm.sender_id, "42");
        assert_eq!(gcm.registration_url, "https://dm.example.com/push/gcm/register", "the route mounted");
        assert_eq!(gcm.unregistration_url, "https://dm.example.com/push/gcm/unregister");
        assert_eq!(gcm.registration_parameters.as_deref(), Some("fleet=meters"));
        assert!(toml::from_str::<ServeArgs>("[bootstrap.gcm]\nreg_url = \"https://x/\"\n").is_err(), "not a setting");
    }

    #[test]
    fn unknown_file_fields_and_bad_values_are_refused() {
        assert!(toml::from_str::<ServeArgs>("listn = \"x\"").is_err());
        assert!(toml::from_str::<ServeArgs>("[bootstrap]\nserver_idd = \"x\"").is_err());
        // `config` is a flag only: a file cannot name another file.
        assert!(toml::from_str::<ServeArgs>("config = \"other.toml\"").is_err());
        let zero = ServeArgs { max_commands_per_package: Some(0), ..ServeArgs::default() };
        assert!(layered(zero, "", Role::Serve).is_err());
        assert!("no-equals".parse::<BootstrapDefault>().is_err());
        assert_eq!(
            "urn:x=https://d/x".parse::<BootstrapDefault>(),
            Ok(BootstrapDefault { moid: "urn:x".to_owned(), server_uri: "https://d/x".to_owned() })
        );
        let bad_url = ServeArgs { public_url: Some("dms.example.com".to_owned()), ..ServeArgs::default() };
        assert!(layered(bad_url, "", Role::Serve).is_err());
        let same_port = ServeArgs {
            listen: Some("127.0.0.1:8080".to_owned()),
            ops_listen: Some("127.0.0.1:8080".to_owned()),
            ..ServeArgs::default()
        };
        assert!(layered(same_port, "", Role::Serve).is_err());
        let no_ops = ServeArgs { ops_listen: Some("none".to_owned()), ..ServeArgs::default() };
        assert_eq!(layered(no_ops, "", Role::Serve).unwrap().ops_listen, None);
    }

    #[test]
    fn a_gateway_needs_shared_backends_and_names_what_is_missing() {
        let error = layered(ServeArgs::default(), "", Role::Gateway).unwrap_err();
        assert_eq!(
            error.to_string(),
            "omadm gateway needs --store, --bus, --content, --admin-token, --public-url, --internal-listen"
        );
        let file = r#"
            redis = "10.0.0.2:6379"
            kafka = "10.0.0.5:9092,10.0.0.6:9092"
            content = "s3://firmware/omadm?region=eu-central-1"
            internal_listen = "10.0.0.7:8081"
            public_url = "https://dm.example.com/"
            kafka_settings = ["security.protocol=SASL_SSL"]
            node_ttl_ms = 8000
            "#;
        let args = ServeArgs { admin_token: Some("0123456789abcdef".to_owned()), ..ServeArgs::default() };
        let settings = layered(args.clone(), file, Role::Gateway).unwrap();
        assert_eq!(settings.store, "redis://10.0.0.2:6379");
        assert_eq!(settings.bus, "kafka://10.0.0.5:9092,10.0.0.6:9092");
        assert_eq!(settings.content, "s3://firmware/omadm?region=eu-central-1");
        assert!(!settings.content_in_data_dir());
        assert!(!settings.embedded_store() && !settings.jsonl_bus());
        assert_eq!(settings.public_url.as_deref(), Some("https://dm.example.com"));
        assert_eq!(settings.kafka_settings, vec![("security.protocol".to_owned(), "SASL_SSL".to_owned())]);
        assert_eq!(settings.node_ttl, Duration::from_secs(8));
        assert_eq!(settings.heartbeat_interval, Duration::from_secs(1));
        // URLs by their own names: kept as given.
        let by_url = r#"
            store = "redis+cluster://a:1,b:2"
            bus = "file:///var/lib/omadm/events"
            content = "file:///mnt/shared/omadm-content"
            internal_listen = "10.0.0.7:8081"
            public_url = "https://dm.example.com"
            "#;
        let settings = layered(args.clone(), by_url, Role::Gateway).unwrap();
        assert_eq!(settings.store, "redis+cluster://a:1,b:2");
        assert_eq!(settings.bus, "file:///var/lib/omadm/events");
        // A gateway shares its store with other nodes: the embedded engine cannot be shared.
        let embedded = by_url.replace("redis+cluster://a:1,b:2", "/var/lib/omadm/store");
        let error = layered(args, &embedded, Role::Gateway).unwrap_err().to_string();
        assert!(error.starts_with("omadm gateway needs a shared store"), "{error}");
    }

    #[test]
    fn the_notifier_signs_as_the_server_devices_were_bootstrapped_with() {
        let mut args = ServeArgs::default();
        args.bootstrap.server_id = Some("dms.example.com".to_owned());
        args.inventory_max_age = Some(3600);
        let settings = layered(args, "[notifier]\ndedup_window = 5\n", Role::Serve).unwrap();
        assert_eq!(settings.notifier.server_id, "dms.example.com");
        assert_eq!(settings.notifier.inventory_max_age, Duration::from_secs(3600));
        assert_eq!(settings.notifier.dedup_window, Duration::from_secs(5));
        let error = layered(ServeArgs::default(), "", Role::Notifier).unwrap_err().to_string();
        assert_eq!(error, "omadm notifier needs --store, --bus");
        let alone = layered(
            ServeArgs::default(),
            "store = \"redis://10.0.0.2:6379\"\nbus = \"kafka://10.0.0.3:9092\"\n",
            Role::Notifier,
        );
        assert!(alone.is_ok(), "{alone:?}");
    }

    #[test]
    fn cluster_settings_are_checked() {
        let ttl_below_interval =
            ServeArgs { heartbeat_interval_ms: Some(2_000), node_ttl_ms: Some(1_000), ..ServeArgs::default() };
        assert!(layered(ttl_below_interval, "", Role::Serve).is_err());
        let short_token = ServeArgs { internal_token: Some("short".to_owned()), ..ServeArgs::default() };
        assert!(layered(short_token, "", Role::Serve).is_err());
        let not_hex = ServeArgs { nonce_key: Some("zz".to_owned()), ..ServeArgs::default() };
        assert!(layered(not_hex, "", Role::Serve).is_err());
        let bad_setting = ServeArgs { kafka_settings: Some(vec!["novalue".to_owned()]), ..ServeArgs::default() };
        assert!(layered(bad_setting, "", Role::Serve).is_err());
    }
}
