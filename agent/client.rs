//! A client of the agent's operations API, for `autopilot scale` and `autopilot operations`.
//! This module only performs I/O.

use std::time::Duration;

use crate::backup::jobs::Job;
use crate::http::{Accepted, JobAccepted};
use crate::operations::OperationRecord;

/// Why a call to the agent failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach the agent at {url}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("the agent answered {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("the agent's answer from {url} is not what was expected")]
    Decode { url: String, source: reqwest::Error },
}

/// The agent's API at a base URL such as `http://127.0.0.1:9464`.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    /// Bearer token (`AUTOPILOT_TOKEN`), when the API requires one.
    token: Option<String>,
}

impl Client {
    /// A client of the API at `base`, authenticating with `AUTOPILOT_TOKEN` when it is set.
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap_or_default();
        let token = std::env::var("AUTOPILOT_TOKEN").ok().filter(|t| !t.trim().is_empty());
        Self { base: base.trim_end_matches('/').to_owned(), http, token }
    }

    fn authed(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => r.bearer_auth(t.trim()),
            None => r,
        }
    }

    /// Submit a job: `path` under `/api/v1/`, such as `clusters/c/backups`.
    pub async fn submit(&self, path: &str, body: &serde_json::Value) -> Result<JobAccepted, Error> {
        let url = format!("{}/api/v1/{path}", self.base);
        self.answer(url.clone(), self.http.post(&url).json(body)).await
    }

    /// One job.
    pub async fn job(&self, id: &str) -> Result<Job, Error> {
        let url = format!("{}/api/v1/jobs/{id}", self.base);
        self.answer(url.clone(), self.http.get(&url)).await
    }

    /// Every job the agent remembers.
    pub async fn jobs(&self) -> Result<Vec<Job>, Error> {
        let url = format!("{}/api/v1/jobs", self.base);
        self.answer(url.clone(), self.http.get(&url)).await
    }

    async fn answer<T: serde::de::DeserializeOwned>(
        &self,
        url: String,
        r: reqwest::RequestBuilder,
    ) -> Result<T, Error> {
        let response = self.authed(r).send().await.map_err(|source| Error::Unreachable { url: url.clone(), source })?;
        let status = response.status();
        if !status.is_success() {
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            let message = body.get("error").and_then(|e| e.as_str()).unwrap_or("no reason given").to_owned();
            return Err(Error::Refused { status: status.as_u16(), message });
        }
        response.json().await.map_err(|source| Error::Decode { url, source })
    }

    /// Ask for `cluster` to be scaled to `to` brokers.
    pub async fn scale(&self, cluster: &str, to: u32, drain_timeout: Option<Duration>) -> Result<Accepted, Error> {
        let url = format!("{}/api/v1/clusters/{cluster}/scale", self.base);
        let mut body = serde_json::json!({"desired_brokers": to});
        if let Some(d) = drain_timeout {
            body["drain_timeout"] = humantime::format_duration(d).to_string().into();
        }
        self.answer(url.clone(), self.http.post(&url).json(&body)).await
    }

    /// One operation.
    pub async fn operation(&self, id: &str) -> Result<OperationRecord, Error> {
        let url = format!("{}/api/v1/operations/{id}", self.base);
        self.answer(url.clone(), self.http.get(&url)).await
    }

    /// All operations, newest first.
    pub async fn operations(&self, cluster: Option<&str>) -> Result<Vec<OperationRecord>, Error> {
        let url = format!("{}/api/v1/operations", self.base);
        let query: Vec<(&str, &str)> = cluster.map(|c| ("cluster", c)).into_iter().collect();
        self.answer(url.clone(), self.http.get(&url).query(&query)).await
    }
}
