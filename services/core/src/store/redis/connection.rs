//! The Redis engine's connection: one server or a Redis Cluster behind one type, with every request counted.
//!
//! A standalone server is reached through a [`ConnectionManager`] (one
//! multiplexed, pipelined connection that reconnects by itself); a cluster
//! through the `redis` crate's async [`ClusterConnection`] (one multiplexed
//! connection per node, routing each request by its keys' slot, following
//! MOVED/ASK and refreshing its slot map by itself). Both implement
//! [`ConnectionLike`], so commands, pipelines and Lua scripts (EVALSHA, with
//! a SCRIPT LOAD and a second EVALSHA when the server does not know the script
//! yet) run the same on either. [`Counted`] counts each request it sends per
//! store operation (`omadm_redis_round_trips_total`), which is how the round
//! trips in docs/cluster.md were checked.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

use super::slot::SLOTS;
use crate::metrics::metrics;
use crate::store::StoreError;

/// How long connecting to a node may take before the call fails (a request should get its 503 quickly).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one request may wait for its answer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A standalone server or a Redis Cluster. Cheap to clone (clones share the connections).
#[derive(Clone)]
pub enum Connection {
    Standalone(ConnectionManager),
    Cluster(ClusterLink),
}

/// The least time between two rebuilds of a cluster connection.
const REBUILD_EVERY: Duration = Duration::from_secs(1);

/// A Redis Cluster connection that is built again from the seed nodes after a node stopped answering. The
/// `redis` crate follows MOVED and ASK by itself, but a primary that died (its replica promoted) answers
/// nothing: the crate reconnects to the same dead address, and its slot map, never told otherwise, keeps
/// pointing there. A new connection reads the map from a live seed.
#[derive(Clone)]
pub struct ClusterLink {
    client: Arc<redis::cluster::ClusterClient>,
    current: Arc<std::sync::RwLock<ClusterConnection>>,
    rebuilt_at: Arc<tokio::sync::Mutex<Instant>>,
}

impl ClusterLink {
    fn connection(&self) -> ClusterConnection {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// After `error`, when it says a node is gone or the cluster is changing, builds the connection again (at
    /// most once per [`REBUILD_EVERY`]; callers meanwhile get their error and retry as they would).
    async fn rebuild_after(&self, error: &RedisError) {
        let topology = error.is_io_error()
            || error.is_timeout()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || matches!(error.code(), Some("CLUSTERDOWN" | "TRYAGAIN" | "MASTERDOWN"))
            || error.kind() == redis::ErrorKind::ClusterConnectionNotFound;
        if !topology {
            return;
        }
        let mut rebuilt_at = self.rebuilt_at.lock().await;
        if rebuilt_at.elapsed() < REBUILD_EVERY {
            return;
        }
        *rebuilt_at = Instant::now();
        match self.client.get_async_connection().await {
            Ok(fresh) => {
                *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
                metrics().redis_cluster_rebuilds.inc();
                tracing::warn!(%error, "Redis Cluster connection rebuilt from the seed nodes");
            }
            Err(rebuild_error) => tracing::warn!(%error, %rebuild_error, "cannot rebuild the Redis Cluster connection"),
        }
    }
}

/// Where a store URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `redis://[user:password@]host:port[/db]`.
    Standalone(String),
    /// The seed nodes of a cluster, each a `redis://` URL.
    Cluster(Vec<String>),
}

/// Reads a store URL: `redis://...` is one server; `redis+cluster://[user:password@]host:port,host:port,...`
/// or several comma-separated `redis://` URLs are the seed nodes of a Redis Cluster.
pub fn parse_target(url: &str) -> Result<Target, StoreError> {
    if let Some(rest) = url.strip_prefix("redis+cluster://") {
        let rest = rest.trim_end_matches('/');
        let (credentials, hosts) = match rest.rsplit_once('@') {
            Some((credentials, hosts)) => (format!("{credentials}@"), hosts),
            None => (String::new(), rest),
        };
        let nodes: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|host| !host.is_empty())
            .map(|host| format!("redis://{credentials}{host}"))
            .collect();
        if nodes.is_empty() {
            return Err(StoreError::UnsupportedUrl(redacted(url)));
        }
        return Ok(Target::Cluster(nodes));
    }
    if url.contains(',') {
        let nodes: Vec<String> =
            url.split(',').map(str::trim).filter(|node| !node.is_empty()).map(str::to_owned).collect();
        if nodes.iter().any(|node| !node.starts_with("redis://")) {
            return Err(StoreError::UnsupportedUrl(redacted(url)));
        }
        return Ok(Target::Cluster(nodes));
    }
    Ok(Target::Standalone(url.to_owned()))
}

/// The URL without credentials, for messages.
pub fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, hosts))) => format!("{scheme}://{hosts}"),
        _ => url.to_owned(),
    }
}

impl Connection {
    /// Connects to `target`; a server or cluster that cannot be reached gives [`StoreError::Unavailable`].
    pub async fn open(target: &Target) -> Result<Connection, StoreError> {
        match target {
            Target::Standalone(url) => {
                let client = redis::Client::open(url.as_str())
                    .map_err(|error| StoreError::UnsupportedUrl(format!("{}: {error}", redacted(url))))?;
                // Few, short retries: a request should get its 503 quickly; the manager reconnects on the next call.
                let config = ConnectionManagerConfig::new()
                    .set_number_of_retries(1)
                    .set_max_delay(500)
                    .set_connection_timeout(CONNECTION_TIMEOUT)
                    .set_response_timeout(RESPONSE_TIMEOUT);
                let manager = ConnectionManager::new_with_config(client, config).await.map_err(unavailable)?;
                Ok(Connection::Standalone(manager))
            }
            Target::Cluster(nodes) => {
                let client = ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(CONNECTION_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT)
                    // A few quick retries ride out a failover or a slot move; then the caller gets its 503.
                    .retries(3)
                    .min_retry_wait(50)
                    .max_retry_wait(500)
                    .build()
                    .map_err(|error| {
                        let shown: Vec<String> = nodes.iter().map(|node| redacted(node)).collect();
                        StoreError::UnsupportedUrl(format!("{}: {error}", shown.join(",")))
                    })?;
                let connection = client.get_async_connection().await.map_err(unavailable)?;
                // Built long ago: the first failure may rebuild at once.
                let long_ago = Instant::now().checked_sub(REBUILD_EVERY).unwrap_or_else(Instant::now);
                Ok(Connection::Cluster(ClusterLink {
                    client: Arc::new(client),
                    current: Arc::new(std::sync::RwLock::new(connection)),
                    rebuilt_at: Arc::new(tokio::sync::Mutex::new(long_ago)),
                }))
            }
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Standalone(connection) => connection.req_packed_command(cmd),
            Connection::Cluster(link) => Box::pin(async move {
                let result = link.connection().req_packed_command(cmd).await;
                if let Err(error) = &result {
                    link.rebuild_after(error).await;
                }
                result
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Standalone(connection) => connection.req_packed_commands(cmd, offset, count),
            Connection::Cluster(link) => Box::pin(async move {
                let result = link.connection().req_packed_commands(cmd, offset, count).await;
                if let Err(error) = &result {
                    link.rebuild_after(error).await;
                }
                result
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Standalone(connection) => connection.get_db(),
            Connection::Cluster(link) => link.connection().get_db(),
        }
    }
}

/// Every Redis failure is the backend's, not the caller's: the edge answers 503.
pub fn unavailable(error: RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {error}"))
}

/// The connection as one store operation uses it: each request it sends is counted under the operation.
#[derive(Clone)]
pub struct Counted {
    connection: Connection,
    operation: &'static str,
    requests: Arc<AtomicU64>,
}

impl Counted {
    pub fn new(connection: Connection, operation: &'static str, requests: Arc<AtomicU64>) -> Self {
        Counted { connection, operation, requests }
    }

    fn count(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        metrics().redis_round_trips.with_label_values(&[self.operation]).inc();
    }

    /// One command per slot (`requests`: slot and command), answered in order. On a
    /// standalone server it is one pipeline. On a cluster the commands are grouped by
    /// the node that serves their slot (one `CLUSTER SLOTS` first) and each node gets
    /// one pipeline, all at once; a group that fails (a slot moved meanwhile) is sent
    /// again one command at a time, routed by the client.
    pub async fn per_slot(&self, requests: Vec<(u16, Cmd)>) -> RedisResult<Vec<Value>> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let Connection::Cluster(link) = &self.connection else {
            let mut pipeline = redis::pipe();
            for (_, command) in &requests {
                pipeline.add_command(command.clone());
            }
            let mut connection = self.clone();
            return pipeline.query_async(&mut connection).await;
        };
        let cluster = &link.connection();
        let owners = match self.slot_owners(cluster).await {
            Ok(owners) => owners,
            Err(error) => {
                link.rebuild_after(&error).await;
                return Err(error);
            }
        };
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (index, (slot, _)) in requests.iter().enumerate() {
            let owner = owners.get(usize::from(*slot)).copied().unwrap_or(usize::MAX);
            groups.entry(owner).or_default().push(index);
        }
        let sends = groups.values().map(|indexes| {
            let mut pipeline = redis::pipe();
            for index in indexes {
                if let Some((_, command)) = requests.get(*index) {
                    pipeline.add_command(command.clone());
                }
            }
            let first_slot = indexes.first().and_then(|index| requests.get(*index)).map_or(0, |(slot, _)| *slot);
            let mut cluster = cluster.clone();
            self.count();
            async move {
                let route = SingleNodeRoutingInfo::SpecificNode(Route::new(first_slot, SlotAddr::Master));
                cluster.route_pipeline(&pipeline, 0, pipeline.len(), route).await
            }
        });
        let answers = join_all(sends).await;
        let mut values: Vec<Option<Value>> = vec![None; requests.len()];
        for (indexes, answer) in groups.values().zip(answers) {
            let answer = match answer {
                Ok(answer) => answer,
                Err(error) => {
                    link.rebuild_after(&error).await;
                    continue;
                }
            };
            if answer.len() != indexes.len() {
                continue;
            }
            for (index, value) in indexes.iter().zip(answer) {
                // A redirect inside a pipeline is not followed by the client: that command is sent again alone.
                if is_redirect(&value) {
                    continue;
                }
                if let Some(slot) = values.get_mut(*index) {
                    *slot = Some(value);
                }
            }
        }
        let retries = values.iter().enumerate().filter(|(_, value)| value.is_none()).map(|(index, _)| index);
        let resends = retries.filter_map(|index| requests.get(index).map(|(_, command)| (index, command))).map(
            |(index, command)| {
                let mut connection = self.clone();
                async move { (index, command.query_async::<Value>(&mut connection).await) }
            },
        );
        for (index, answer) in join_all(resends).await {
            if let Some(slot) = values.get_mut(index) {
                *slot = Some(answer?);
            }
        }
        Ok(values.into_iter().map(|value| value.unwrap_or(Value::Nil)).collect())
    }

    /// For each slot, an index of the node serving it (`CLUSTER SLOTS`); slots nobody serves map to `usize::MAX`.
    async fn slot_owners(&self, cluster: &ClusterConnection) -> RedisResult<Vec<usize>> {
        let mut cluster = cluster.clone();
        self.count();
        let reply = cluster
            .route_command(redis::cmd("CLUSTER").arg("SLOTS"), RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random))
            .await?;
        let mut owners = vec![usize::MAX; usize::from(SLOTS)];
        let mut nodes: Vec<Vec<u8>> = Vec::new();
        let Value::Array(ranges) = reply else { return Ok(owners) };
        for range in ranges {
            let Value::Array(fields) = range else { continue };
            let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(master))) =
                (fields.first(), fields.get(1), fields.get(2))
            else {
                continue;
            };
            let address = format!("{:?}:{:?}", master.first(), master.get(1)).into_bytes();
            let node = match nodes.iter().position(|known| *known == address) {
                Some(node) => node,
                None => {
                    nodes.push(address);
                    nodes.len() - 1
                }
            };
            let start = usize::try_from(*start).unwrap_or(usize::MAX);
            let end = usize::try_from(*end).unwrap_or(0);
            for slot in start..=end.min(usize::from(SLOTS) - 1) {
                if let Some(owner) = owners.get_mut(slot) {
                    *owner = node;
                }
            }
        }
        Ok(owners)
    }
}

/// An answer that says the slot is served elsewhere or not right now (a failover, a resharding): the client's
/// own routing, which follows the new map, should send the command again.
fn is_redirect(value: &Value) -> bool {
    let Value::ServerError(error) = value else { return false };
    matches!(error.code(), "MOVED" | "ASK" | "TRYAGAIN" | "CLUSTERDOWN" | "MASTERDOWN")
}

impl ConnectionLike for Counted {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.count();
        self.connection.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.count();
        self.connection.req_packed_commands(cmd, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.connection.get_db()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_one_server_or_a_cluster() {
        assert_eq!(parse_target("redis://h:1/").unwrap(), Target::Standalone("redis://h:1/".to_owned()));
        assert_eq!(
            parse_target("redis+cluster://h:1,h:2").unwrap(),
            Target::Cluster(vec!["redis://h:1".to_owned(), "redis://h:2".to_owned()])
        );
        assert_eq!(
            parse_target("redis+cluster://u:p@h:1, h:2/").unwrap(),
            Target::Cluster(vec!["redis://u:p@h:1".to_owned(), "redis://u:p@h:2".to_owned()])
        );
        assert_eq!(
            parse_target("redis://h:1,redis://h:2").unwrap(),
            Target::Cluster(vec!["redis://h:1".to_owned(), "redis://h:2".to_owned()])
        );
        assert!(matches!(parse_target("redis+cluster://"), Err(StoreError::UnsupportedUrl(_))));
        assert!(matches!(parse_target("redis://h:1,http://h:2"), Err(StoreError::UnsupportedUrl(_))));
        assert_eq!(redacted("redis+cluster://user:secret@h:1,h:2"), "redis+cluster://h:1,h:2");
    }
}
