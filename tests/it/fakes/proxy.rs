//! A pass-through HTTP proxy with the shared fault layer in front, for services the tests
//! run for real (the S3 server): the request reaches the real service, and the fault
//! decides what the client gets back.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::Response;

use super::faults::Faults;
use super::publish_support::Server;

pub struct Proxy {
    server: Server,
}

struct Target {
    base: String,
    http: reqwest::Client,
    /// A request header the proxy does not pass on.
    dropped: Option<header::HeaderName>,
}

impl Proxy {
    /// Forwards everything to `base` (e.g. `http://127.0.0.1:5000`).
    pub async fn start(base: &str) -> Self {
        Self::with(base, None).await
    }

    /// Forwards everything to `base` but the request header `dropped`: a service that
    /// ignores that header, as some S3 implementations ignore `If-None-Match`.
    pub async fn dropping(base: &str, dropped: header::HeaderName) -> Self {
        Self::with(base, Some(dropped)).await
    }

    async fn with(base: &str, dropped: Option<header::HeaderName>) -> Self {
        let target = Arc::new(Target {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            dropped,
        });
        let router = Router::new().fallback(forward).with_state(target);
        Self {
            server: Server::start(router).await,
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn faults(&self) -> &Faults {
        &self.server.faults
    }
}

async fn forward(State(target): State<Arc<Target>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let mut forwarded = target
        .http
        .request(parts.method, format!("{}{path}", target.base))
        .body(body);
    for (name, value) in &parts.headers {
        if !matches!(
            *name,
            header::HOST | header::EXPECT | header::CONTENT_LENGTH
        ) && target.dropped.as_ref() != Some(name)
        {
            forwarded = forwarded.header(name, value);
        }
    }
    let answer = forwarded.send().await.unwrap();
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !matches!(
            *name,
            header::CONTENT_LENGTH | header::TRANSFER_ENCODING | header::CONNECTION
        ) {
            response = response.header(name, value);
        }
    }
    let bytes = answer.bytes().await.unwrap();
    response.body(Body::from(bytes)).unwrap()
}
