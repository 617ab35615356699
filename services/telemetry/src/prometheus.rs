//! The Prometheus exposition of every instance's latest report, on HTTP `GET /metrics`:
//! process metrics under the names Prometheus users expect (`process_resident_memory_bytes`,
//! `process_open_fds`, `process_cpu_seconds_total`, ...), each service's gauges as
//! `mimo_<name>` (dots become underscores; a name ending in `_total` is a counter), whether
//! each instance is up, and the alerts firing; every series labelled by `service`, `host`
//! and `instance`. Base units throughout (bytes, seconds).

use crate::instances::InstanceTable;
use mimo_proto::v1::InstanceId;
use std::collections::BTreeMap;
use std::fmt::Write;

/// The families this exposition writes itself; a gauge of one of these names is left out.
const BUILT_IN: &[&str] = &[
    "mimo_instance_up",
    "mimo_telemetry_reports_received_total",
    "mimo_uptime_seconds",
    "mimo_alert_firing",
    "mimo_process_child_processes",
    "mimo_process_zombie_children",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
    "process_threads",
    "process_start_time_seconds",
];

/// One metric family: its type, help and samples (`{labels} value` lines).
struct Family {
    kind: &'static str,
    help: String,
    samples: Vec<String>,
}

/// The exposition text (format 0.0.4) of `instances`.
pub fn exposition(instances: &InstanceTable) -> String {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    // Each series once: a reporter repeating a gauge, or naming one like another, must not
    // make the page one Prometheus refuses.
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut add = |name: String, kind: &'static str, help: &str, labels: &str, value: f64| {
        if !seen.insert(format!("{name}{{{labels}}}")) {
            return;
        }
        let family = families.entry(name).or_insert_with(|| Family {
            kind,
            help: help.to_string(),
            samples: Vec::new(),
        });
        if family.kind == kind {
            family
                .samples
                .push(format!("{{{labels}}} {}", number(value)));
        }
    };
    for status in instances.list("") {
        let Some(report) = &status.latest else {
            continue;
        };
        let labels = identity_labels(&report.instance.clone().unwrap_or_default());
        add(
            "mimo_instance_up".into(),
            "gauge",
            "1 while the instance reports, 0 once it missed three report intervals.",
            &labels,
            if status.down { 0.0 } else { 1.0 },
        );
        add(
            "mimo_telemetry_reports_received_total".into(),
            "counter",
            "Reports received from the instance since the telemetry service started.",
            &labels,
            status.reports_received as f64,
        );
        add(
            "mimo_uptime_seconds".into(),
            "gauge",
            "Seconds since the instance started.",
            &labels,
            report.uptime_seconds,
        );
        if let Some(process) = &report.process {
            for (name, kind, help, value) in [
                (
                    "process_resident_memory_bytes",
                    "gauge",
                    "Resident memory size in bytes.",
                    process.resident_memory_bytes as f64,
                ),
                (
                    "process_virtual_memory_bytes",
                    "gauge",
                    "Virtual memory size in bytes.",
                    process.virtual_memory_bytes as f64,
                ),
                (
                    "process_cpu_seconds_total",
                    "counter",
                    "Total user and system CPU time spent in seconds.",
                    process.cpu_seconds,
                ),
                (
                    "process_open_fds",
                    "gauge",
                    "Number of open file descriptors.",
                    f64::from(process.open_fds),
                ),
                (
                    "process_max_fds",
                    "gauge",
                    "Maximum number of open file descriptors.",
                    process.max_fds as f64,
                ),
                (
                    "process_threads",
                    "gauge",
                    "Number of OS threads in the process.",
                    f64::from(process.threads),
                ),
                (
                    "mimo_process_child_processes",
                    "gauge",
                    "Direct child processes, zombies included.",
                    f64::from(process.child_processes),
                ),
                (
                    "mimo_process_zombie_children",
                    "gauge",
                    "Direct child processes that exited and were not reaped.",
                    f64::from(process.zombie_children),
                ),
            ] {
                add(name.into(), kind, help, &labels, value);
            }
            if report.timestamp_unix_ms > 0 {
                add(
                    "process_start_time_seconds".into(),
                    "gauge",
                    "Start time of the process since unix epoch in seconds.",
                    &labels,
                    report.timestamp_unix_ms as f64 / 1000.0 - report.uptime_seconds,
                );
            }
        }
        for gauge in &report.gauges {
            let name = metric_name(&gauge.name);
            if BUILT_IN.contains(&name.as_str()) {
                continue;
            }
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let help = format!("Mimo's {} as the instance reports it.", gauge.name);
            let mut attributes: Vec<(&String, &String)> = gauge.attributes.iter().collect();
            attributes.sort();
            let mut gauge_labels = labels.clone();
            let mut keys = vec![
                "service".to_string(),
                "host".to_string(),
                "instance".to_string(),
            ];
            for (key, value) in attributes {
                let key = label_name(key);
                // Two attributes of one name after cleaning (`a.b`, `a_b`): the first wins.
                if keys.contains(&key) {
                    continue;
                }
                let _ = write!(gauge_labels, ",{key}=\"{}\"", escape(value));
                keys.push(key);
            }
            add(name, kind, &help, &gauge_labels, gauge.value);
        }
    }
    let (firing, _) = instances.alerts("");
    for alert in firing {
        let id = alert.instance.clone().unwrap_or_default();
        let labels = format!(
            "{},alert=\"{}\",subject=\"{}\"",
            identity_labels(&id),
            escape(&alert.name),
            escape(&alert.subject)
        );
        add(
            "mimo_alert_firing".into(),
            "gauge",
            "1 for each alert firing now.",
            &labels,
            1.0,
        );
    }
    let mut text = String::new();
    for (name, family) in families {
        let help = family.help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(text, "# HELP {name} {help}");
        let _ = writeln!(text, "# TYPE {name} {}", family.kind);
        for sample in family.samples {
            let _ = writeln!(text, "{name}{sample}");
        }
    }
    text
}

/// `service`, `host` and `instance` labels of `id`.
fn identity_labels(id: &InstanceId) -> String {
    format!(
        "service=\"{}\",host=\"{}\",instance=\"{}\"",
        escape(&id.service),
        escape(&id.host),
        escape(&id.instance_id)
    )
}

/// `text` with anything outside `[a-zA-Z0-9_]` replaced by `_`.
fn cleaned(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The Prometheus name of gauge `name`: runtime metrics (`process.*`) keep their name,
/// others get `mimo_`; anything outside `[a-zA-Z0-9_]` becomes `_`.
fn metric_name(name: &str) -> String {
    let cleaned = cleaned(name);
    if name.starts_with("process.") {
        cleaned
    } else {
        format!("mimo_{cleaned}")
    }
}

/// The Prometheus label name of attribute `key` (`mcp.server.name` → `mcp_server_name`).
fn label_name(key: &str) -> String {
    let cleaned = cleaned(key);
    if cleaned.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{cleaned}")
    } else {
        cleaned
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A sample value: integers without a fraction, others in full.
fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instances::TelemetryConfig;
    use mimo_proto::v1::{Gauge, InstanceId, ProcessStats, ResourceReport};

    #[test]
    fn names_follow_prometheus_conventions_and_label_every_instance() {
        let table = InstanceTable::new(TelemetryConfig::default());
        table
            .record(ResourceReport {
                instance: Some(InstanceId {
                    service: "memory".into(),
                    host: "h\"1".into(),
                    instance_id: "abc".into(),
                }),
                timestamp_unix_ms: 10_000,
                uptime_seconds: 4.0,
                process: Some(ProcessStats {
                    resident_memory_bytes: 2048,
                    open_fds: 7,
                    max_fds: 1024,
                    cpu_seconds: 1.5,
                    ..ProcessStats::default()
                }),
                gauges: vec![
                    Gauge {
                        name: "memory.engrams".into(),
                        value: 3.0,
                        attributes: Default::default(),
                    },
                    Gauge {
                        name: "registry.keep_alives_total".into(),
                        value: 9.0,
                        attributes: Default::default(),
                    },
                    Gauge {
                        name: "process.runtime.tokio.tasks".into(),
                        value: 12.0,
                        attributes: Default::default(),
                    },
                    Gauge {
                        name: "mcp.server.calls.waiting".into(),
                        value: 2.0,
                        attributes: [("mcp.server.name".to_string(), "time".to_string())].into(),
                    },
                ],
                ..ResourceReport::default()
            })
            .unwrap();
        let text = exposition(&table);
        let labels = r#"{service="memory",host="h\"1",instance="abc"}"#;
        assert_eq!(text.matches("mimo_instance_up{").count(), 1);
        for line in [
            format!("process_resident_memory_bytes{labels} 2048"),
            format!("process_open_fds{labels} 7"),
            format!("process_cpu_seconds_total{labels} 1.5"),
            format!("process_start_time_seconds{labels} 6"),
            format!("mimo_memory_engrams{labels} 3"),
            format!("mimo_registry_keep_alives_total{labels} 9"),
            format!("process_runtime_tokio_tasks{labels} 12"),
            format!("mimo_instance_up{labels} 1"),
            r#"mimo_mcp_server_calls_waiting{service="memory",host="h\"1",instance="abc",mcp_server_name="time"} 2"#.to_string(),
            "# TYPE process_cpu_seconds_total counter".to_string(),
            "# TYPE mimo_registry_keep_alives_total counter".to_string(),
            "# TYPE mimo_memory_engrams gauge".to_string(),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
    }

    #[test]
    fn gauges_cannot_forge_collide_or_repeat_series() {
        let table = InstanceTable::new(TelemetryConfig::default());
        let gauge = |name: &str, attributes: &[(&str, &str)]| Gauge {
            name: name.into(),
            value: 1.0,
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        table
            .record(ResourceReport {
                instance: Some(InstanceId {
                    service: "x".into(),
                    host: "h".into(),
                    instance_id: "i".into(),
                }),
                gauges: vec![
                    gauge("instance_up", &[]),
                    gauge("dup", &[("a.b", "1"), ("a_b", "2")]),
                    gauge("twice", &[]),
                    gauge("twice", &[]),
                ],
                ..ResourceReport::default()
            })
            .unwrap();
        let text = exposition(&table);
        assert_eq!(text.matches("\nmimo_instance_up{").count(), 1, "{text}");
        assert!(
            text.contains(r#"mimo_dup{service="x",host="h",instance="i",a_b="1"} 1"#),
            "{text}"
        );
        assert_eq!(text.matches("\nmimo_twice{").count(), 1, "{text}");
        let forged = table.record(ResourceReport {
            instance: Some(InstanceId {
                service: "x".into(),
                host: "h".into(),
                instance_id: "j".into(),
            }),
            gauges: vec![gauge("a\nfake_metric 1", &[])],
            ..ResourceReport::default()
        });
        assert!(forged.is_err(), "a name with a newline is refused");
    }
}
