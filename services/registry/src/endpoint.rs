//! Skill-host endpoints as the registry stores and hands them out: plain `host:port`, the
//! target form every gRPC library accepts (Python's and Go's refuse an `http://` prefix).

/// Longest endpoint accepted.
const MAX_ENDPOINT_BYTES: usize = 256;

/// Returns `endpoint` as `host:port`, dropping an `http://` prefix; says what is wrong with
/// anything else.
pub(crate) fn normalize_endpoint(endpoint: &str) -> Result<String, String> {
    let trimmed = endpoint.trim();
    if trimmed.is_empty() {
        return Err("is empty; give the skill-host's gRPC address as host:port".into());
    }
    if trimmed.len() > MAX_ENDPOINT_BYTES {
        return Err(format!(
            "is {} bytes; the limit is {MAX_ENDPOINT_BYTES}",
            trimmed.len()
        ));
    }
    let address = trimmed.strip_prefix("http://").unwrap_or(trimmed);
    let address = address.strip_suffix('/').unwrap_or(address);
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!("{endpoint:?} has no port; give host:port"));
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._[]:".contains(c));
    if !host_ok {
        return Err(format!("{endpoint:?} does not name a host; give host:port"));
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(format!("{host}:{port}")),
        _ => Err(format!("{endpoint:?} has no valid port (1..=65535)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_host_and_port_without_a_scheme() {
        assert_eq!(
            normalize_endpoint("http://10.0.0.5:50052").unwrap(),
            "10.0.0.5:50052"
        );
        assert_eq!(
            normalize_endpoint(" host-1.example:7 ").unwrap(),
            "host-1.example:7"
        );
        assert_eq!(normalize_endpoint("[::1]:50052").unwrap(), "[::1]:50052");
        for bad in [
            "",
            "no-port",
            "host:0",
            "host:99999",
            "not a url\0:1",
            "https://x:1",
            ":1",
        ] {
            assert!(normalize_endpoint(bad).is_err(), "{bad:?} accepted");
        }
    }
}
