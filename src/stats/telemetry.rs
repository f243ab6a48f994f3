//! The server's own HTTP figures: request counts and a latency histogram by
//! method, route template and status, recorded by a middleware on every
//! request.
//!
//! The hot path is a read lock on a map keyed by route template (a borrowed
//! `&str` lookup, no allocation), a linear scan of that route's few
//! `(method, status)` cells, and three relaxed atomic increments. Routes are
//! the router's templates (`/api/v1/monitoring/incidents/{id}`), never raw
//! paths, and unmatched paths share one `unmatched` label, so the number of
//! series stays bounded whatever clients send.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

/// Upper bounds of the request latency histogram, in seconds.
pub const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The route label of requests no route matched.
pub const UNMATCHED: &str = "unmatched";

/// Counters of one `(route, method, status)`.
#[derive(Debug, Default)]
struct Cell {
    count: AtomicU64,
    sum_nanos: AtomicU64,
    /// Per-bucket (not cumulative) counts; the last slot is above every bound.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
}

#[derive(Debug, Default)]
struct RouteCells {
    cells: RwLock<Vec<(&'static str, u16, Arc<Cell>)>>,
}

/// HTTP request figures of this process since it started.
#[derive(Debug)]
pub struct HttpMetrics {
    routes: RwLock<HashMap<Box<str>, Arc<RouteCells>>>,
    started: Instant,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics {
            routes: RwLock::new(HashMap::new()),
            started: Instant::now(),
        }
    }
}

/// One `(method, route, status)` series read back for the exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSeries {
    /// Request method (`GET`, `POST`, ... or `OTHER`).
    pub method: &'static str,
    /// Route template, or `unmatched`.
    pub route: String,
    /// Response status code.
    pub status: u16,
    /// Requests answered.
    pub count: u64,
    /// Total time spent answering them, in seconds.
    pub sum_seconds: f64,
    /// Cumulative counts per bound of [`LATENCY_BUCKETS`].
    pub cumulative: Vec<u64>,
}

/// The method label: the standard methods by name, anything else `OTHER`
/// (so made-up methods cannot create series).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

impl HttpMetrics {
    /// Records one answered request.
    pub fn record(&self, method: &'static str, route: &str, status: u16, elapsed: Duration) {
        let cell = self.cell(route, method, status);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let secs = elapsed.as_secs_f64();
        let index = LATENCY_BUCKETS.partition_point(|&b| b < secs);
        cell.count.fetch_add(1, Ordering::Relaxed);
        cell.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        cell.buckets[index].fetch_add(1, Ordering::Relaxed);
    }

    fn cell(&self, route: &str, method: &'static str, status: u16) -> Arc<Cell> {
        let route_cells = {
            let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
            routes.get(route).cloned()
        };
        let route_cells = match route_cells {
            Some(r) => r,
            None => self
                .routes
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .entry(route.into())
                .or_default()
                .clone(),
        };
        {
            let cells = route_cells.cells.read().unwrap_or_else(|e| e.into_inner());
            if let Some((_, _, c)) = cells.iter().find(|(m, s, _)| *m == method && *s == status) {
                return c.clone();
            }
        }
        let mut cells = route_cells.cells.write().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, c)) = cells.iter().find(|(m, s, _)| *m == method && *s == status) {
            return c.clone();
        }
        let c = Arc::new(Cell::default());
        cells.push((method, status, c.clone()));
        c
    }

    /// Every series, sorted by route, method and status.
    pub fn snapshot(&self) -> Vec<HttpSeries> {
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for (route, cells) in routes.iter() {
            let cells = cells.cells.read().unwrap_or_else(|e| e.into_inner());
            for (method, status, cell) in cells.iter() {
                let mut running = 0;
                let cumulative: Vec<u64> = cell.buckets[..LATENCY_BUCKETS.len()]
                    .iter()
                    .map(|b| {
                        running += b.load(Ordering::Relaxed);
                        running
                    })
                    .collect();
                let count = cell.count.load(Ordering::Relaxed).max(running);
                out.push(HttpSeries {
                    method,
                    route: route.to_string(),
                    status: *status,
                    count,
                    sum_seconds: cell.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
                    cumulative,
                });
            }
        }
        out.sort_by(|a, b| (&a.route, a.method, a.status).cmp(&(&b.route, b.method, b.status)));
        out
    }

    /// Seconds since the process started serving.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

/// The middleware: times the request and records it under its route template.
pub async fn track(
    State(metrics): State<Arc<HttpMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    let route = route.as_ref().map(|r| r.as_str()).unwrap_or(UNMATCHED);
    metrics.record(method, route, response.status().as_u16(), started.elapsed());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_per_route_method_and_status() {
        let m = HttpMetrics::default();
        m.record("GET", "/healthz", 200, Duration::from_millis(2));
        m.record("GET", "/healthz", 200, Duration::from_millis(30));
        m.record("POST", "/graphql", 400, Duration::from_secs(20));
        let s = m.snapshot();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].route, "/graphql");
        assert_eq!(s[0].count, 1);
        // 20 s is above every bound: only the implicit +Inf bucket has it.
        assert_eq!(*s[0].cumulative.last().unwrap(), 0);
        let health = &s[1];
        assert_eq!(health.count, 2);
        assert!((health.sum_seconds - 0.032).abs() < 1e-9);
        // 2 ms falls in le=0.0025, 30 ms in le=0.05; counts are cumulative.
        assert_eq!(health.cumulative[0], 0);
        assert_eq!(health.cumulative[1], 1);
        assert_eq!(health.cumulative[5], 2);
        assert_eq!(*health.cumulative.last().unwrap(), 2);
    }

    #[test]
    fn made_up_methods_share_one_label() {
        let weird = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&weird), "OTHER");
        assert_eq!(method_label(&Method::GET), "GET");
    }

    #[test]
    fn a_value_on_a_bound_belongs_to_that_bucket() {
        let m = HttpMetrics::default();
        m.record("GET", "/", 200, Duration::from_millis(5));
        assert_eq!(m.snapshot()[0].cumulative[2], 1);
        assert_eq!(m.snapshot()[0].cumulative[1], 0);
    }
}
