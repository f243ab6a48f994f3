//! Latency and throughput summaries.

use std::time::Duration;

use serde_json::{Value, json};

/// What one measured run produced.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Successful operations.
    pub ok: u64,
    /// Failed operations (non-200, GraphQL errors, transport errors).
    pub errors: u64,
    /// Items processed (events for batches; equals `ok` otherwise).
    pub items: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Latencies of successful operations, sorted.
    pub latencies: Vec<Duration>,
    /// The first error seen, if any.
    pub first_error: Option<String>,
}

impl Summary {
    /// Builds a summary, sorting the latencies.
    pub fn new(
        ok: u64,
        errors: u64,
        items: u64,
        elapsed: Duration,
        mut latencies: Vec<Duration>,
        first_error: Option<String>,
    ) -> Summary {
        latencies.sort_unstable();
        Summary {
            ok,
            errors,
            items,
            elapsed,
            latencies,
            first_error,
        }
    }

    /// Operations per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// Items per second.
    pub fn items_per_sec(&self) -> f64 {
        self.items as f64 / self.elapsed.as_secs_f64()
    }

    /// The `q` quantile of latencies (nearest rank), in milliseconds.
    pub fn ms(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank =
            ((q * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[rank - 1].as_secs_f64() * 1000.0
    }

    /// As JSON for the results file.
    pub fn to_json(&self) -> Value {
        json!({
            "ok": self.ok,
            "errors": self.errors,
            "items": self.items,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "ops_per_s": self.ops_per_sec(),
            "items_per_s": self.items_per_sec(),
            "p50_ms": self.ms(0.50),
            "p95_ms": self.ms(0.95),
            "p99_ms": self.ms(0.99),
            "max_ms": self.ms(1.0),
            "first_error": self.first_error,
        })
    }
}
