//! HTTP transport of a device (5.1): Package#1 with HTTP authentication, Package#3 to the CONT URL, Data Repository
//! requests (HGET, HPUT, HPOST, Generic Alerts, bootstrap).
//!
//! Plain HTTP and HTTPS both go through reqwest; this build enables no TLS backend, so only `http://` URLs work
//! for now. Authentication answers the server's 401: Digest with SHA-256 when offered, else MD5 (the
//! `digest_auth` crate), else Basic. The last Digest challenge is kept and answered pre-emptively on the next
//! authenticated request (nonce count incremented), so a session costs one round trip when the nonce is fresh.
//! Package#3 is never authenticated: the server binds the session URL to the device.
//!
//! Every request is retried as [`crate::retry::RetryPolicy`] says: a 503 or 429 after its `Retry-After` (capped),
//! a request that got no answer at once on the next base URL of [`crate::retry::ServerList`] when the device knows
//! several, with a backoff once every base was tried. The body is the same bytes on every attempt.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, Url};

use crate::device::Credentials;
use crate::retry::{RetryPolicy, ServerList, ServerSelection};

/// The header naming the device on every request (5.1.2).
pub const DEVICE_ID_HEADER: &str = "OMADM-DevID";

/// Why an HTTP exchange failed.
/// Fresh challenges answered per request. More than one: a Digest answer whose first copy reached a node that
/// died before replying is refused as a replay when it is resent (the server records each answer once), and the
/// fresh challenge of that 401 is answered again.
pub const MAX_CHALLENGE_ANSWERS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("HTTP request to {url} failed: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the server's 401 offers no challenge this client can answer")]
    NoUsableChallenge,
    #[error("cannot answer the Digest challenge: {0}")]
    Digest(String),
}

/// The answer of the server: status, headers and the whole body.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: bytes::Bytes,
}

/// What a transport did beyond one request per exchange, for reports and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Requests repeated to answer a 401 challenge.
    pub challenges_answered: u64,
    /// Requests sent again after a 503/429 or after no answer.
    pub retries: u64,
    /// Retries that went to another base URL than the attempt before (the server did not answer).
    pub failovers: u64,
    /// 503 and 429 answers received (each followed by a retry while the budget lasted).
    pub unavailable_answers: u64,
}

/// One device's HTTP client.
#[derive(Debug)]
pub struct Transport {
    http: reqwest::Client,
    credentials: Credentials,
    /// The last Digest challenge, answered pre-emptively with the next nonce count.
    cached_digest: Mutex<Option<digest_auth::WwwAuthenticateHeader>>,
    retry: RetryPolicy,
    /// The equivalent base URLs of the server, when the device knows more than the URLs it is given.
    servers: Option<Arc<ServerList>>,
    challenges_answered: AtomicU64,
    retries: AtomicU64,
    failovers: AtomicU64,
    unavailable_answers: AtomicU64,
}

/// How an attempt is authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Authentication {
    /// Package#3 and repository reads: never.
    Off,
    /// The cached Digest challenge, answered afresh on each attempt (a new nonce count each time).
    Preemptive,
}

impl Transport {
    /// A transport with its own connection pool and a 30 s timeout per request.
    pub fn new(credentials: Credentials) -> Result<Transport, TransportError> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|source| TransportError::Http { url: String::new(), source })?;
        Ok(Transport::with_client(http, credentials))
    }

    /// A transport over a shared reqwest client (a fleet of simulated devices shares one pool).
    pub fn with_client(http: reqwest::Client, credentials: Credentials) -> Transport {
        Transport {
            http,
            credentials,
            cached_digest: Mutex::new(None),
            retry: RetryPolicy::default(),
            servers: None,
            challenges_answered: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            failovers: AtomicU64::new(0),
            unavailable_answers: AtomicU64::new(0),
        }
    }

    /// Replaces the retry policy ([`RetryPolicy::default`] unless set).
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Transport {
        self.retry = retry;
        self
    }

    /// Lets requests to any of `servers` fail over to the others (and, with
    /// [`crate::retry::ServerSelection::RandomPerRequest`], spread over them).
    pub fn with_servers(mut self, servers: Arc<ServerList>) -> Transport {
        self.servers = Some(servers);
        self
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// How many times a request had to be repeated to answer a 401 challenge.
    pub fn challenges_answered(&self) -> u64 {
        self.challenges_answered.load(Ordering::Relaxed)
    }

    /// Counters of this transport's lifetime.
    pub fn stats(&self) -> TransportStats {
        TransportStats {
            challenges_answered: self.challenges_answered.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            failovers: self.failovers.load(Ordering::Relaxed),
            unavailable_answers: self.unavailable_answers.load(Ordering::Relaxed),
        }
    }

    /// Sends a request with HTTP authentication: pre-emptive Digest when a challenge is cached, else none; on a
    /// 401, again with the answer to the best challenge it carries, at most [`MAX_CHALLENGE_ANSWERS`] times.
    /// Every send retries as [`Transport::send_plain`] does.
    pub async fn send_authenticated(
        &self,
        method: Method,
        url: &str,
        content_type: Option<&str>,
        accept: Option<&str>,
        body: Vec<u8>,
    ) -> Result<HttpReply, TransportError> {
        let parsed = parse_url(url)?;
        let request = RequestParts { method: &method, url, content_type, accept, body: body.into() };
        let mut reply = self.exchange(&request, Authentication::Preemptive, None).await?;
        for _ in 0..MAX_CHALLENGE_ANSWERS {
            if reply.0.status != 401 {
                break;
            }
            self.challenges_answered.fetch_add(1, Ordering::Relaxed);
            let authorization = self.answer_challenge(&reply.1, &method, &parsed)?;
            reply = self.exchange(&request, Authentication::Preemptive, Some(authorization)).await?;
        }
        Ok(reply.0)
    }

    /// Sends a request without authentication (Package#3, repository GET). A 503 or 429 is sent again after its
    /// `Retry-After` (capped), and a request that got no answer (refused, reset, timed out) is sent again, to the
    /// next known base URL when there is one; the body is the same bytes each time, so a Package#3 is
    /// retransmitted byte-identical. The last answer or error is returned once the retry budget is spent.
    pub async fn send_plain(
        &self,
        method: Method,
        url: &str,
        content_type: Option<&str>,
        accept: Option<&str>,
        body: Vec<u8>,
    ) -> Result<HttpReply, TransportError> {
        parse_url(url)?;
        let request = RequestParts { method: &method, url, content_type, accept, body: body.into() };
        Ok(self.exchange(&request, Authentication::Off, None).await?.0)
    }

    /// One request with its retries. `first_authorization` is the header of the first attempt (an answer to a
    /// fresh challenge); later attempts answer the cached challenge again.
    async fn exchange(
        &self,
        request: &RequestParts<'_>,
        authentication: Authentication,
        first_authorization: Option<String>,
    ) -> Result<(HttpReply, HeaderMap), TransportError> {
        let servers = self.servers.as_deref();
        let mut base = servers.and_then(|list| list.first_choice(request.url, Instant::now(), draw()));
        let mut backoff = self.retry.backoff;
        let mut first_authorization = first_authorization;
        // Consecutive attempts that got no answer: after one round over every known base, wait before the next.
        let mut silent_in_a_row = 0usize;
        let mut attempt = 0u32;
        loop {
            let target = match (servers, base) {
                (Some(list), Some(index)) => list.rewrite(request.url, index),
                _ => request.url.to_owned(),
            };
            let authorization = match (authentication, first_authorization.take()) {
                (Authentication::Off, _) => None,
                (Authentication::Preemptive, Some(answer)) => Some(answer),
                (Authentication::Preemptive, None) => self.cached_answer(request.method, &parse_url(&target)?)?,
            };
            let outcome = self.send(request, &target, authorization).await;
            let may_retry = attempt < self.retry.max_retries;
            match outcome {
                Ok((reply, headers)) => {
                    let retry_after = headers.get(RETRY_AFTER).and_then(|value| value.to_str().ok());
                    let Some(wait) = self.retry.wait_for_status(reply.status, retry_after, backoff) else {
                        return Ok((reply, headers));
                    };
                    self.unavailable_answers.fetch_add(1, Ordering::Relaxed);
                    if !may_retry {
                        return Ok((reply, headers));
                    }
                    if retry_after.is_none() {
                        backoff = self.retry.next_backoff(backoff);
                    }
                    tracing::debug!(url = %target, status = reply.status, wait_ms = wait.as_millis() as u64, attempt, "server unavailable, retrying");
                    silent_in_a_row = 0;
                    tokio::time::sleep(wait).await;
                    if let (Some(list), Some(_)) = (servers, base)
                        && list.selection() == ServerSelection::RandomPerRequest
                    {
                        base = Some(draw() % list.bases().len().max(1));
                    }
                }
                Err(error) if may_retry && is_unanswered(&error) => {
                    silent_in_a_row += 1;
                    let known = servers.map_or(1, |list| list.bases().len().max(1));
                    if let (Some(list), Some(failed)) = (servers, base) {
                        let next = list.after_failure(failed, Instant::now(), self.retry.down_for, draw());
                        if next != failed {
                            self.failovers.fetch_add(1, Ordering::Relaxed);
                        }
                        base = Some(next);
                    }
                    tracing::debug!(url = %target, %error, attempt, "no answer, retrying");
                    if silent_in_a_row % known == 0 {
                        tokio::time::sleep(backoff).await;
                        backoff = self.retry.next_backoff(backoff);
                    }
                }
                Err(error) => return Err(error),
            }
            attempt += 1;
            self.retries.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One attempt: the request as is to `url`.
    async fn send(
        &self,
        request: &RequestParts<'_>,
        url: &str,
        authorization: Option<String>,
    ) -> Result<(HttpReply, HeaderMap), TransportError> {
        let http_error = |source| TransportError::Http { url: url.to_owned(), source };
        let mut builder =
            self.http.request(request.method.clone(), url).header(DEVICE_ID_HEADER, &self.credentials.device_id);
        if let Some(content_type) = request.content_type {
            builder = builder.header(CONTENT_TYPE, content_type);
        }
        if let Some(accept) = request.accept {
            builder = builder.header(ACCEPT, accept);
        }
        if let Some(authorization) = authorization {
            builder = builder.header(AUTHORIZATION, authorization);
        }
        if !request.body.is_empty() {
            builder = builder.body(request.body.clone());
        }
        let response = builder.send().await.map_err(http_error)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let content_type = headers.get(CONTENT_TYPE).and_then(|value| value.to_str().ok()).map(str::to_owned);
        let body = response.bytes().await.map_err(http_error)?;
        Ok((HttpReply { status, content_type, body }, headers))
    }

    fn cached_answer(&self, method: &Method, url: &Url) -> Result<Option<String>, TransportError> {
        let Ok(mut cached) = self.cached_digest.lock() else { return Ok(None) };
        match cached.as_mut() {
            Some(prompt) => Ok(Some(self.digest_answer(prompt, method, url)?)),
            None => Ok(None),
        }
    }

    fn answer_challenge(&self, headers: &HeaderMap, method: &Method, url: &Url) -> Result<String, TransportError> {
        let challenges: Vec<&str> =
            headers.get_all(WWW_AUTHENTICATE).iter().filter_map(|value: &HeaderValue| value.to_str().ok()).collect();
        let digest_of = |algorithm: &str| {
            challenges.iter().find(|challenge| {
                challenge.starts_with("Digest")
                    && challenge.to_ascii_lowercase().contains(&format!("algorithm={algorithm}"))
            })
        };
        let chosen = digest_of("sha-256").or_else(|| digest_of("\"sha-256\"")).or_else(|| digest_of("md5"));
        if let Some(challenge) = chosen {
            let mut prompt =
                digest_auth::parse(challenge).map_err(|error| TransportError::Digest(error.to_string()))?;
            let answer = self.digest_answer(&mut prompt, method, url)?;
            if let Ok(mut cached) = self.cached_digest.lock() {
                *cached = Some(prompt);
            }
            return Ok(answer);
        }
        if challenges.iter().any(|challenge| challenge.starts_with("Basic")) {
            let user_pass = format!("{}:{}", self.credentials.device_id, self.credentials.password);
            return Ok(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(user_pass)));
        }
        Err(TransportError::NoUsableChallenge)
    }

    fn digest_answer(
        &self,
        prompt: &mut digest_auth::WwwAuthenticateHeader,
        method: &Method,
        url: &Url,
    ) -> Result<String, TransportError> {
        let path_and_query = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let context = digest_auth::AuthContext::new_with_method(
            self.credentials.device_id.as_str(),
            self.credentials.password.as_str(),
            path_and_query.as_str(),
            Option::<&[u8]>::None,
            digest_auth::HttpMethod(method.as_str().to_owned().into()),
        );
        let answer = prompt.respond(&context).map_err(|error| TransportError::Digest(error.to_string()))?;
        Ok(answer.to_header_string())
    }
}

/// The parts of a request that stay the same over its attempts.
struct RequestParts<'a> {
    method: &'a Method,
    url: &'a str,
    content_type: Option<&'a str>,
    accept: Option<&'a str>,
    /// Shared, not copied, between attempts: every attempt sends these very bytes.
    body: bytes::Bytes,
}

/// True when the request got no usable answer (refused, reset, timed out, cut mid-body), as opposed to an
/// answer or a request this client could not even build.
fn is_unanswered(error: &TransportError) -> bool {
    match error {
        TransportError::Http { source, .. } => !source.is_builder() && !source.is_redirect() && !source.is_status(),
        _ => false,
    }
}

/// A random number for picking a server.
fn draw() -> usize {
    rand::random::<u32>() as usize
}

fn parse_url(url: &str) -> Result<Url, TransportError> {
    let parsed = Url::parse(url)
        .map_err(|error| TransportError::InvalidUrl { url: url.to_owned(), reason: error.to_string() })?;
    if parsed.scheme() != "http" && parsed.scheme() != "https" {
        return Err(TransportError::InvalidUrl { url: url.to_owned(), reason: "not http or https".to_owned() });
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http() {
        assert!(parse_url("ftp://x/y").is_err());
        assert!(parse_url("not a url").is_err());
        assert!(parse_url("http://127.0.0.1/dm").is_ok());
    }

    #[test]
    fn a_basic_only_challenge_gets_basic() {
        let transport = Transport::new(Credentials { device_id: "IMEI:1".into(), password: "pw".into() }).unwrap();
        let mut headers = HeaderMap::new();
        headers.append(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"x\""));
        let url = parse_url("http://h/dm").unwrap();
        let answer = transport.answer_challenge(&headers, &Method::POST, &url).unwrap();
        assert_eq!(answer, format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("IMEI:1:pw")));
        assert!(matches!(
            transport.answer_challenge(&HeaderMap::new(), &Method::POST, &url),
            Err(TransportError::NoUsableChallenge)
        ));
    }

    #[test]
    fn sha256_is_preferred_over_md5() {
        let transport = Transport::new(Credentials { device_id: "d".into(), password: "pw".into() }).unwrap();
        let mut headers = HeaderMap::new();
        headers.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Digest realm=\"r\", nonce=\"n\", qop=\"auth\", algorithm=MD5"),
        );
        headers.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Digest realm=\"r\", nonce=\"n\", qop=\"auth\", algorithm=SHA-256"),
        );
        let url = parse_url("http://h/dm?x=1").unwrap();
        let answer = transport.answer_challenge(&headers, &Method::POST, &url).unwrap();
        assert!(answer.contains("SHA-256"), "{answer}");
        assert!(answer.contains("uri=\"/dm?x=1\""), "{answer}");
        // The cached challenge is answered pre-emptively with the next nonce count.
        let again = transport.cached_answer(&Method::POST, &url).unwrap().unwrap();
        assert!(again.contains("nc=00000002"), "{again}");
    }
}
