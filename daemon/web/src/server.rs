//! Serving the pages: `GET <page>` answers the whole document, `GET /events<page>` a stream
//! of server-sent events, each the page's `<main>` fragment again once the state changed
//! (at most every [`MIN_PUSH_INTERVAL`], only when the fragment differs). Read-only: any
//! other method is 405. Rendering runs on blocking threads, never on an async worker.

use crate::auth::Gate;
use crate::pages::{render, PodLogs};
use crate::route::Route;
use crate::timeline::Timeline;
use crate::{layout, Facts};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Router;
use kommit_reconcilers::ClusterState;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// Shortest time between two fragments pushed on one stream.
pub const MIN_PUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Most event streams open at once (beyond: 503).
pub const MAX_STREAMS: usize = 64;

/// Where the facts come from: the daemon implements it over its replicated state and Git
/// side. Every method may block (locks, files, the mirror); the server calls them on
/// blocking threads.
pub trait Source: Send + Sync + 'static {
    /// Calls `f` with the replicated state.
    fn with_state(&self, f: &mut dyn FnMut(&ClusterState));
    /// Calls `f` with the facts now; `timeline` is the server's.
    fn with_facts(&self, timeline: &Timeline, f: &mut dyn FnMut(&Facts<'_>));
    /// The last lines of each container's log of a pod, when it runs on this node.
    fn pod_logs(&self, namespace: &str, name: &str) -> PodLogs;
    /// A value that changes whenever the facts may have (the applied index).
    fn changes(&self) -> watch::Receiver<u64>;
}

/// The page server of one node.
pub struct Web {
    source: Arc<dyn Source>,
    timeline: RwLock<Timeline>,
    streams: Arc<Semaphore>,
}

/// One rendered answer.
struct Answer {
    found: bool,
    body: String,
}

impl Web {
    /// A server over `source`.
    pub fn new(source: Arc<dyn Source>) -> Arc<Web> {
        Arc::new(Web {
            source,
            timeline: RwLock::new(Timeline::new()),
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
        })
    }

    /// Records a rollout sample of the state now; true when one was added.
    pub fn record(&self) -> bool {
        let mut added = false;
        let mut t = self.timeline.write().unwrap_or_else(|p| p.into_inner());
        self.source.with_state(&mut |s| added = t.record(s));
        added
    }

    /// Renders `route`: the whole document, or only its `<main>` fragment.
    fn render(&self, route: &Route, whole: bool) -> Answer {
        let logs = match route {
            Route::Pod { namespace, name } => self.source.pod_logs(namespace, name),
            _ => PodLogs::new(),
        };
        let t = self.timeline.read().unwrap_or_else(|p| p.into_inner());
        let mut out = None;
        self.source.with_facts(&t, &mut |facts| {
            let r = render(route, facts, &logs);
            let body = if whole {
                layout::document(route, &facts.cluster.node, &r.title, &r.main)
            } else {
                r.main.into_string()
            };
            out = Some(Answer {
                found: r.found,
                body,
            });
        });
        out.unwrap_or(Answer {
            found: false,
            body: String::new(),
        })
    }
}

/// Follows the state and records rollout samples until the task is aborted.
pub fn spawn_recorder(web: Arc<Web>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut changes = web.source.changes();
        loop {
            let w = web.clone();
            let _ = tokio::task::spawn_blocking(move || w.record()).await;
            if changes.changed().await.is_err() {
                return;
            }
        }
    })
}

/// The router of one listener, behind `gate`.
pub fn router(web: Arc<Web>, gate: Gate) -> Router {
    Router::new()
        .route("/events", axum::routing::get(events_root))
        .route("/events/", axum::routing::get(events_root))
        .route("/events/{*path}", axum::routing::get(events))
        .fallback(page)
        .with_state(web)
        .layer(axum::middleware::from_fn_with_state(Arc::new(gate), guard))
}

async fn guard(State(gate): State<Arc<Gate>>, req: Request, next: Next) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
            "read-only\n",
        )
            .into_response();
    }
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    if !gate.allows(auth) {
        return (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                r#"Bearer realm="kommit", Basic realm="kommit""#,
            )],
            "401 unauthorized: this listener needs the token of --http-token-file\n",
        )
            .into_response();
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&layout::content_security_policy()) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

type Params = Query<BTreeMap<String, String>>;

fn route_of(path: &str, q: &BTreeMap<String, String>) -> Result<Route, Box<Response>> {
    Route::parse(
        path,
        q.get("ns").map(String::as_str),
        q.get("label").map(String::as_str),
    )
    .map_err(|e| {
        let code = match e {
            crate::route::RouteError::NotFound(_) => StatusCode::NOT_FOUND,
            crate::route::RouteError::Filter(_) => StatusCode::BAD_REQUEST,
        };
        Box::new((code, format!("{e}\n")).into_response())
    })
}

async fn page(State(web): State<Arc<Web>>, uri: axum::http::Uri, Query(q): Params) -> Response {
    let route = match route_of(uri.path(), &q) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let answer = tokio::task::spawn_blocking(move || web.render(&route, true)).await;
    match answer {
        Ok(a) => (
            if a.found {
                StatusCode::OK
            } else {
                StatusCode::NOT_FOUND
            },
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            a.body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("render failed: {e}\n"),
        )
            .into_response(),
    }
}

async fn events_root(state: State<Arc<Web>>, q: Params) -> Response {
    stream(state, "/".into(), q).await
}

async fn events(
    state: State<Arc<Web>>,
    axum::extract::Path(path): axum::extract::Path<String>,
    q: Params,
) -> Response {
    stream(state, format!("/{path}"), q).await
}

async fn stream(State(web): State<Arc<Web>>, path: String, Query(q): Params) -> Response {
    let route = match route_of(&path, &q) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let Ok(permit) = web.streams.clone().try_acquire_owned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many event streams\n").into_response();
    };
    let changes = web.source.changes();
    let init = (web, route, changes, None::<String>, permit);
    let s = futures::stream::unfold(init, |(web, route, mut changes, last, permit)| async move {
        let mut last = last;
        loop {
            if last.is_some() {
                tokio::time::sleep(MIN_PUSH_INTERVAL).await;
                changes.changed().await.ok()?;
            }
            changes.borrow_and_update();
            let (w, r) = (web.clone(), route.clone());
            let main = tokio::task::spawn_blocking(move || w.render(&r, false).body)
                .await
                .ok()?;
            if last.as_deref() != Some(main.as_str()) {
                let ev = Event::default().event("main").data(&main);
                last = Some(main);
                return Some((
                    Ok::<Event, Infallible>(ev),
                    (web, route, changes, last, permit),
                ));
            }
            last.get_or_insert(main);
        }
    });
    Sse::new(s)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

#[cfg(test)]
mod tests;
