//! [`ServerClient`]: what the `vigil` commands that talk to a running `vigil serve` share:
//! the base URL, the bearer token, and turning the server's JSON errors into messages.

use anyhow::{Context, Result, anyhow};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// An HTTP client of one Vigil server.
pub struct ServerClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl ServerClient {
    /// A client of the server at `url` (`http://host:port`), with the token of
    /// `VIGIL_TOKEN` when set.
    pub fn new(url: &str) -> Result<Self> {
        let base = url.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            anyhow::bail!("--server must be an http:// URL, got '{url}'");
        }
        let token = std::env::var("VIGIL_TOKEN").ok().filter(|t| !t.is_empty());
        Ok(Self {
            base,
            token,
            http: reqwest::Client::new(),
        })
    }

    /// GET `path` as text, asking for `accept`.
    pub async fn get_text(&self, path: &str, accept: &str) -> Result<String> {
        let request = self.http.get(self.url(path)).header("accept", accept);
        let response = self.send(request).await?;
        Ok(response.text().await?)
    }

    /// GET `path` as JSON.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let response = self.send(self.http.get(self.url(path))).await?;
        Ok(response.json().await?)
    }

    /// PUT a JSON body to `path`; the JSON answer.
    pub async fn put_json(&self, path: &str, body: &Value) -> Result<Value> {
        let response = self.send(self.http.put(self.url(path)).json(body)).await?;
        Ok(response.json().await?)
    }

    /// POST a JSON body to `path`; the JSON answer.
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value> {
        let response = self.send(self.http.post(self.url(path)).json(body)).await?;
        Ok(response.json().await?)
    }

    /// DELETE `path`; the JSON answer.
    pub async fn delete(&self, path: &str) -> Result<Value> {
        let response = self.send(self.http.delete(self.url(path))).await?;
        Ok(response.json().await?)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends with the token; a non-2xx answer becomes an error with the server's message.
    async fn send(&self, request: RequestBuilder) -> Result<Response> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the Vigil server at {}", self.base))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        Err(server_error(status, &body))
    }
}

/// `server: 404 not_found: no query 7`, with the line and column of SQL errors.
fn server_error(status: StatusCode, body: &Value) -> anyhow::Error {
    let error = &body["error"];
    let code = error["code"].as_str().unwrap_or("error");
    let message = error["message"].as_str().unwrap_or("(no message)");
    let position = match (error["line"].as_u64(), error["column"].as_u64()) {
        (Some(line), Some(column)) => format!(" at line {line}, column {column}"),
        _ => String::new(),
    };
    let hint = if status == StatusCode::UNAUTHORIZED {
        " (set VIGIL_TOKEN to the server's token)"
    } else {
        ""
    };
    anyhow!(
        "server answered {} {code}{position}: {message}{hint}",
        status.as_u16()
    )
}
