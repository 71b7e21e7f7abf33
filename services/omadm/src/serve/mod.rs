//! `omadm serve`, `omadm gateway`, `omadm notifier` and `omadm campaigns`: the DM server on one node, alone
//! (embedded store, JSONL events) or in a cluster, and the notifier and campaigns roles on their own.
//!
//! ```text
//! $ omadm serve --listen 127.0.0.1:8080 --data-dir ./omadm-data
//! omadm serve: listening on http://127.0.0.1:8080 (devices: POST http://127.0.0.1:8080/dm)
//! data dir: ./omadm-data
//! ops: http://127.0.0.1:9464 (/metrics, /healthz, /readyz)
//! ...
//! $ omadm gateway --listen 0.0.0.0:8080 --internal-listen 10.0.0.7:8081 --ops-listen 0.0.0.0:9464 \
//!     --store redis://10.0.0.2:6379 --bus kafka://10.0.0.3:9092 --admin-token "$TOKEN" --public-url https://dm.example.com
//! ```
//!
//! `serve` and `gateway` run the same roles (device edge, operator API, outbox relay) through the same wiring
//! ([`omadm_gateway::node::Node`]): `serve` on the data dir unless `--store`/`--bus` name shared backends, with
//! the notifier and campaigns roles in the same process; `gateway` always on shared backends, as one node of a cluster
//! (docs/cluster.md). `notifier` is that role alone, on shared backends, with an ops listener: a role of the
//! runtime is its handler plus [`run_notifier`]'s few lines.
//! - [`settings`]: the flags, `OMADM_*` variables and TOML file, declared once; defaults and checks.
//! - [`secrets`]: the data dir (0700, refused when shared) and the secrets kept in it.
//! - [`banner`]: what is printed once the node listens.
//!
//! SIGTERM or SIGINT stops it in the role runtime's order (omadm_runtime::shutdown): `/readyz` turns 503, the
//! listeners close and packages in flight finish, the node leaves the cluster, the outbox is drained to the bus,
//! the ops listener and the store close; the exit code is 0.

mod banner;
mod secrets;
mod settings;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use anyhow::{Context as _, bail};
use omadm_campaigns::Orchestrator;
use omadm_core::bus::{Bus, BusOptions};
use omadm_core::content::ContentEngine;
use omadm_core::session::SessionConfig;
use omadm_core::store::Store;
use omadm_gateway::GatewayConfig;
use omadm_gateway::cluster::{ClusterConfig, random_node_id};
use omadm_gateway::node::{Node, NodeListeners, NodeSettings};
use omadm_gateway::server::{self, ServerOptions};
use omadm_notifier::Notifier;
use omadm_runtime::ops::{OpsServer, Readiness};
use omadm_runtime::shutdown::{self, Phase, ShutdownPlan};

use banner::shown_url;
use secrets::{ADMIN_TOKEN_FILE, AdminToken, NONCE_KEY_FILE};
pub use settings::{Role, ServeArgs, Settings};

/// Runs `omadm serve` or `omadm gateway` until SIGTERM/SIGINT.
pub fn run(args: ServeArgs, role: Role) -> anyhow::Result<()> {
    let settings = Settings::load(args, role)?;
    omadm_runtime::logging::init(settings.log_format);
    match role {
        Role::Serve | Role::Gateway => actix_web::rt::System::new().block_on(serve(settings)),
        Role::Notifier => actix_web::rt::System::new().block_on(run_notifier(settings)),
        Role::Campaigns => actix_web::rt::System::new().block_on(run_campaigns(settings)),
    }
}

/// Opens the store and the bus the settings name (`client` identifies this process to Kafka).
async fn open_backends(settings: &Settings, client: &str) -> anyhow::Result<(Arc<dyn Store>, Arc<dyn Bus>)> {
    let store_options = omadm_core::store::StoreOptions {
        outbox_limit_per_shard: settings.outbox_limit,
        session_history_per_device: settings.session_history,
    };
    let store = omadm_core::store::open_with(&settings.store, &store_options)
        .await
        .with_context(|| format!("cannot open the store at {}", shown_url(&settings.store)))?;
    let bus_options = BusOptions {
        topic_prefix: settings.topic_prefix.clone(),
        partitions: settings.kafka_partitions,
        replication_factor: settings.kafka_replication,
        client_id: format!("omadm-{client}"),
        kafka_settings: settings.kafka_settings.clone(),
        jsonl_retention: settings.events_retention,
    };
    let bus = omadm_core::bus::open_with(&settings.bus, &bus_options)
        .await
        .with_context(|| format!("cannot open the event bus at {}", shown_url(&settings.bus)))?;
    Ok((store, bus))
}

/// `omadm notifier`: the notifier role alone.
async fn run_notifier(settings: Settings) -> anyhow::Result<()> {
    let doing = format!("consuming notification.requested as consumer group {}", omadm_notifier::CONSUMER_GROUP);
    run_alone(settings, "notifier", &doing, |store, bus, settings, readiness| async move {
        let notifier = Notifier::start(store, bus, settings.notifier.clone(), readiness).await?;
        Ok(notifier.stop())
    })
    .await
}

/// `omadm campaigns`: the campaigns role alone.
async fn run_campaigns(settings: Settings) -> anyhow::Result<()> {
    let doing = format!("running campaigns as consumer group {}", omadm_campaigns::CONSUMER_GROUP);
    run_alone(settings, "campaigns", &doing, |store, bus, settings, _readiness| async move {
        let campaigns = Orchestrator::start(store, bus, settings.campaigns.clone()).await?;
        Ok(campaigns.stop())
    })
    .await
}

/// One role alone on the shared backends, with an ops listener, stopped in the runtime's order: `start` runs it
/// and answers the step that stops it.
async fn run_alone<Start, Started, Stop>(
    settings: Settings,
    name: &'static str,
    doing: &str,
    start: Start,
) -> anyhow::Result<()>
where
    Start: FnOnce(Arc<dyn Store>, Arc<dyn omadm_core::bus::Bus>, Settings, Arc<Readiness>) -> Started,
    Started: std::future::Future<Output = anyhow::Result<Stop>>,
    Stop: std::future::Future<Output = ()> + 'static,
{
    secrets::private_files_from_now_on();
    let client = format!("{name}-{}", settings.node_id.clone().unwrap_or_else(random_node_id));
    let (store, bus) = open_backends(&settings, &client).await?;
    let readiness = Arc::new(Readiness::new());
    let ops = match &settings.ops_listen {
        Some(address) => Some(
            OpsServer::start(bind(address, "--ops-listen")?, web::Data::from(Arc::clone(&readiness)))
                .context("cannot start the ops listener")?,
        ),
        None => None,
    };
    let stop_role = start(store, bus, settings.clone(), Arc::clone(&readiness)).await?;
    let signals = shutdown::StopSignals::install().context("cannot listen for SIGTERM and SIGINT")?;
    banner::print_role(&settings, doing, ops.as_ref().map(|ops| format!("http://{}", ops.local_addr())));
    let mut plan = ShutdownPlan::new();
    let stopping = Arc::clone(&readiness);
    plan.add(Phase::StopAccepting, "readiness", async move { stopping.begin_shutdown() });
    plan.add(Phase::StopConsumers, name, stop_role);
    if let Some(ops) = ops {
        plan.add(Phase::CloseStore, "ops listener", ops.stop());
    }
    let signal = signals.wait().await;
    tracing::info!(signal = signal.name(), "stopping");
    plan.run().await;
    Ok(())
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    secrets::private_files_from_now_on();
    let uses_data_dir = settings.embedded_store()
        || settings.jsonl_bus()
        || settings.admin_token.is_none()
        || settings.content_in_data_dir();
    if uses_data_dir {
        secrets::prepare_data_dir(&settings.data_dir, settings.allow_shared_data_dir)?;
    }
    let admin_token = match &settings.admin_token {
        Some(token) => AdminToken::Given(token.trim().to_owned()),
        None => AdminToken::Stored(secrets::load_or_create_secret(&settings.data_dir.join(ADMIN_TOKEN_FILE))?),
    };
    // Every node must check the nonces every other node issues: a shared store means a shared key.
    let nonce_key = match (&settings.nonce_key, settings.embedded_store()) {
        (Some(key), _) => key.clone(),
        (None, false) => secrets::derived_secret(admin_token.value(), "nonce-key"),
        (None, true) => hex::decode(secrets::load_or_create_secret(&settings.data_dir.join(NONCE_KEY_FILE))?)
            .context("the nonce key file is not hex")?,
    };
    let internal_token = settings
        .internal_token
        .clone()
        .unwrap_or_else(|| hex::encode(secrets::derived_secret(admin_token.value(), "internal")));

    let node_id = settings.node_id.clone().unwrap_or_else(random_node_id);
    let (store, bus) = open_backends(&settings, &node_id).await?;
    let content = ContentEngine::open(&settings.content).context("cannot open the content engine (--content)")?;

    let listeners = bind_listeners(&settings)?;
    let local_addr = listeners.public.local_addr()?;
    let public_url = settings.public_url.clone().unwrap_or_else(|| format!("http://{local_addr}"));
    let internal_url = match (&settings.internal_url, &listeners.internal) {
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
    let node_settings = NodeSettings {
        gateway: gateway_config(&settings, &public_url, admin_token.value(), nonce_key),
        cluster: ClusterConfig {
            node_id,
            internal_url: internal_url.clone(),
            internal_token,
            heartbeat_interval: settings.heartbeat_interval,
            node_ttl: settings.node_ttl,
            lease_ttl: settings.lease_ttl,
            forward_timeout: settings.forward_timeout,
            // The embedded store locks its file: no other process shares it.
            sole_process: settings.embedded_store(),
        },
        server: ServerOptions {
            workers: settings.workers,
            client_request_timeout: settings.request_timeout,
            shutdown_timeout: settings.shutdown_timeout,
            ..ServerOptions::default()
        },
        relay: Some(NodeSettings::relay_for(store.as_ref())),
    };
    let node = Node::start(Arc::clone(&store), Arc::clone(&bus), content, node_settings, listeners).await?;
    // `serve` is every role in one process: the notifier consumes what this node's API requests.
    // `serve` is every role in one process: the notifier consumes what this node's API requests, the campaigns
    // role runs the campaigns it creates.
    let (notifier, campaigns) = match settings.role {
        Role::Serve => {
            let campaigns =
                Orchestrator::start(Arc::clone(&store), Arc::clone(&bus), settings.campaigns.clone()).await?;
            let notifier =
                Notifier::start(store, bus, settings.notifier.clone(), node.readiness().into_inner()).await?;
            (Some(notifier), Some(campaigns))
        }
        Role::Gateway | Role::Notifier | Role::Campaigns => (None, None),
    };
    let signals = shutdown::StopSignals::install().context("cannot listen for SIGTERM and SIGINT")?;

    banner::print(
        &settings,
        &admin_token,
        &banner::Started {
            public_url: &public_url,
            ops_url: node.ops_addr().map(|address| format!("http://{address}")),
            internal_url: &internal_url,
            node_id: node.cluster().node_id(),
            live_nodes: node.cluster().live_nodes().len(),
        },
    );

    let mut plan = ShutdownPlan::new();
    node.stop_steps(&mut plan);
    if let Some(notifier) = notifier {
        plan.add(Phase::StopConsumers, "notifier", notifier.stop());
    }
    if let Some(campaigns) = campaigns {
        plan.add(Phase::StopConsumers, "campaigns", campaigns.stop());
    }
    let signal = signals.wait().await;
    tracing::info!(signal = signal.name(), "stopping");
    plan.run().await;
    Ok(())
}

/// Binds `address`, the value of `flag`, before anything runs: a taken port fails the start at once.
fn bind(address: &str, flag: &str) -> anyhow::Result<TcpListener> {
    server::bind(address).with_context(|| format!("cannot listen on {address} ({flag})"))
}

/// Binds every listener of a node before anything runs, so port 0 is known when the public URL is built.
fn bind_listeners(settings: &Settings) -> anyhow::Result<NodeListeners> {
    Ok(NodeListeners {
        public: bind(&settings.listen, "--listen")?,
        internal: settings.internal_listen.as_deref().map(|address| bind(address, "--internal-listen")).transpose()?,
        ops: settings.ops_listen.as_deref().map(|address| bind(address, "--ops-listen")).transpose()?,
    })
}

fn gateway_config(settings: &Settings, public_url: &str, admin_token: &str, nonce_key: Vec<u8>) -> GatewayConfig {
    GatewayConfig {
        auth_throttle: Default::default(),
        session_rate: settings.session_rate.clone(),
        uploads: settings.uploads.clone(),
        public_url: public_url.to_owned(),
        admin_token: admin_token.to_owned(),
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
    }
}

fn duration_millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
