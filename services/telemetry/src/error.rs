//! The telemetry service's errors and their one mapping to gRPC status codes.

use tonic::{Code, Status};

/// Everything the telemetry service can refuse.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A report lacks its instance identity.
    #[error(
        "report has no instance: set instance.service, instance.host and instance.instance_id"
    )]
    MissingInstance,
    /// A report's identity or gauges are malformed or over a bound.
    #[error("bad report: {0}")]
    BadReport(String),
    /// A reported condition is malformed or over a bound.
    #[error("bad condition in report: {0}")]
    BadCondition(String),
    /// Too many instances are reporting at once.
    #[error("instance limit reached: {limit} instances reported within the last {fresh_secs} s")]
    TooManyInstances {
        /// The bound.
        limit: usize,
        /// Window within which an instance counts as live.
        fresh_secs: u64,
    },
}

impl From<TelemetryError> for Status {
    fn from(error: TelemetryError) -> Self {
        let code = match error {
            TelemetryError::MissingInstance
            | TelemetryError::BadCondition(_)
            | TelemetryError::BadReport(_) => Code::InvalidArgument,
            TelemetryError::TooManyInstances { .. } => Code::ResourceExhausted,
        };
        Status::new(code, error.to_string())
    }
}
