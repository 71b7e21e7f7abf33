//! The operator API as tests call it: a request sent and its JSON answer read in one step, the status and body
//! in the panic message when the answer is not the JSON asked for.

use std::future::Future;

use serde::de::DeserializeOwned;

/// `request.json_answer().await` in place of `request.send().await.unwrap().json().await.unwrap()`.
pub trait JsonAnswer {
    /// Sends the request and reads its answer as `T`, whatever the status; panics, with the status and the
    /// body, when there is no answer or it is not `T`.
    fn json_answer<T: DeserializeOwned>(self) -> impl Future<Output = T> + Send;
}

impl JsonAnswer for reqwest::RequestBuilder {
    async fn json_answer<T: DeserializeOwned>(self) -> T {
        let response = self.send().await.unwrap_or_else(|error| panic!("no answer: {error}"));
        let (status, url) = (response.status(), response.url().clone());
        let body = response.bytes().await.unwrap_or_else(|error| panic!("{url}: {status}, no body: {error}"));
        serde_json::from_slice(&body).unwrap_or_else(|error| {
            panic!("{url}: {status}, not the JSON asked for ({error}): {}", String::from_utf8_lossy(&body))
        })
    }
}
