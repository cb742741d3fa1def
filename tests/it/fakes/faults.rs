//! One fault-injection layer for every fake: a test queues faults per route, and the next
//! request to that route meets one. Routes match by the end of the path, so
//! `/sendMessage` names Telegram's method whatever the bot token, and `/upload/` the
//! TikTok upload host; a method in front (`PUT /bucket/key`) matches that method only.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use futures_util::StreamExt as _;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The request is processed, then the connection is closed before any answer: the
    /// client cannot know whether it took effect.
    Drop,
    /// The request is processed and the status line goes out, but the body is cut off
    /// half-way.
    Cut,
    /// The request is processed, then answered 200 with a body that is not JSON (a proxy's
    /// page).
    Garble,
    /// Answered 502 without reaching the service: nothing took effect.
    BadGateway,
    /// Processed at once, answered this much later (a slow service).
    Stall(Duration),
}

#[derive(Clone, Default)]
pub struct Faults {
    queued: Arc<Mutex<HashMap<String, VecDeque<Fault>>>>,
    met: Arc<Mutex<Vec<(String, Fault)>>>,
}

impl Faults {
    /// The next request whose path ends with `route` meets `fault` (faults queue up).
    pub fn inject(&self, route: &str, fault: Fault) -> &Self {
        self.queued
            .lock()
            .unwrap()
            .entry(route.to_owned())
            .or_default()
            .push_back(fault);
        self
    }

    /// Every fault a request met so far, with the request's path.
    pub fn met(&self) -> Vec<(String, Fault)> {
        self.met.lock().unwrap().clone()
    }

    /// Faults still waiting for their request.
    pub fn pending(&self) -> usize {
        self.queued
            .lock()
            .unwrap()
            .values()
            .map(VecDeque::len)
            .sum()
    }

    fn take(&self, method: &str, path: &str) -> Option<Fault> {
        let mut queued = self.queued.lock().unwrap();
        let matches = |route: &str| match route.split_once(' ') {
            Some((m, tail)) => m == method && path.ends_with(tail),
            None => path.ends_with(route),
        };
        let fault = queued
            .iter_mut()
            .filter(|(route, _)| matches(route))
            .find_map(|(_, faults)| faults.pop_front())?;
        self.met
            .lock()
            .unwrap()
            .push((path.to_owned(), fault.clone()));
        Some(fault)
    }

    /// `router` with the faults in front of every route.
    pub fn wrap(&self, router: Router) -> Router {
        router.layer(middleware::from_fn_with_state(self.clone(), inject))
    }
}

async fn inject(State(faults): State<Faults>, request: Request, next: Next) -> Response {
    let Some(fault) = faults.take(request.method().as_str(), request.uri().path()) else {
        return next.run(request).await;
    };
    match fault {
        Fault::BadGateway => plain(502, "text/html", b"<html>502 Bad Gateway</html>".to_vec()),
        Fault::Stall(wait) => {
            let answer = next.run(request).await;
            tokio::time::sleep(wait).await;
            answer
        }
        Fault::Garble => {
            let _ = next.run(request).await;
            plain(
                200,
                "text/html",
                b"<html><body>upstream hiccup</body></html>".to_vec(),
            )
        }
        Fault::Cut => {
            let answer = next.run(request).await;
            let status = answer.status();
            let content_type = answer
                .headers()
                .get(header::CONTENT_TYPE)
                .cloned()
                .unwrap_or_else(|| "application/json".parse().unwrap());
            let body = axum::body::to_bytes(answer.into_body(), usize::MAX)
                .await
                .unwrap();
            cut(status, content_type, &body)
        }
        Fault::Drop => {
            let _ = next.run(request).await;
            dropped()
        }
    }
}

fn plain(status: u16, content_type: &str, body: Vec<u8>) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap()
}

/// Announces the full length (at least one byte more than sent), sends half, then fails
/// the stream: the client sees the status and a body cut off.
fn cut(status: StatusCode, content_type: header::HeaderValue, body: &[u8]) -> Response {
    let half = Bytes::copy_from_slice(&body[..body.len() / 2]);
    let failed = futures_util::stream::once(async {
        // Lets the first half reach the client before the connection drops.
        tokio::time::sleep(Duration::from_millis(30)).await;
        Err::<Bytes, _>(std::io::Error::other("cut off"))
    });
    let chunks = futures_util::stream::iter([Ok(half)]).chain(failed);
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, body.len().max(1))
        .body(Body::from_stream(chunks))
        .unwrap()
}

/// A body that fails before its first byte: the server closes the connection without
/// writing an answer.
fn dropped() -> Response {
    let failed = futures_util::stream::once(async {
        Err::<Bytes, _>(std::io::Error::other("connection dropped"))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_LENGTH, 64)
        .body(Body::from_stream(failed))
        .unwrap()
}
