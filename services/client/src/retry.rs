//! When and where a device sends a request again: the retry policy (Retry-After, backoff, attempt budget) and the
//! list of equivalent server base URLs a device fails over between.
//!
//! A device may know one DM server under several base URLs (a DNS name with several A records behind a load
//! balancer, or the nodes of a cluster): `http://10.0.0.1:8080`, `http://10.0.0.2:8080`, ... A URL under one of
//! them (Package#1 at `{base}/dm`, a CONT URL `{base}/dm/s/{sid}`, a repository URL) may be sent to any other: the
//! path stays, the base changes. [`ServerList`] decides which base an attempt goes to; it holds no sockets and
//! no clock of its own (callers pass `Instant`s), so it is tested without a network.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How one request is retried. `Default` is what devices use unless told otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Further attempts after the first one, whatever the reason (0: never retry).
    pub max_retries: u32,
    /// The longest `Retry-After` honoured; a longer one is cut to this.
    pub max_retry_after: Duration,
    /// The first wait when the server gave no `Retry-After`, or when every known server failed to answer; it
    /// doubles on each such wait up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// How long a server that did not answer is passed over when a request names it (other servers are tried
    /// first), so one dead node does not cost every later request a refused connection.
    pub down_for: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_retries: 8,
            max_retry_after: Duration::from_secs(30),
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            down_for: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// No retries at all: the first answer or error is final.
    pub fn never() -> RetryPolicy {
        RetryPolicy { max_retries: 0, ..RetryPolicy::default() }
    }

    /// The wait before retrying an answer of `status` carrying `retry_after` (the header's text), or `None` when
    /// that answer is final. 503 (unavailable, e.g. a node whose store is down) and 429 (too many requests) are
    /// retried; their `Retry-After` in seconds is honoured up to `max_retry_after`, and without one (or with an
    /// HTTP-date, which this client does not parse) the current `backoff` is used.
    pub fn wait_for_status(&self, status: u16, retry_after: Option<&str>, backoff: Duration) -> Option<Duration> {
        if status != 503 && status != 429 {
            return None;
        }
        match retry_after.and_then(parse_retry_after_seconds) {
            Some(wait) => Some(wait.min(self.max_retry_after)),
            None => Some(backoff.min(self.max_backoff)),
        }
    }

    /// The backoff after `current`: doubled, at most `max_backoff`.
    pub fn next_backoff(&self, current: Duration) -> Duration {
        current.saturating_mul(2).min(self.max_backoff)
    }
}

/// `Retry-After` as delta-seconds (RFC 9110 10.2.3); `None` for an HTTP-date or anything else.
pub fn parse_retry_after_seconds(value: &str) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    value.parse::<u64>().ok().map(Duration::from_secs)
}

/// How a device picks among its server base URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerSelection {
    /// Send to the URL the request names; move to the next base only when a server does not answer (and pass
    /// over a silent one for [`RetryPolicy::down_for`]). This is a device behind DNS round robin.
    #[default]
    Sticky,
    /// Every attempt goes to a base drawn at random, so consecutive packages of one session land on different
    /// servers (a load balancer without affinity). Used to exercise forwarding between cluster nodes.
    RandomPerRequest,
}

/// The base URLs a device may reach its server at, and which of them did not answer lately.
#[derive(Debug)]
pub struct ServerList {
    /// Without a trailing `/`, e.g. `http://127.0.0.1:8080`.
    bases: Vec<String>,
    selection: ServerSelection,
    /// Per base: passed over until then.
    down_until: Mutex<Vec<Option<Instant>>>,
}

impl ServerList {
    /// A list of equivalent base URLs (`http://host:port` or `http://host:port/prefix`); trailing slashes are
    /// ignored and duplicates dropped.
    pub fn new(bases: impl IntoIterator<Item = impl Into<String>>, selection: ServerSelection) -> ServerList {
        let mut unique: Vec<String> = Vec::new();
        for base in bases {
            let base: String = base.into();
            let base = base.trim_end_matches('/').to_owned();
            if !base.is_empty() && !unique.contains(&base) {
                unique.push(base);
            }
        }
        let down_until = Mutex::new(vec![None; unique.len()]);
        ServerList { bases: unique, selection, down_until }
    }

    pub fn bases(&self) -> &[String] {
        &self.bases
    }

    pub fn selection(&self) -> ServerSelection {
        self.selection
    }

    /// The index of the base `url` is under, if any (`{base}`, `{base}/...` or `{base}?...`).
    pub fn base_of(&self, url: &str) -> Option<usize> {
        self.bases.iter().position(|base| {
            url.strip_prefix(base.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?']))
        })
    }

    /// `url` with its base replaced by base `index` (unchanged when `url` is under no known base).
    pub fn rewrite(&self, url: &str, index: usize) -> String {
        match (self.base_of(url), self.bases.get(index)) {
            (Some(current), Some(target)) => {
                let rest = self.bases.get(current).map_or("", |base| url.get(base.len()..).unwrap_or(""));
                format!("{target}{rest}")
            }
            _ => url.to_owned(),
        }
    }

    /// The base the first attempt of a request to `url` goes to (`None`: a URL under no known base, sent as is).
    pub fn first_choice(&self, url: &str, now: Instant, draw: usize) -> Option<usize> {
        let named = self.base_of(url)?;
        match self.selection {
            ServerSelection::RandomPerRequest => Some(draw % self.bases.len()),
            ServerSelection::Sticky => Some(self.first_up_from(named, now)),
        }
    }

    /// The base to try after base `failed` did not answer; marks it down until `now + down_for`.
    pub fn after_failure(&self, failed: usize, now: Instant, down_for: Duration, draw: usize) -> usize {
        if let Ok(mut down) = self.down_until.lock()
            && let Some(slot) = down.get_mut(failed)
        {
            *slot = Some(now + down_for);
        }
        let count = self.bases.len();
        if count <= 1 {
            return failed;
        }
        match self.selection {
            // Any other base, at random.
            ServerSelection::RandomPerRequest => (failed + 1 + draw % (count - 1)) % count,
            ServerSelection::Sticky => self.first_up_from((failed + 1) % count, now),
        }
    }

    /// The first base from `start` on (wrapping) that is not marked down at `now`; `start` when all are.
    fn first_up_from(&self, start: usize, now: Instant) -> usize {
        let Ok(down) = self.down_until.lock() else { return start };
        let count = self.bases.len().max(1);
        (0..count)
            .map(|offset| (start + offset) % count)
            .find(|index| down.get(*index).copied().flatten().is_none_or(|until| until <= now))
            .unwrap_or(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three(selection: ServerSelection) -> ServerList {
        ServerList::new(["http://a:1/", "http://b:2", "http://c:3", "http://b:2"], selection)
    }

    #[test]
    fn bases_are_normalised_and_urls_found_under_them() {
        let servers = three(ServerSelection::Sticky);
        assert_eq!(servers.bases(), ["http://a:1", "http://b:2", "http://c:3"]);
        assert_eq!(servers.base_of("http://b:2/dm/s/xyz"), Some(1));
        assert_eq!(servers.base_of("http://b:2"), Some(1));
        assert_eq!(servers.base_of("http://b:2?x=1"), Some(1));
        // A longer port is another server, not a prefix match.
        assert_eq!(servers.base_of("http://b:23/dm"), None);
        assert_eq!(servers.base_of("http://elsewhere/repo/x"), None);
    }

    #[test]
    fn rewriting_keeps_the_path() {
        let servers = three(ServerSelection::Sticky);
        assert_eq!(servers.rewrite("http://a:1/dm/s/q?r=1", 2), "http://c:3/dm/s/q?r=1");
        assert_eq!(servers.rewrite("http://other/dm", 2), "http://other/dm");
        assert_eq!(servers.rewrite("http://a:1/dm", 7), "http://a:1/dm");
    }

    #[test]
    fn sticky_moves_on_after_a_failure_and_passes_over_the_silent_server_for_a_while() {
        let servers = three(ServerSelection::Sticky);
        let now = Instant::now();
        assert_eq!(servers.first_choice("http://b:2/dm", now, 0), Some(1));
        assert_eq!(servers.after_failure(1, now, Duration::from_secs(5), 0), 2);
        // The next request naming b goes to c at once while b is marked down...
        assert_eq!(servers.first_choice("http://b:2/dm/s/1", now + Duration::from_secs(1), 0), Some(2));
        // ...and to b again afterwards.
        assert_eq!(servers.first_choice("http://b:2/dm/s/1", now + Duration::from_secs(6), 0), Some(1));
        // When every base is down, the named one is tried anyway.
        servers.after_failure(0, now, Duration::from_secs(5), 0);
        servers.after_failure(2, now, Duration::from_secs(5), 0);
        assert_eq!(servers.first_choice("http://c:3/dm", now, 0), Some(2));
        assert_eq!(servers.first_choice("http://elsewhere/dm", now, 0), None);
    }

    #[test]
    fn random_selection_draws_and_never_retries_the_silent_server() {
        let servers = three(ServerSelection::RandomPerRequest);
        let now = Instant::now();
        assert_eq!(servers.first_choice("http://a:1/dm", now, 4), Some(1));
        for draw in 0..10 {
            assert_ne!(servers.after_failure(1, now, Duration::ZERO, draw), 1);
        }
        let single = ServerList::new(["http://a:1"], ServerSelection::RandomPerRequest);
        assert_eq!(single.after_failure(0, now, Duration::ZERO, 3), 0);
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap_and_only_for_503_and_429() {
        let policy = RetryPolicy::default();
        let backoff = Duration::from_millis(100);
        assert_eq!(policy.wait_for_status(503, Some("2"), backoff), Some(Duration::from_secs(2)));
        assert_eq!(policy.wait_for_status(429, Some(" 1 "), backoff), Some(Duration::from_secs(1)));
        assert_eq!(policy.wait_for_status(503, Some("3600"), backoff), Some(Duration::from_secs(30)));
        assert_eq!(policy.wait_for_status(503, Some("Wed, 21 Oct 2015 07:28:00 GMT"), backoff), Some(backoff));
        assert_eq!(policy.wait_for_status(503, None, Duration::from_secs(60)), Some(Duration::from_secs(5)));
        assert_eq!(policy.wait_for_status(500, Some("1"), backoff), None);
        assert_eq!(policy.wait_for_status(200, None, backoff), None);
        assert_eq!(parse_retry_after_seconds("-1"), None);
        assert_eq!(policy.next_backoff(Duration::from_secs(4)), Duration::from_secs(5));
        assert_eq!(RetryPolicy::never().max_retries, 0);
    }
}
