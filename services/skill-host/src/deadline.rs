//! The deadline of a call, from the caller's `grpc-timeout` header.

use std::time::Duration;
use tonic::metadata::MetadataMap;

/// Returns the caller's timeout from `grpc-timeout`, or `default`; never more than `max`.
pub fn call_timeout(metadata: &MetadataMap, default: Duration, max: Duration) -> Duration {
    metadata
        .get("grpc-timeout")
        .and_then(|value| value.to_str().ok())
        .and_then(parse_grpc_timeout)
        .unwrap_or(default)
        .min(max)
}

/// Parses a `grpc-timeout` value: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit_and_refuses_garbage() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("10x"), None);
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
    }

    #[test]
    fn caller_timeout_is_capped_and_defaulted() {
        let mut metadata = MetadataMap::new();
        let default = Duration::from_secs(60);
        let max = Duration::from_secs(100);
        assert_eq!(call_timeout(&metadata, default, max), default);
        metadata.insert("grpc-timeout", "3H".parse().unwrap());
        assert_eq!(call_timeout(&metadata, default, max), max);
    }
}
