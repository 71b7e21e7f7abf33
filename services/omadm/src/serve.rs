//! `omadm serve` and `omadm gateway`: the DM server on one node, alone (embedded store, JSONL events) or in a cluster.
//!
//! ```text
//! $ omadm serve --listen 127.0.0.1:8080 --data-dir ./omadm-data
//! omadm serve: listening on http://127.0.0.1:8080 (devices POST http://127.0.0.1:8080/dm)
//! admin token: 3f9c...   (stored in ./omadm-data/admin-token)
//! try: curl -H 'Authorization: Bearer 3f9c...' http://127.0.0.1:8080/api/v1/devices
//!
//! $ omadm gateway --listen 0.0.0.0:8080 --internal-listen 10.0.0.7:8081 --redis redis://10.0.0.2:6379 \
//!     --kafka 10.0.0.3:9092 --admin-token "$TOKEN" --public-url https://dm.example.com
//! ```
//!
//! Both run the same roles (device edge, operator API, outbox relay) through
//! the same code: `serve` on the data dir unless `--redis`/`--kafka` name
//! shared backends; `gateway` always on shared backends, as one node of a
//! cluster (membership, ownership, forwarding; docs/cluster.md).
//! Settings come from flags, then `OMADM_*` environment variables, then the
//! TOML file of `--config`, then defaults (docs/configuration.md lists each).
//! SIGTERM or SIGINT stops it gracefully: `/readyz` turns 503, the listeners
//! close, packages in flight finish, the node leaves the cluster, the outbox
//! is drained to the bus, and the store is closed; the exit code is 0.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use omadm_core::bus::BusOptions;
use omadm_core::bus::relay::{OutboxRelay, RelayConfig};
use omadm_core::session::SessionConfig;
use omadm_gateway::cluster::{Cluster, ClusterConfig, random_node_id};
use omadm_gateway::device::{DeviceEdge, DeviceEdgeOptions};
use omadm_gateway::server::{self, ServerOptions};
use omadm_gateway::{AppState, BootstrapConfig, GatewayConfig};
use omadm_proto::mo::GcmPush;
use serde::Deserialize;

/// Where the operator API token is kept when it is generated (0600).
const ADMIN_TOKEN_FILE: &str = "admin-token";
/// Where the Digest nonce key is kept (0600).
const NONCE_KEY_FILE: &str = "nonce-key";

/// `omadm serve` flags; every one also reads an `OMADM_*` variable and a `--config` TOML field.
#[derive(Debug, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (flags and environment win over it).
    #[arg(long, env = "OMADM_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "OMADM_LISTEN", value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Directory of the store, the event files and generated secrets [default: ./omadm-data].
    #[arg(long, env = "OMADM_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
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
    /// Largest repository item, in bytes [default: 16777216].
    #[arg(long, env = "OMADM_MAX_REPOSITORY_BYTES", value_name = "BYTES")]
    pub max_repository_bytes: Option<usize>,
    /// Register an unknown device on its first session when it authenticates with this password [default: off].
    #[arg(long, env = "OMADM_AUTO_REGISTER_PASSWORD", value_name = "PASSWORD", hide_env_values = true)]
    pub auto_register_password: Option<String>,
    /// Log lines as text or JSON, on stderr [default: text].
    #[arg(long, env = "OMADM_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// HTTP authentication realm of devices [default: omadm].
    #[arg(long, env = "OMADM_REALM", value_name = "REALM")]
    pub realm: Option<String>,
    /// DMAcc ServerID of this server, handed out by /bootstrap and used for DMDAC checks [default: omadm].
    #[arg(long, env = "OMADM_SERVER_ID", value_name = "ID")]
    pub server_id: Option<String>,
    /// DMAcc Name handed out by /bootstrap [default: omadm].
    #[arg(long, env = "OMADM_SERVER_NAME", value_name = "NAME")]
    pub server_name: Option<String>,
    /// MOIDs this server may manage (DMAcc Permissions), comma separated [default: *].
    #[arg(long, env = "OMADM_PERMITTED_MOIDS", value_name = "MOIDS", value_delimiter = ',')]
    pub permitted_moids: Option<Vec<String>>,
    /// A DEFAULT command /bootstrap hands out, as MOID=ServerURI; repeatable.
    #[arg(
        long = "bootstrap-default",
        env = "OMADM_BOOTSTRAP_DEFAULTS",
        value_name = "MOID=SERVERURI",
        value_delimiter = ','
    )]
    pub bootstrap_defaults: Option<Vec<String>>,
    /// GCM sender ID handed out by /bootstrap as DMAcc Push/GCM/SenderID (D.2.3); setting it offers GCM push.
    #[arg(long, env = "OMADM_GCM_SENDER_ID", value_name = "ID")]
    pub gcm_sender_id: Option<String>,
    /// Push/GCM/RegURL: where devices register their GCM RegId (required with --gcm-sender-id).
    #[arg(long, env = "OMADM_GCM_REG_URL", value_name = "URL")]
    pub gcm_reg_url: Option<String>,
    /// Push/GCM/UnRegURL: where devices unregister (required with --gcm-sender-id).
    #[arg(long, env = "OMADM_GCM_UNREG_URL", value_name = "URL")]
    pub gcm_unreg_url: Option<String>,
    /// Push/GCM/RegParams: extra registration parameters, already URI-query encoded.
    #[arg(long, env = "OMADM_GCM_REG_PARAMS", value_name = "QUERY")]
    pub gcm_reg_params: Option<String>,
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
    /// Shared store: redis://HOST:PORT, redis+cluster://HOST:PORT,HOST:PORT, or a comma list of redis:// URLs
    /// [serve default: the embedded store under the data dir; required by gateway].
    #[arg(long, env = "OMADM_REDIS", value_name = "URL")]
    pub redis: Option<String>,
    /// Shared event bus: Kafka brokers HOST:PORT[,HOST:PORT] (or kafka://...), or file:///DIR for JSONL files
    /// [serve default: {data-dir}/events; required by gateway].
    #[arg(long, env = "OMADM_KAFKA", value_name = "BROKERS")]
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
    /// the admin token with --redis].
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
}

/// Which command runs: the same roles, different defaults and requirements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `omadm serve`: everything on one node; the data dir unless shared backends are named.
    Serve,
    /// `omadm gateway`: one node of a cluster on shared backends.
    Gateway,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Serve => "serve",
            Role::Gateway => "gateway",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The `--config` TOML file: the same settings as the flags, snake_case, bootstrap in its own table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    admin_token: Option<String>,
    public_url: Option<String>,
    max_commands_per_package: Option<usize>,
    session_timeout: Option<u64>,
    inventory_max_age: Option<u64>,
    max_attempts: Option<u32>,
    alert_mime_types: Option<Vec<String>>,
    max_body_bytes: Option<usize>,
    max_repository_bytes: Option<usize>,
    auto_register_password: Option<String>,
    log_format: Option<LogFormat>,
    realm: Option<String>,
    workers: Option<usize>,
    request_timeout: Option<u64>,
    shutdown_timeout: Option<u64>,
    topic_prefix: Option<String>,
    redis: Option<String>,
    kafka: Option<String>,
    events_segment_bytes: Option<u64>,
    events_retained_segments: Option<usize>,
    kafka_partitions: Option<i32>,
    kafka_replication: Option<i32>,
    kafka_settings: Option<Vec<String>>,
    internal_listen: Option<String>,
    internal_url: Option<String>,
    node_id: Option<String>,
    internal_token: Option<String>,
    nonce_key: Option<String>,
    heartbeat_interval_ms: Option<u64>,
    node_ttl_ms: Option<u64>,
    lease_ttl_ms: Option<u64>,
    forward_timeout_ms: Option<u64>,
    outbox_limit: Option<u64>,
    #[serde(default)]
    bootstrap: FileBootstrap,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBootstrap {
    server_id: Option<String>,
    server_name: Option<String>,
    permitted_moids: Option<Vec<String>>,
    defaults: Option<Vec<FileDefault>>,
    gcm: Option<FileGcm>,
}

/// `[bootstrap.gcm]`: DMAcc Push/GCM handed out by /bootstrap.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGcm {
    sender_id: Option<String>,
    reg_url: Option<String>,
    unreg_url: Option<String>,
    reg_params: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDefault {
    moid: String,
    server_uri: String,
}

/// Everything `omadm serve` runs with, after flags, environment, file and defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: String,
    pub data_dir: PathBuf,
    pub admin_token: Option<String>,
    pub public_url: Option<String>,
    pub max_commands_per_package: usize,
    pub session_timeout: Duration,
    pub inventory_max_age: Duration,
    pub max_attempts: u32,
    pub alert_mime_types: Vec<String>,
    pub max_body_bytes: usize,
    pub max_repository_bytes: usize,
    pub auto_register_password: Option<String>,
    pub log_format: LogFormat,
    pub realm: String,
    pub bootstrap: BootstrapConfig,
    pub workers: Option<usize>,
    pub request_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub topic_prefix: String,
    pub role: Role,
    /// The store URL given by --redis; `None` for the embedded store under the data dir.
    pub redis: Option<String>,
    /// The bus URL given by --kafka; `None` for the JSONL files under the data dir.
    pub bus: Option<String>,
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
}

/// Merges flags (with their environment variables) over the file over the defaults, and checks the result.
fn resolve_settings(args: ServeArgs, file: FileConfig, role: Role) -> anyhow::Result<Settings> {
    let gcm = resolve_gcm(&args, file.bootstrap.gcm.as_ref())?;
    let defaults: Option<Vec<(String, String)>> = match args.bootstrap_defaults {
        Some(pairs) => Some(pairs.iter().map(|pair| parse_default(pair)).collect::<anyhow::Result<_>>()?),
        None => file
            .bootstrap
            .defaults
            .map(|defaults| defaults.into_iter().map(|default| (default.server_uri, default.moid)).collect()),
    };
    let settings = Settings {
        listen: args.listen.or(file.listen).unwrap_or_else(|| "127.0.0.1:8080".to_owned()),
        data_dir: args.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("./omadm-data")),
        admin_token: args.admin_token.or(file.admin_token),
        public_url: args.public_url.or(file.public_url).map(|url| url.trim_end_matches('/').to_owned()),
        max_commands_per_package: args.max_commands_per_package.or(file.max_commands_per_package).unwrap_or(10),
        session_timeout: Duration::from_secs(args.session_timeout.or(file.session_timeout).unwrap_or(300)),
        inventory_max_age: Duration::from_secs(args.inventory_max_age.or(file.inventory_max_age).unwrap_or(86_400)),
        max_attempts: args.max_attempts.or(file.max_attempts).unwrap_or(5),
        alert_mime_types: args.alert_mime_types.or(file.alert_mime_types).unwrap_or_default(),
        max_body_bytes: args.max_body_bytes.or(file.max_body_bytes).unwrap_or(1 << 20),
        max_repository_bytes: args.max_repository_bytes.or(file.max_repository_bytes).unwrap_or(16 << 20),
        auto_register_password: args.auto_register_password.or(file.auto_register_password),
        log_format: args.log_format.or(file.log_format).unwrap_or(LogFormat::Text),
        realm: args.realm.or(file.realm).unwrap_or_else(|| omadm_core::auth::DEFAULT_REALM.to_owned()),
        bootstrap: BootstrapConfig {
            server_id: args.server_id.or(file.bootstrap.server_id).unwrap_or_else(|| "omadm".to_owned()),
            server_name: args.server_name.or(file.bootstrap.server_name).unwrap_or_else(|| "omadm".to_owned()),
            permitted_moids: args
                .permitted_moids
                .or(file.bootstrap.permitted_moids)
                .unwrap_or_else(|| vec!["*".to_owned()]),
            defaults: defaults.unwrap_or_default(),
            gcm,
        },
        workers: args.workers.or(file.workers),
        request_timeout: Duration::from_secs(args.request_timeout.or(file.request_timeout).unwrap_or(5)),
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout.or(file.shutdown_timeout).unwrap_or(30)),
        topic_prefix: args.topic_prefix.or(file.topic_prefix).unwrap_or_else(|| "omadm.".to_owned()),
        role,
        redis: args.redis.or(file.redis).map(|url| redis_url(&url)),
        bus: args.kafka.or(file.kafka).map(|brokers| bus_url(&brokers)),
        events_retention: omadm_core::bus::JsonlRetention {
            segment_bytes: args
                .events_segment_bytes
                .or(file.events_segment_bytes)
                .unwrap_or(omadm_core::bus::JsonlRetention::default().segment_bytes),
            retained_segments: args
                .events_retained_segments
                .or(file.events_retained_segments)
                .unwrap_or(omadm_core::bus::JsonlRetention::default().retained_segments),
        },
        kafka_partitions: args.kafka_partitions.or(file.kafka_partitions).unwrap_or(6),
        kafka_replication: args.kafka_replication.or(file.kafka_replication).unwrap_or(1),
        kafka_settings: args
            .kafka_settings
            .or(file.kafka_settings)
            .unwrap_or_default()
            .iter()
            .map(|pair| parse_kafka_setting(pair))
            .collect::<anyhow::Result<_>>()?,
        internal_listen: args.internal_listen.or(file.internal_listen),
        internal_url: args.internal_url.or(file.internal_url).map(|url| url.trim_end_matches('/').to_owned()),
        node_id: args.node_id.or(file.node_id),
        internal_token: args.internal_token.or(file.internal_token),
        nonce_key: match args.nonce_key.or(file.nonce_key) {
            Some(text) => Some(hex::decode(text.trim()).context("--nonce-key must be hex")?),
            None => None,
        },
        heartbeat_interval: Duration::from_millis(
            args.heartbeat_interval_ms.or(file.heartbeat_interval_ms).unwrap_or(1_000),
        ),
        node_ttl: Duration::from_millis(args.node_ttl_ms.or(file.node_ttl_ms).unwrap_or(5_000)),
        lease_ttl: Duration::from_millis(args.lease_ttl_ms.or(file.lease_ttl_ms).unwrap_or(30_000)),
        forward_timeout: Duration::from_millis(args.forward_timeout_ms.or(file.forward_timeout_ms).unwrap_or(10_000)),
        outbox_limit: args
            .outbox_limit
            .or(file.outbox_limit)
            .unwrap_or(omadm_core::store::StoreOptions::default().outbox_limit_per_shard),
    };
    check_settings(&settings)?;
    Ok(settings)
}

/// Push/GCM of the bootstrap account: offered when a sender ID is set, which then needs both URLs.
fn resolve_gcm(args: &ServeArgs, file: Option<&FileGcm>) -> anyhow::Result<Option<GcmPush>> {
    let pick = |flag: &Option<String>, field: fn(&FileGcm) -> &Option<String>| {
        flag.clone().or_else(|| file.and_then(|file| field(file).clone()))
    };
    let Some(sender_id) = pick(&args.gcm_sender_id, |file| &file.sender_id) else {
        return Ok(None);
    };
    let (Some(registration_url), Some(unregistration_url)) =
        (pick(&args.gcm_reg_url, |file| &file.reg_url), pick(&args.gcm_unreg_url, |file| &file.unreg_url))
    else {
        bail!("--gcm-sender-id needs --gcm-reg-url and --gcm-unreg-url");
    };
    Ok(Some(GcmPush {
        sender_id,
        registration_url,
        unregistration_url,
        registration_parameters: pick(&args.gcm_reg_params, |file| &file.reg_params),
        extensions: None,
    }))
}

fn check_settings(settings: &Settings) -> anyhow::Result<()> {
    if settings.max_commands_per_package == 0 {
        bail!("--max-commands-per-package must be at least 1");
    }
    if settings.session_timeout.is_zero() {
        bail!("--session-timeout must be at least 1 second");
    }
    if settings.max_attempts == 0 {
        bail!("--max-attempts must be at least 1");
    }
    if settings.max_body_bytes < 1024 {
        bail!("--max-body-bytes must be at least 1024");
    }
    if settings.workers == Some(0) {
        bail!("--workers must be at least 1");
    }
    if settings.admin_token.as_deref().is_some_and(|token| token.trim().len() < 8) {
        bail!("--admin-token must be at least 8 characters");
    }
    if settings.auto_register_password.as_deref().is_some_and(str::is_empty) {
        bail!("--auto-register-password must not be empty");
    }
    if let Some(url) = &settings.public_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        bail!("--public-url must start with http:// or https://, got {url:?}");
    }
    if let Some(url) = &settings.internal_url
        && !url.starts_with("http://")
    {
        bail!("--internal-url must start with http://, got {url:?}");
    }
    if settings.internal_token.as_deref().is_some_and(|token| token.trim().len() < 16) {
        bail!("--internal-token must be at least 16 characters");
    }
    if settings.nonce_key.as_ref().is_some_and(|key| key.len() < 16) {
        bail!("--nonce-key must be at least 16 bytes (32 hex digits)");
    }
    if settings.node_id.as_deref().is_some_and(|id| id.trim().is_empty() || id.chars().any(char::is_whitespace)) {
        bail!("--node-id must be non-empty without spaces");
    }
    if settings.heartbeat_interval.is_zero() || settings.node_ttl <= settings.heartbeat_interval {
        bail!("--node-ttl-ms must be longer than --heartbeat-interval-ms, and both above 0");
    }
    if settings.lease_ttl.is_zero() || settings.forward_timeout.is_zero() {
        bail!("--lease-ttl-ms and --forward-timeout-ms must be above 0");
    }
    if settings.events_retention.segment_bytes == 0 {
        bail!("--events-segment-bytes must be above 0");
    }
    if settings.kafka_partitions < 1 || settings.kafka_replication < 1 {
        bail!("--kafka-partitions and --kafka-replication must be at least 1");
    }
    if settings.outbox_limit == 0 {
        bail!("--outbox-limit must be at least 1");
    }
    if settings.role == Role::Gateway {
        let missing: Vec<&str> = [
            ("--redis", settings.redis.is_none()),
            ("--kafka", settings.bus.is_none()),
            ("--admin-token", settings.admin_token.is_none()),
            ("--public-url", settings.public_url.is_none()),
            ("--internal-listen", settings.internal_listen.is_none()),
        ]
        .into_iter()
        .filter_map(|(flag, absent)| absent.then_some(flag))
        .collect();
        if !missing.is_empty() {
            bail!("omadm gateway needs {}", missing.join(", "));
        }
    }
    Ok(())
}

/// `KEY=VALUE` of `--kafka-setting`.
fn parse_kafka_setting(pair: &str) -> anyhow::Result<(String, String)> {
    match pair.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_owned(), value.trim().to_owned())),
        _ => bail!("--kafka-setting {pair:?} must be KEY=VALUE"),
    }
}

/// `--redis` as a store URL: a bare `host:port` means `redis://host:port`.
fn redis_url(given: &str) -> String {
    let given = given.trim();
    if given.contains("://") { given.to_owned() } else { format!("redis://{given}") }
}

/// `--kafka` as a bus URL: bare brokers (`host:9092,host:9092`) mean `kafka://host:9092,host:9092`.
fn bus_url(given: &str) -> String {
    let given = given.trim();
    if given.contains("://") { given.to_owned() } else { format!("kafka://{given}") }
}

/// A secret every node derives alike from the admin token they share, for `purpose`.
fn derived_secret(admin_token: &str, purpose: &str) -> Vec<u8> {
    use sha2::{Digest as _, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(b"omadm:");
    hasher.update(purpose.as_bytes());
    hasher.update([0u8]);
    hasher.update(admin_token.as_bytes());
    hasher.finalize().to_vec()
}

/// `MOID=ServerURI` of `--bootstrap-default` as the (ServerURI, MOID) pair of `BootstrapConfig::defaults`.
fn parse_default(pair: &str) -> anyhow::Result<(String, String)> {
    match pair.split_once('=') {
        Some((moid, server_uri)) if !moid.trim().is_empty() && !server_uri.trim().is_empty() => {
            Ok((server_uri.trim().to_owned(), moid.trim().to_owned()))
        }
        _ => bail!("--bootstrap-default {pair:?} must be MOID=ServerURI"),
    }
}

fn read_file_config(path: Option<&Path>) -> anyhow::Result<FileConfig> {
    let Some(path) = path else { return Ok(FileConfig::default()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).map_err(|error| {
        anyhow::anyhow!("invalid config file {}: {}", path.display(), error.to_string().replace('\n', " "))
    })
}

/// Runs `omadm serve` or `omadm gateway` until SIGTERM/SIGINT.
pub fn run(args: ServeArgs, role: Role) -> anyhow::Result<()> {
    let file = read_file_config(args.config.as_deref())?;
    let settings = resolve_settings(args, file, role)?;
    init_logging(settings.log_format);
    actix_web::rt::System::new().block_on(serve(settings))
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    // tracing-actix-web logs every 4xx at warn; at fleet scale those are expected (each Digest
    // session starts with a 401 challenge) and counted in omadm_http_responses_total instead.
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(omadm_gateway::logging::DEFAULT_FILTER));
    // Colours only for a person at a terminal, never in files or log collectors.
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colours);
    // A second subscriber (tests calling run twice in one process) is not an error worth failing for.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let uses_data_dir = settings.redis.is_none() || settings.bus.is_none() || settings.admin_token.is_none();
    if uses_data_dir {
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("cannot create data dir {}", settings.data_dir.display()))?;
    }
    let admin_token = match &settings.admin_token {
        Some(token) => AdminToken::Given(token.trim().to_owned()),
        None => AdminToken::Stored(load_or_create_secret(&settings.data_dir.join(ADMIN_TOKEN_FILE))?),
    };
    // Every node must check the nonces every other node issues: a shared store means a shared key.
    let nonce_key = match (&settings.nonce_key, &settings.redis) {
        (Some(key), _) => key.clone(),
        (None, Some(_)) => derived_secret(admin_token.value(), "nonce-key"),
        (None, None) => hex::decode(load_or_create_secret(&settings.data_dir.join(NONCE_KEY_FILE))?)
            .context("the nonce key file is not hex")?,
    };
    let internal_token =
        settings.internal_token.clone().unwrap_or_else(|| hex::encode(derived_secret(admin_token.value(), "internal")));

    let store_options = omadm_core::store::StoreOptions {
        outbox_limit_per_shard: settings.outbox_limit,
        ..omadm_core::store::StoreOptions::default()
    };
    let store_url = match &settings.redis {
        Some(url) => url.clone(),
        None => settings.data_dir.join("store").to_string_lossy().into_owned(),
    };
    let store = omadm_core::store::open_with(&store_url, &store_options)
        .await
        .with_context(|| format!("cannot open the store at {}", shown_url(&store_url)))?;
    let bus_url = match &settings.bus {
        Some(url) => url.clone(),
        None => settings.data_dir.join("events").to_string_lossy().into_owned(),
    };
    let node_id = settings.node_id.clone().unwrap_or_else(random_node_id);
    let bus_options = BusOptions {
        topic_prefix: settings.topic_prefix.clone(),
        partitions: settings.kafka_partitions,
        replication_factor: settings.kafka_replication,
        client_id: format!("omadm-{node_id}"),
        kafka_settings: settings.kafka_settings.clone(),
        jsonl_retention: settings.events_retention,
    };
    let bus = omadm_core::bus::open_with(&bus_url, &bus_options)
        .await
        .with_context(|| format!("cannot open the event bus at {}", shown_url(&bus_url)))?;

    let listener = server::bind(&settings.listen).with_context(|| format!("cannot listen on {}", settings.listen))?;
    let local_addr = listener.local_addr()?;
    let public_url = settings.public_url.clone().unwrap_or_else(|| format!("http://{local_addr}"));
    let internal_listener = match &settings.internal_listen {
        Some(address) => {
            Some(server::bind(address).with_context(|| format!("cannot listen on {address} (--internal-listen)"))?)
        }
        None => None,
    };
    let internal_url = match (&settings.internal_url, &internal_listener) {
        (Some(url), _) => url.clone(),
        (None, Some(listener)) => {
            let address = listener.local_addr()?;
            if address.ip().is_unspecified() {
                bail!("--internal-listen {address} is every interface: say with --internal-url where peers reach it");
            }
            format!("http://{address}")
        }
        (None, None) => String::new(),
    };

    let config = GatewayConfig {
        auth_throttle: Default::default(),
        session_rate: Default::default(),
        uploads: Default::default(),
        public_url: public_url.clone(),
        admin_token: admin_token.value().to_owned(),
        realm: settings.realm.clone(),
        nonce_key,
        session: SessionConfig {
            max_commands_per_package: settings.max_commands_per_package,
            session_url_base: format!("{public_url}/dm/s/"),
            session_timeout: duration_millis(settings.session_timeout),
            inventory_max_age: duration_millis(settings.inventory_max_age),
            max_attempts: settings.max_attempts,
            supported_alert_mime_types: settings.alert_mime_types.clone(),
        },
        max_body_bytes: settings.max_body_bytes,
        max_repository_bytes: settings.max_repository_bytes,
        auto_register_password: settings.auto_register_password.clone(),
        bootstrap: settings.bootstrap.clone(),
    };
    let cluster = Arc::new(Cluster::new(ClusterConfig {
        node_id,
        internal_url: internal_url.clone(),
        internal_token,
        heartbeat_interval: settings.heartbeat_interval,
        node_ttl: settings.node_ttl,
        lease_ttl: settings.lease_ttl,
        forward_timeout: settings.forward_timeout,
        // The embedded store locks its file: no other process shares it.
        sole_process: settings.redis.is_none(),
    }));
    let state = actix_web::web::Data::new(AppState { store: Arc::clone(&store), bus: Arc::clone(&bus), config });
    let edge = DeviceEdge::clustered(state.clone(), DeviceEdgeOptions::default(), Arc::clone(&cluster));
    let membership = edge.join_cluster().await.context("cannot join the cluster: the store does not answer")?;
    // Steps wake the shards they wrote at once; the sweep only finds what a dead or departed node left behind.
    // On Redis Cluster a sweep reads the lengths of thousands of shards, so it runs less often there.
    let sweep_interval = if store.outbox_shards() > 1 {
        std::time::Duration::from_secs(2)
    } else {
        RelayConfig::default().poll_interval
    };
    let relay_config =
        RelayConfig { ownership: cluster.shard_ownership(), poll_interval: sweep_interval, ..RelayConfig::default() };
    let relay = OutboxRelay::spawn_with(Arc::clone(&store), Arc::clone(&bus), relay_config);
    edge.recover().await.context("cannot recover the open sessions")?;
    let options = ServerOptions {
        workers: settings.workers,
        client_request_timeout: settings.request_timeout,
        shutdown_timeout: settings.shutdown_timeout,
        outbox_waker: Some(relay.waker()),
        ..ServerOptions::default()
    };
    let internal = match internal_listener {
        Some(listener) => Some(
            server::run_internal(state.clone(), edge.clone(), listener, options.clone())
                .await
                .context("cannot start the internal listener")?,
        ),
        None => None,
    };
    let server = server::run(state, edge, listener, options).await.context("cannot start the HTTP server")?;

    print_banner(&settings, &public_url, &admin_token, &cluster, &internal_url);

    let stop_reason = wait_for_stop_signal().await?;
    tracing::info!(signal = stop_reason, "stopping");
    // Finish what is in flight, then let peers take this node's devices, then hand the events over.
    if let Err(error) = server.stop().await {
        tracing::error!(%error, "the HTTP server did not stop cleanly");
    }
    if let Some(internal) = internal
        && let Err(error) = internal.stop().await
    {
        tracing::error!(%error, "the internal listener did not stop cleanly");
    }
    membership.leave().await;
    match relay.drain().await {
        Ok(()) => tracing::info!("outbox drained"),
        Err(error) => tracing::warn!(%error, "outbox not drained; its events stay for the next start"),
    }
    relay.stop().await;
    tracing::info!("stopped");
    Ok(())
}

/// A backend URL (or comma list of URLs) for messages: without the passwords `redis://user:password@host` may carry.
fn shown_url(url: &str) -> String {
    url.split(',')
        .map(|part| match (part.split_once("://"), part.rsplit_once('@')) {
            (Some((scheme, _)), Some((_, host))) => format!("{scheme}://***@{host}"),
            _ => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The operator API token and where it came from.
enum AdminToken {
    Given(String),
    Stored(String),
}

impl AdminToken {
    fn value(&self) -> &str {
        match self {
            AdminToken::Given(token) | AdminToken::Stored(token) => token,
        }
    }
}

fn print_banner(
    settings: &Settings,
    public_url: &str,
    admin_token: &AdminToken,
    cluster: &Cluster,
    internal_url: &str,
) {
    let mut stdout = std::io::stdout().lock();
    let token_line = match admin_token {
        AdminToken::Given(_) => "admin token: the one given by --admin-token / OMADM_ADMIN_TOKEN".to_owned(),
        AdminToken::Stored(token) => {
            format!("admin token: {token} (stored in {})", settings.data_dir.join(ADMIN_TOKEN_FILE).display())
        }
    };
    let shown_token = match admin_token {
        AdminToken::Given(_) => "$OMADM_ADMIN_TOKEN",
        AdminToken::Stored(token) => token.as_str(),
    };
    let role = settings.role.name();
    // Best effort: a closed stdout must not stop the server.
    let _ = writeln!(stdout, "omadm {role}: listening on {public_url} (devices: POST {public_url}/dm)");
    match (&settings.redis, &settings.bus) {
        (None, None) => {
            let _ = writeln!(stdout, "data dir: {}", settings.data_dir.display());
        }
        (redis, bus) => {
            let store = redis.as_deref().map_or_else(|| "data dir".to_owned(), shown_url);
            let events = bus.as_deref().map_or_else(|| "data dir".to_owned(), shown_url);
            let _ = writeln!(stdout, "store: {store}; events: {events}");
        }
    }
    let internal =
        if internal_url.is_empty() { "no internal listener".to_owned() } else { format!("internal {internal_url}") };
    let _ = writeln!(stdout, "node: {} ({internal}, {} live nodes)", cluster.node_id(), cluster.live_nodes().len());
    let _ = writeln!(stdout, "{token_line}");
    let _ = writeln!(stdout, "try: curl -H 'Authorization: Bearer {shown_token}' {public_url}/api/v1/devices");
    let _ = stdout.flush();
}

fn duration_millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Reads a hex secret from `path`, or creates it (32 random bytes, file mode 0600) on first start.
fn load_or_create_secret(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let secret = text.trim().to_owned();
            if secret.is_empty() {
                bail!("{} is empty: delete it to have a new secret generated", path.display());
            }
            return Ok(secret);
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    write_private_file(path, &secret).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(secret)
}

#[cfg(unix)]
fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

/// Waits for SIGTERM or SIGINT (Ctrl-C) and says which.
#[cfg(unix)]
async fn wait_for_stop_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    tokio::select! {
        _ = terminate.recv() => Ok("SIGTERM"),
        _ = interrupt.recv() => Ok("SIGINT"),
    }
}

#[cfg(not(unix))]
async fn wait_for_stop_signal() -> anyhow::Result<&'static str> {
    tokio::signal::ctrl_c().await.context("cannot listen for Ctrl-C")?;
    Ok("Ctrl-C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        let file: FileConfig = toml::from_str(
            r#"
            listen = "0.0.0.0:9000"
            max_commands_per_package = 3
            session_timeout = 60
            [bootstrap]
            server_id = "dms.example.com"
            defaults = [{ moid = "urn:oma:mo:oma-dm-devinfo:1.2", server_uri = "https://dms.example.com/repo/devinfo" }]
            "#,
        )
        .unwrap();
        let args = ServeArgs { listen: Some("127.0.0.1:7000".to_owned()), ..ServeArgs::default() };
        let settings = resolve_settings(args, file, Role::Serve).unwrap();
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
        assert_eq!(settings.max_body_bytes, 1 << 20);
    }

    #[test]
    fn gcm_push_is_offered_only_when_complete() {
        assert_eq!(
            resolve_settings(ServeArgs::default(), FileConfig::default(), Role::Serve).unwrap().bootstrap.gcm,
            None
        );
        let file: FileConfig = toml::from_str(
            "[bootstrap.gcm]\nsender_id = \"42\"\nreg_url = \"https://dm.example.com/gcm/reg\"\nunreg_url = \"https://dm.example.com/gcm/unreg\"\n",
        )
        .unwrap();
        let args = ServeArgs { gcm_reg_params: Some("fleet=meters".to_owned()), ..ServeArgs::default() };
        let gcm = resolve_settings(args, file, Role::Serve).unwrap().bootstrap.gcm.unwrap();
        assert_eq!(gcm.sender_id, "42");
        assert_eq!(gcm.registration_url, "https://dm.example.com/gcm/reg");
        assert_eq!(gcm.registration_parameters.as_deref(), Some("fleet=meters"));
        let incomplete = ServeArgs { gcm_sender_id: Some("42".to_owned()), ..ServeArgs::default() };
        assert!(resolve_settings(incomplete, FileConfig::default(), Role::Serve).is_err());
    }

    #[test]
    fn unknown_file_fields_and_bad_values_are_refused() {
        assert!(toml::from_str::<FileConfig>("listn = \"x\"").is_err());
        let zero = ServeArgs { max_commands_per_package: Some(0), ..ServeArgs::default() };
        assert!(resolve_settings(zero, FileConfig::default(), Role::Serve).is_err());
        let bad_default = ServeArgs { bootstrap_defaults: Some(vec!["no-equals".to_owned()]), ..ServeArgs::default() };
        assert!(resolve_settings(bad_default, FileConfig::default(), Role::Serve).is_err());
        let bad_url = ServeArgs { public_url: Some("dms.example.com".to_owned()), ..ServeArgs::default() };
        assert!(resolve_settings(bad_url, FileConfig::default(), Role::Serve).is_err());
    }

    #[test]
    fn a_gateway_needs_shared_backends_and_names_what_is_missing() {
        let error = resolve_settings(ServeArgs::default(), FileConfig::default(), Role::Gateway).unwrap_err();
        assert_eq!(
            error.to_string(),
            "omadm gateway needs --redis, --kafka, --admin-token, --public-url, --internal-listen"
        );
        let file: FileConfig = toml::from_str(
            r#"
            redis = "10.0.0.2:6379"
            kafka = "10.0.0.5:9092,10.0.0.6:9092"
            internal_listen = "10.0.0.7:8081"
            public_url = "https://dm.example.com/"
            kafka_settings = ["security.protocol=SASL_SSL"]
            node_ttl_ms = 8000
            "#,
        )
        .unwrap();
        let args = ServeArgs { admin_token: Some("0123456789abcdef".to_owned()), ..ServeArgs::default() };
        let settings = resolve_settings(args, file, Role::Gateway).unwrap();
        assert_eq!(settings.redis.as_deref(), Some("redis://10.0.0.2:6379"));
        assert_eq!(settings.bus.as_deref(), Some("kafka://10.0.0.5:9092,10.0.0.6:9092"));
        assert_eq!(settings.public_url.as_deref(), Some("https://dm.example.com"));
        assert_eq!(settings.kafka_settings, vec![("security.protocol".to_owned(), "SASL_SSL".to_owned())]);
        assert_eq!(settings.node_ttl, Duration::from_secs(8));
        assert_eq!(settings.heartbeat_interval, Duration::from_secs(1));
        // URLs with a scheme are kept as given.
        assert_eq!(redis_url("redis+cluster://a:1,b:2"), "redis+cluster://a:1,b:2");
        assert_eq!(bus_url("file:///tmp/events"), "file:///tmp/events");
    }

    #[test]
    fn cluster_settings_are_checked() {
        let ttl_below_interval =
            ServeArgs { heartbeat_interval_ms: Some(2_000), node_ttl_ms: Some(1_000), ..ServeArgs::default() };
        assert!(resolve_settings(ttl_below_interval, FileConfig::default(), Role::Serve).is_err());
        let short_token = ServeArgs { internal_token: Some("short".to_owned()), ..ServeArgs::default() };
        assert!(resolve_settings(short_token, FileConfig::default(), Role::Serve).is_err());
        let not_hex = ServeArgs { nonce_key: Some("zz".to_owned()), ..ServeArgs::default() };
        assert!(resolve_settings(not_hex, FileConfig::default(), Role::Serve).is_err());
        let bad_setting = ServeArgs { kafka_settings: Some(vec!["novalue".to_owned()]), ..ServeArgs::default() };
        assert!(resolve_settings(bad_setting, FileConfig::default(), Role::Serve).is_err());
        // Every node derives the same secrets from the same admin token, different ones per purpose.
        assert_eq!(derived_secret("token-1", "internal"), derived_secret("token-1", "internal"));
        assert_ne!(derived_secret("token-1", "internal"), derived_secret("token-1", "nonce-key"));
        assert_ne!(derived_secret("token-1", "internal"), derived_secret("token-2", "internal"));
        assert_eq!(shown_url("redis://user:secret@10.0.0.2:6379"), "redis://***@10.0.0.2:6379");
        assert_eq!(shown_url("redis://10.0.0.2:6379"), "redis://10.0.0.2:6379");
        assert_eq!(shown_url("redis://:pw@a:1,redis://:pw@b:2"), "redis://***@a:1,redis://***@b:2");
    }

    #[test]
    fn secrets_are_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin-token");
        let first = load_or_create_secret(&path).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(load_or_create_secret(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
