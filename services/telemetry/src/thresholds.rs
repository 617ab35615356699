//! Thresholds on the reported numbers: each report is checked against every rule, and a
//! number above its rule's bound becomes a condition of the instance, raising an alert (with
//! the conditions the instance reports itself) that resolves once a report is back under.
//! Rules come from a TOML file (`[[threshold]]` tables of `name`, `metric`, `above`); the
//! defaults warn before memory, tasks, queues, pool waits or file descriptors run out.
//!
//! Metrics by name: the process's, named as OpenTelemetry's semantic conventions name them
//! (`process.memory.usage`, `process.memory.virtual`, `process.cpu.time`,
//! `process.thread.count`, `process.open_file_descriptor.count`, `..._limit`,
//! `..._utilization` (open / limit), `process.child.count`, `process.child.zombie.count`),
//! and every gauge by its own name. A rule's `metric` may hold `*` wildcards.

use mimo_proto::v1::{Condition, ResourceReport};
use serde::Deserialize;

/// One rule: `metric` above `above` raises the condition `name`, about the metric.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// The alert's name, e.g. `memory_high`.
    pub name: String,
    /// The metric, or a pattern with `*` (`*queue*`).
    pub metric: String,
    /// The bound; a value above it fires.
    pub above: f64,
}

/// The rules in force.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    rules: Vec<Threshold>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    threshold: Vec<Threshold>,
}

/// Most rules a file may hold.
pub const MAX_THRESHOLDS: usize = 256;
/// Longest metric pattern, in bytes.
pub const MAX_PATTERN_BYTES: usize = 256;
/// Most `*` in one pattern.
pub const MAX_PATTERN_STARS: usize = 4;

/// Refuses a metric pattern too long or with too many `*` to match in bounded time.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(format!(
            "the metric pattern is {} bytes; at most {MAX_PATTERN_BYTES}",
            pattern.len()
        ));
    }
    if pattern.matches('*').count() > MAX_PATTERN_STARS {
        return Err(format!(
            "the metric pattern {pattern:?} has more than {MAX_PATTERN_STARS} `*`"
        ));
    }
    Ok(())
}

impl Default for Thresholds {
    /// Memory over 1 GiB, tasks over 100,000, any queue (or calls waiting) over 100, a pool
    /// wait over 1 s, file descriptors over 80% of the limit.
    fn default() -> Self {
        let rule = |name: &str, metric: &str, above: f64| Threshold {
            name: name.into(),
            metric: metric.into(),
            above,
        };
        Self {
            rules: vec![
                rule(
                    "memory_high",
                    "process.memory.usage",
                    1024.0 * 1024.0 * 1024.0,
                ),
                rule("tasks_high", "process.runtime.tokio.tasks", 100_000.0),
                rule("queue_high", "*queue*", 100.0),
                rule("queue_high", "*waiting*", 100.0),
                rule("pool_wait_high", "*wait_seconds_max", 1.0),
                rule("fds_high", "process.open_file_descriptor.utilization", 0.8),
            ],
        }
    }
}

impl Thresholds {
    /// The rules of a TOML text (`[[threshold]]` tables), which replace the defaults.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|error| error.to_string())?;
        if file.threshold.len() > MAX_THRESHOLDS {
            return Err(format!(
                "{} thresholds; at most {MAX_THRESHOLDS}",
                file.threshold.len()
            ));
        }
        for rule in &file.threshold {
            if rule.name.trim().is_empty() || rule.metric.trim().is_empty() {
                return Err("every threshold needs a name and a metric".into());
            }
            if !rule.above.is_finite() {
                return Err(format!(
                    "threshold {:?}: `above` must be a number",
                    rule.name
                ));
            }
            check_pattern(&rule.metric)
                .map_err(|error| format!("threshold {:?}: {error}", rule.name))?;
        }
        Ok(Self {
            rules: file.threshold,
        })
    }

    /// The rules.
    pub fn rules(&self) -> &[Threshold] {
        &self.rules
    }

    /// The conditions `report` raises: one per rule and metric above its bound.
    pub fn conditions(&self, report: &ResourceReport) -> Vec<Condition> {
        self.conditions_of(&metrics(report))
    }

    /// The conditions a report's `metrics` (see [`metrics`]) raise.
    pub fn conditions_of(&self, metrics: &[(MetricKey, f64)]) -> Vec<Condition> {
        let mut raised = Vec::new();
        for rule in &self.rules {
            for (metric, value) in metrics {
                if *value > rule.above && matches(&rule.metric, &metric.name) {
                    let shown_as = metric.to_string();
                    raised.push(Condition {
                        name: rule.name.clone(),
                        message: format!(
                            "{shown_as} is {} (above {})",
                            shown(*value),
                            shown(rule.above)
                        ),
                        subject: shown_as,
                    });
                }
            }
        }
        raised
    }
}

/// A number for a message: integers without a fraction.
fn shown(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value:.3}")
    }
}

/// A series of an instance: a metric's name and, for a gauge that has them, its attributes
/// (sorted by key).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MetricKey {
    /// The metric's name.
    pub name: String,
    /// Its attributes, sorted by key.
    pub attributes: Vec<(String, String)>,
}

/// `name` or `name{key="value",...}`.
impl std::fmt::Display for MetricKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.name)?;
        if !self.attributes.is_empty() {
            let listed: Vec<String> = self
                .attributes
                .iter()
                .map(|(key, value)| format!("{key}={value:?}"))
                .collect();
            write!(formatter, "{{{}}}", listed.join(","))?;
        }
        Ok(())
    }
}

/// Every series of `report`, with its value.
pub fn metrics(report: &ResourceReport) -> Vec<(MetricKey, f64)> {
    let mut all = Vec::with_capacity(report.gauges.len() + 10);
    if let Some(process) = &report.process {
        let utilization = if process.max_fds > 0 {
            f64::from(process.open_fds) / process.max_fds as f64
        } else {
            0.0
        };
        for (name, value) in [
            ("process.memory.usage", process.resident_memory_bytes as f64),
            (
                "process.memory.virtual",
                process.virtual_memory_bytes as f64,
            ),
            ("process.cpu.time", process.cpu_seconds),
            ("process.thread.count", f64::from(process.threads)),
            (
                "process.open_file_descriptor.count",
                f64::from(process.open_fds),
            ),
            ("process.open_file_descriptor.limit", process.max_fds as f64),
            ("process.open_file_descriptor.utilization", utilization),
            ("process.child.count", f64::from(process.child_processes)),
            (
                "process.child.zombie.count",
                f64::from(process.zombie_children),
            ),
        ] {
            all.push((
                MetricKey {
                    name: name.to_string(),
                    attributes: Vec::new(),
                },
                value,
            ));
        }
    }
    all.extend(report.gauges.iter().map(|gauge| {
        let mut attributes: Vec<(String, String)> = gauge
            .attributes
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        attributes.sort();
        (
            MetricKey {
                name: gauge.name.clone(),
                attributes,
            },
            gauge.value,
        )
    }));
    all
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters.
pub(crate) fn matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use mimo_proto::v1::{Gauge, ProcessStats};

    fn report(rss: u64, open_fds: u32, gauges: &[(&str, f64)]) -> ResourceReport {
        ResourceReport {
            process: Some(ProcessStats {
                resident_memory_bytes: rss,
                open_fds,
                max_fds: 1024,
                ..ProcessStats::default()
            }),
            gauges: gauges
                .iter()
                .map(|(name, value)| Gauge {
                    name: name.to_string(),
                    value: *value,
                    attributes: Default::default(),
                })
                .collect(),
            ..ResourceReport::default()
        }
    }

    #[test]
    fn patterns_match_as_globs() {
        assert!(matches("*queue*", "memory.write_queue"));
        assert!(matches(
            "*wait_seconds_max",
            "memory.pool.read.wait_seconds_max"
        ));
        assert!(!matches(
            "*wait_seconds_max",
            "memory.pool.read.wait_seconds_total"
        ));
        assert!(matches("process.memory.usage", "process.memory.usage"));
        assert!(!matches("a*b*c", "acb"));
        assert!(matches("a*b*c", "axbyc"));
    }

    #[test]
    fn the_defaults_fire_on_what_runs_out_and_stay_quiet_otherwise() {
        let thresholds = Thresholds::default();
        let calm = report(
            100 << 20,
            10,
            &[
                ("memory.write_queue", 3.0),
                ("skill_host.calls_waiting", 0.0),
            ],
        );
        assert!(thresholds.conditions(&calm).is_empty());
        let busy = report(
            2 << 30,
            900,
            &[
                ("memory.write_queue", 5000.0),
                ("skill_host.calls_waiting", 101.0),
                ("memory.pool.read.wait_seconds_max", 2.5),
                ("process.runtime.tokio.tasks", 200_000.0),
            ],
        );
        let mut raised: Vec<(String, String)> = thresholds
            .conditions(&busy)
            .into_iter()
            .map(|condition| (condition.name, condition.subject))
            .collect();
        raised.sort();
        let expected = [
            ("fds_high", "process.open_file_descriptor.utilization"),
            ("memory_high", "process.memory.usage"),
            ("pool_wait_high", "memory.pool.read.wait_seconds_max"),
            ("queue_high", "memory.write_queue"),
            ("queue_high", "skill_host.calls_waiting"),
            ("tasks_high", "process.runtime.tokio.tasks"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(raised, expected);
        let message = &thresholds.conditions(&busy)[0].message;
        assert_eq!(
            message,
            "process.memory.usage is 2147483648 (above 1073741824)"
        );
    }

    #[test]
    fn a_file_replaces_the_defaults_and_bad_ones_are_refused() {
        let thresholds = Thresholds::from_toml(
            "[[threshold]]\nname = \"engrams_many\"\nmetric = \"memory.engrams\"\nabove = 10\n",
        )
        .unwrap();
        assert_eq!(thresholds.rules().len(), 1);
        let raised = thresholds.conditions(&report(0, 0, &[("memory.engrams", 11.0)]));
        assert_eq!(raised.len(), 1);
        assert!(Thresholds::from_toml("[[threshold]]\nname = \"x\"\nabove = 1\n").is_err());
        assert!(Thresholds::from_toml(
            "[[threshold]]\nname = \"x\"\nmetric = \"m\"\nabove = 1\nbelow = 2\n"
        )
        .is_err());
    }
}
