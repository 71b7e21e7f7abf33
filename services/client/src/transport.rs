//! HTTP transport of a device (5.1): Package#1 with HTTP authentication, Package#3 to the CONT URL, Data Repository
//! requests (HGET, HPUT, HPOST, Generic Alerts, bootstrap).
//!
//! Plain HTTP and HTTPS both go through reqwest; this build enables no TLS backend, so only `http://` URLs work
//! for now. Authentication answers the server's 401: Digest with SHA-256 when offered, else MD5 (the
//! `digest_auth` crate), else Basic. The last Digest challenge is kept and answered pre-emptively on the next
//! authenticated request (nonce count incremented), so a session costs one round trip when the nonce is fresh.
//! Package#3 is never authenticated: the server binds the session URL to the device.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Method, Url};

use crate::device::Credentials;

/// The header naming the device on every request (5.1.2).
pub const DEVICE_ID_HEADER: &str = "OMADM-DevID";

/// Why an HTTP exchange failed.
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

/// One device's HTTP client.
#[derive(Debug)]
pub struct Transport {
    http: reqwest::Client,
    credentials: Credentials,
    /// The last Digest challenge, answered pre-emptively with the next nonce count.
    cached_digest: Mutex<Option<digest_auth::WwwAuthenticateHeader>>,
    /// How many 401 challenges this transport had to answer (a measure of round trips spent on authentication).
    challenges_answered: AtomicU64,
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
        Transport { http, credentials, cached_digest: Mutex::new(None), challenges_answered: AtomicU64::new(0) }
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// How many times a request had to be repeated to answer a 401 challenge.
    pub fn challenges_answered(&self) -> u64 {
        self.challenges_answered.load(Ordering::Relaxed)
    }

    /// Sends a request with HTTP authentication: pre-emptive Digest when a challenge is cached, else none; on a
    /// 401, once more with the answer to the best challenge.
    pub async fn send_authenticated(
        &self,
        method: Method,
        url: &str,
        content_type: Option<&str>,
        accept: Option<&str>,
        body: Vec<u8>,
    ) -> Result<HttpReply, TransportError> {
        let parsed = parse_url(url)?;
        let preemptive = self.cached_answer(&method, &parsed)?;
        let first = self.send(method.clone(), url, content_type, accept, body.clone(), preemptive).await?;
        if first.0.status != 401 {
            return Ok(first.0);
        }
        self.challenges_answered.fetch_add(1, Ordering::Relaxed);
        let authorization = self.answer_challenge(&first.1, &method, &parsed)?;
        Ok(self.send(method, url, content_type, accept, body, Some(authorization)).await?.0)
    }

    /// Sends a request without authentication (Package#3, repository GET).
    pub async fn send_plain(
        &self,
        method: Method,
        url: &str,
        content_type: Option<&str>,
        accept: Option<&str>,
        body: Vec<u8>,
    ) -> Result<HttpReply, TransportError> {
        parse_url(url)?;
        Ok(self.send(method, url, content_type, accept, body, None).await?.0)
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        content_type: Option<&str>,
        accept: Option<&str>,
        body: Vec<u8>,
        authorization: Option<String>,
    ) -> Result<(HttpReply, HeaderMap), TransportError> {
        let http_error = |source| TransportError::Http { url: url.to_owned(), source };
        let mut request = self.http.request(method, url).header(DEVICE_ID_HEADER, &self.credentials.device_id);
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        if let Some(accept) = accept {
            request = request.header(ACCEPT, accept);
        }
        if let Some(authorization) = authorization {
            request = request.header(AUTHORIZATION, authorization);
        }
        if !body.is_empty() {
            request = request.body(body);
        }
        let response = request.send().await.map_err(http_error)?;
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
