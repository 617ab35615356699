//! Mimo's telemetry service: receives every service instance's resource reports and keeps
//! the latest one of each instance, bounded in the number of instances it remembers, and
//! raises alerts from the conditions instances report.

mod alerts;
mod error;
mod instances;
mod service;

pub use alerts::AlertLimits;
pub use error::TelemetryError;
pub use instances::{InstanceTable, TelemetryConfig};
pub use service::{serve, TelemetryService};
