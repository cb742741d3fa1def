//! Fake servers for the paid services, written from their public documentation. Each one
//! checks what a client sends (auth header form, content type, required fields) and
//! replays documented answers. Tests queue scenarios; a request takes the next one, and an
//! empty queue means the normal, successful answer.

pub mod elevenlabs;
pub mod faults;
pub mod openrouter;
pub mod pexels;
pub mod proxy;
pub mod publish_support;
pub mod telegram;
pub mod tiktok;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use futures_util::StreamExt as _;
use tiktok_factory::engine::RetryPolicy;

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Wall-clock arrival, comparable with the unix times fakes hand out.
    pub at: SystemTime,
}

impl Seen {
    pub fn new(method: Method, uri: &Uri, headers: HeaderMap, body: Bytes) -> Self {
        Self {
            method,
            path: uri.path().to_owned(),
            query: uri.query().unwrap_or_default().to_owned(),
            headers,
            body,
            at: SystemTime::now(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn query_param(&self, name: &str) -> Option<String> {
        url_pairs(&self.query)
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// Percent-decoded `key=value` pairs of a query string.
pub fn url_pairs(query: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://fake/?{query}"))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// What a fake shares with its handler: the key it accepts, the queued scenarios and
/// everything it has seen.
pub struct Shared<S> {
    pub key: String,
    pub base_url: String,
    queue: Mutex<VecDeque<S>>,
    seen: Mutex<Vec<Seen>>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    /// Client addresses seen: one per connection.
    peers: Mutex<std::collections::HashSet<std::net::SocketAddr>>,
}

impl<S> Shared<S> {
    /// Counts a request as in flight until the guard drops.
    pub fn enter(&self) -> InFlight<'_> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(&self.in_flight)
    }

    pub fn record(&self, seen: Seen) {
        self.seen.lock().unwrap().push(seen);
    }

    pub fn next(&self) -> Option<S> {
        self.queue.lock().unwrap().pop_front()
    }
}

pub struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running fake; the server stops when this is dropped.
pub struct Fake<S> {
    pub base_url: String,
    /// Cut, garble, stall or fail the next answer of a route.
    pub faults: faults::Faults,
    shared: Arc<Shared<S>>,
    task: tokio::task::JoinHandle<()>,
}

impl<S: Send + 'static> Fake<S> {
    /// Binds 127.0.0.1 on a free port; `path` is appended to the address to form the
    /// base URL clients are given (e.g. `/api/v1`).
    pub async fn start(
        key: &str,
        path: &str,
        router: impl FnOnce(Arc<Shared<S>>) -> Router,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}{path}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            key: key.to_owned(),
            base_url: base_url.clone(),
            queue: Mutex::default(),
            seen: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
            peers: Mutex::default(),
        });
        let faults = faults::Faults::default();
        let peers = Arc::clone(&shared);
        let app = faults
            .wrap(router(Arc::clone(&shared)))
            .layer(axum::middleware::from_fn(
                move |ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
                      request: axum::extract::Request,
                      next: axum::middleware::Next| {
                    peers.peers.lock().unwrap().insert(peer);
                    next.run(request)
                },
            ));
        let task = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
            .unwrap();
        });
        Self {
            base_url,
            faults,
            shared,
            task,
        }
    }

    pub fn push(&self, scenario: S) -> &Self {
        self.shared.queue.lock().unwrap().push_back(scenario);
        self
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    pub fn requests(&self) -> usize {
        self.shared.seen.lock().unwrap().len()
    }

    pub fn requests_to(&self, path: &str) -> usize {
        self.seen().iter().filter(|s| s.path == path).count()
    }

    /// How many connections clients opened to the fake.
    pub fn connections(&self) -> usize {
        self.shared.peers.lock().unwrap().len()
    }

    /// The most requests the fake was handling at one time.
    pub fn most_in_flight(&self) -> usize {
        self.shared.most_in_flight.load(Ordering::SeqCst)
    }
}

impl<S> Drop for Fake<S> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Unix seconds at least `wait` from now (rounded up).
pub fn unix_in(wait: Duration) -> u64 {
    let at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + wait;
    at.as_secs() + u64::from(at.subsec_nanos() > 0)
}

pub fn unix(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

/// Quick retries for tests: three attempts, millisecond backoff, server waits honoured up
/// to five seconds.
pub fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        base: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
    }
}

pub fn json(status: u16, body: &serde_json::Value) -> Response {
    bytes(status, "application/json", body.to_string().into_bytes())
}

pub fn bytes(status: u16, content_type: &str, body: Vec<u8>) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap()
}

/// Announces the full length but sends only the first half, then closes: the client sees
/// a body cut off mid-way. (A streamed body, so the server frames it by the header alone.)
pub fn truncated(status: u16, content_type: &str, body: &[u8]) -> Response {
    let half = Bytes::copy_from_slice(&body[..body.len() / 2]);
    // The pause lets the first half reach the client before the connection drops.
    let cut = futures_util::stream::once(async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Err(std::io::Error::other("cut off"))
    });
    let chunks = futures_util::stream::iter([Ok(half)]).chain(cut);
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::from_stream(chunks))
        .unwrap()
}

pub fn with_header(mut response: Response, name: &'static str, value: &str) -> Response {
    response.headers_mut().insert(name, value.parse().unwrap());
    response
}
