//! [`HttpMetricsLayer`]: requests and their durations, by method and status class.

use std::sync::OnceLock;

use ::metrics::{Counter, Histogram, counter, histogram};
use http::Method;

mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::HttpMetricsLayer;
pub use service::HttpMetrics;

/// The methods with a label of their own; any other is `other`.
const METHODS: [(Method, &str); 9] = [
    (Method::GET, "GET"),
    (Method::POST, "POST"),
    (Method::PUT, "PUT"),
    (Method::DELETE, "DELETE"),
    (Method::PATCH, "PATCH"),
    (Method::HEAD, "HEAD"),
    (Method::OPTIONS, "OPTIONS"),
    (Method::CONNECT, "CONNECT"),
    (Method::TRACE, "TRACE"),
];
/// Status classes, then `error` for a call that ended in an error instead of a response.
pub(super) const OUTCOMES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"];

/// One counter and one histogram per (method, outcome), each pair registered the first time
/// a request of that method ends with that outcome: `/metrics` shows what was seen, at most
/// 60 pairs, and no zeros for what never happened.
#[derive(Debug)]
pub(super) struct Handles {
    slots: Box<[OnceLock<(Counter, Histogram)>]>,
}

impl Handles {
    pub(super) fn new() -> Self {
        Self {
            slots: (0..(METHODS.len() + 1) * OUTCOMES.len())
                .map(|_| OnceLock::new())
                .collect(),
        }
    }

    pub(super) fn slot(method: &Method) -> usize {
        METHODS
            .iter()
            .position(|(m, _)| m == method)
            .unwrap_or(METHODS.len())
            * OUTCOMES.len()
    }

    /// The pair at `index`, registered with the installed recorder on first use.
    pub(super) fn at(&self, index: usize) -> &(Counter, Histogram) {
        self.slots[index].get_or_init(|| {
            let method = METHODS
                .get(index / OUTCOMES.len())
                .map_or("other", |(_, name)| *name);
            let outcome = OUTCOMES[index % OUTCOMES.len()];
            (
                counter!("rampart_http_requests_total", "method" => method, "status" => outcome),
                histogram!("rampart_http_request_duration_seconds", "method" => method, "status" => outcome),
            )
        })
    }
}
