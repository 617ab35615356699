//! Mimo's telemetry service: receives every service instance's resource reports and keeps
//! the latest one of each instance, bounded in the number of instances it remembers, and
//! raises alerts from the conditions instances report.

mod alerts;
mod error;
mod history;
mod http;
mod instances;
mod prometheus;
mod service;
mod thresholds;

pub use alerts::AlertLimits;
pub use error::TelemetryError;
pub use instances::{InstanceTable, TelemetryConfig};
pub use prometheus::exposition;
pub use service::{serve, serve_with_http, TelemetryService};
pub use thresholds::{Threshold, Thresholds, MAX_THRESHOLDS};
