//! Tool-call counts per skill and tool, reported to telemetry with OpenTelemetry's MCP
//! attributes (`mcp.server.name`, `mcp.tool.name`): calls, failed calls, and the seconds
//! spent in them. Bounded: past [`MAX_TOOLS`] pairs, further tools count under `_other`.

use mimo_proto::v1::Gauge;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// (skill, tool) pairs counted apart at most.
pub const MAX_TOOLS: usize = 200;

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    calls: u64,
    errors: u64,
    seconds: f64,
}

/// The counts, shared by the service and its reporter.
#[derive(Debug, Default)]
pub struct CallStats {
    counts: Mutex<HashMap<(String, String), Counts>>,
}

impl CallStats {
    /// Counts one call of `tool` of `skill` that took `elapsed` and `failed` or not (a
    /// transport failure or the tool's own `isError`).
    pub fn record(&self, skill: &str, tool: &str, elapsed: Duration, failed: bool) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let key = (skill.to_string(), tool.to_string());
        let key = if counts.contains_key(&key) || counts.len() < MAX_TOOLS {
            key
        } else {
            (skill.to_string(), "_other".to_string())
        };
        let entry = counts.entry(key).or_default();
        entry.calls += 1;
        entry.errors += u64::from(failed);
        entry.seconds += elapsed.as_secs_f64();
    }

    /// The counts as gauges: `mcp.tool.calls_total`, `mcp.tool.errors_total` and
    /// `mcp.tool.duration_seconds_total`, each with `mcp.server.name` and `mcp.tool.name`.
    pub fn gauges(&self) -> Vec<Gauge> {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mut gauges = Vec::with_capacity(counts.len() * 3);
        for ((skill, tool), counts) in counts.iter() {
            let attributes: std::collections::HashMap<String, String> = [
                ("mcp.server.name".to_string(), skill.clone()),
                ("mcp.tool.name".to_string(), tool.clone()),
            ]
            .into();
            for (name, value) in [
                ("mcp.tool.calls_total", counts.calls as f64),
                ("mcp.tool.errors_total", counts.errors as f64),
                ("mcp.tool.duration_seconds_total", counts.seconds),
            ] {
                gauges.push(Gauge {
                    name: name.to_string(),
                    value,
                    attributes: attributes.clone(),
                });
            }
        }
        gauges
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_per_tool_and_bounded() {
        let stats = CallStats::default();
        stats.record("time", "now", Duration::from_millis(500), false);
        stats.record("time", "now", Duration::from_millis(500), true);
        let gauges = stats.gauges();
        let value = |name: &str| gauges.iter().find(|g| g.name == name).unwrap().value;
        assert_eq!(value("mcp.tool.calls_total"), 2.0);
        assert_eq!(value("mcp.tool.errors_total"), 1.0);
        assert_eq!(value("mcp.tool.duration_seconds_total"), 1.0);
        assert_eq!(gauges[0].attributes["mcp.server.name"], "time");
        for n in 0..MAX_TOOLS + 10 {
            stats.record("many", &format!("tool{n}"), Duration::ZERO, false);
        }
        assert_eq!(stats.gauges().len(), (MAX_TOOLS + 1) * 3);
    }
}
