//! The resource reporter every Mimo service runs: it measures the process it lives in, adds
//! the service's own gauges, and streams a report to the telemetry service at a fixed
//! interval, reconnecting with backoff and never blocking the service.

mod process;
mod push;

pub use process::{host_name, process_stats};
pub use push::{ConditionSource, GaugeSource, Reporter, ReporterConfig};
