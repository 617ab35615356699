//! The latest report of each instance, bounded: when full, the instance heard from least
//! recently makes room if it has been silent for a while; otherwise the newcomer is refused.

use crate::alerts::{validate_conditions, AlertBook, AlertLimits, InstanceKey};
use crate::error::TelemetryError;
use mimo_proto::v1::{Alert, Condition, InstanceStatus, ResourceReport};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Bounds of the telemetry service.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// Most instances remembered at once.
    pub max_instances: usize,
    /// An instance silent for this long may be forgotten to make room for a new one.
    pub evict_after: Duration,
    /// Bounds of the alerts raised by reported conditions.
    pub alerts: AlertLimits,
    /// How long an instance that gave no report interval may stay silent before it is
    /// marked down (otherwise three of its intervals).
    pub down_after: Duration,
    /// Bounds on reported numbers that raise alerts.
    pub thresholds: crate::thresholds::Thresholds,
    /// Reports kept per instance for QueryHistory (about 250 bytes each).
    pub history: usize,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            max_instances: 1_000,
            evict_after: Duration::from_secs(60),
            alerts: AlertLimits::default(),
            down_after: Duration::from_secs(30),
            thresholds: crate::thresholds::Thresholds::default(),
            history: crate::history::DEFAULT_HISTORY,
        }
    }
}

#[derive(Debug)]
struct Entry {
    latest: ResourceReport,
    received_at: Instant,
    reports: u64,
    /// Marked down by [`InstanceTable::sweep`]; up again with its next report.
    down: bool,
    /// Its recent reports.
    history: crate::history::History,
}

impl Entry {
    /// How long the instance may stay silent before it counts as down.
    fn allowance(&self, default: Duration) -> Duration {
        match self.latest.interval_ms {
            0 => default,
            interval => Duration::from_millis(interval.saturating_mul(3)),
        }
    }
}

/// Latest report per instance, and the alerts its conditions raise.
#[derive(Debug)]
pub struct InstanceTable {
    config: TelemetryConfig,
    entries: Mutex<HashMap<InstanceKey, Entry>>,
    /// Locked after `entries` whenever both are held.
    alerts: Mutex<AlertBook>,
}

impl InstanceTable {
    /// Returns an empty table enforcing `config`.
    pub fn new(config: TelemetryConfig) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            alerts: Mutex::new(AlertBook::new(config.alerts)),
            config,
        }
    }

    fn alert_book(&self) -> MutexGuard<'_, AlertBook> {
        self.alerts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `report` as its instance's latest and applies its conditions to the alerts.
    pub fn record(&self, report: ResourceReport) -> Result<(), TelemetryError> {
        let key = match &report.instance {
            Some(id)
                if !id.service.is_empty() && !id.host.is_empty() && !id.instance_id.is_empty() =>
            {
                (id.service.clone(), id.host.clone(), id.instance_id.clone())
            }
            _ => return Err(TelemetryError::MissingInstance),
        };
        validate_report(&report)?;
        validate_conditions(&report.conditions)?;
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if report.stopping {
            if entries.remove(&key).is_some() {
                tracing::info!(service = %key.0, host = %key.1, instance = %key.2, "instance stopped");
                self.alert_book().forget_instance(&key, unix_ms());
            }
            return Ok(());
        }
        let instance = report.instance.clone().unwrap_or_default();
        let mut conditions = report.conditions.clone();
        // Computed once, for the thresholds and the history.
        let metrics = crate::thresholds::metrics(&report);
        conditions.extend(self.config.thresholds.conditions_of(&metrics));
        conditions.truncate(mimo_proto::MAX_CONDITIONS_PER_REPORT * 2);
        match entries.get_mut(&key) {
            Some(entry) => {
                if entry.down {
                    tracing::info!(service = %key.0, host = %key.1, instance = %key.2, "instance reporting again");
                }
                entry.history.push(metrics, unix_ms(), self.config.history);
                entry.latest = report;
                entry.received_at = now;
                entry.reports += 1;
                entry.down = false;
            }
            None => {
                if entries.len() >= self.config.max_instances {
                    self.evict_stalest(&mut entries, now)?;
                }
                tracing::info!(service = %key.0, host = %key.1, instance = %key.2, "instance reporting");
                let mut history = crate::history::History::default();
                history.push(metrics, unix_ms(), self.config.history);
                entries.insert(
                    key.clone(),
                    Entry {
                        latest: report,
                        received_at: now,
                        reports: 1,
                        down: false,
                        history,
                    },
                );
            }
        }
        self.alert_book()
            .observe(&key, &instance, &conditions, unix_ms());
        Ok(())
    }

    fn evict_stalest(
        &self,
        entries: &mut HashMap<InstanceKey, Entry>,
        now: Instant,
    ) -> Result<(), TelemetryError> {
        let stalest = entries
            .iter()
            .min_by_key(|(_, entry)| entry.received_at)
            .filter(|(_, entry)| now.duration_since(entry.received_at) >= self.config.evict_after)
            .map(|(key, _)| key.clone());
        match stalest {
            Some(key) => {
                entries.remove(&key);
                self.alert_book().forget_instance(&key, unix_ms());
                Ok(())
            }
            None => Err(TelemetryError::TooManyInstances {
                limit: self.config.max_instances,
                fresh_secs: self.config.evict_after.as_secs(),
            }),
        }
    }

    /// Latest status of every instance (of `service`, when non-empty), sorted by identity.
    pub fn list(&self, service: &str) -> Vec<InstanceStatus> {
        let now = Instant::now();
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut matching: Vec<(&InstanceKey, &Entry)> = entries
            .iter()
            .filter(|((name, _, _), _)| service.is_empty() || name == service)
            .collect();
        matching.sort_by(|a, b| a.0.cmp(b.0));
        matching
            .into_iter()
            .map(|(_, entry)| InstanceStatus {
                latest: Some(entry.latest.clone()),
                received_ms_ago: now.duration_since(entry.received_at).as_millis() as u64,
                reports_received: entry.reports,
                down: entry.down
                    || now.duration_since(entry.received_at)
                        > entry.allowance(self.config.down_after),
            })
            .collect()
    }

    /// The history of the metrics matching `request`, bounded at [`MAX_HISTORY_POINTS`].
    pub fn history(
        &self,
        request: &mimo_proto::v1::QueryHistoryRequest,
    ) -> Result<mimo_proto::v1::QueryHistoryResponse, TelemetryError> {
        if request.metric.trim().is_empty() {
            return Err(TelemetryError::BadReport(
                "metric is empty: name one (process.memory.usage, memory.engrams, ...) or a pattern with *".into(),
            ));
        }
        crate::thresholds::check_pattern(&request.metric).map_err(TelemetryError::BadReport)?;
        let until = if request.until_unix_ms == 0 {
            i64::MAX
        } else {
            request.until_unix_ms
        };
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut matching: Vec<(&InstanceKey, &Entry)> = entries
            .iter()
            .filter(|((service, _, instance), _)| {
                (request.service.is_empty() || *service == request.service)
                    && (request.instance_id.is_empty() || *instance == request.instance_id)
            })
            .collect();
        matching.sort_by(|a, b| a.0.cmp(b.0));
        let mut budget = MAX_HISTORY_POINTS;
        let mut series = Vec::new();
        for (_, entry) in matching {
            let found = entry.history.series(
                |name| crate::thresholds::matches(&request.metric, name),
                request.since_unix_ms,
                until,
                &mut budget,
            );
            series.extend(
                found
                    .into_iter()
                    .map(|(metric, points)| mimo_proto::v1::Series {
                        instance: entry.latest.instance.clone(),
                        metric: metric.name,
                        attributes: metric.attributes.into_iter().collect(),
                        points,
                    }),
            );
            if series.len() >= MAX_HISTORY_SERIES {
                series.truncate(MAX_HISTORY_SERIES);
                budget = 0;
                break;
            }
        }
        Ok(mimo_proto::v1::QueryHistoryResponse {
            series,
            truncated: budget == 0,
        })
    }

    /// Number of instances remembered.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Marks down every instance silent for three of its intervals: its alerts resolve and
    /// an `instance_down` alert fires in their place, until it reports again.
    pub fn sweep(&self, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        for (key, entry) in entries.iter_mut() {
            let silent = now.saturating_duration_since(entry.received_at);
            if entry.down || silent <= entry.allowance(self.config.down_after) {
                continue;
            }
            entry.down = true;
            let down = Condition {
                name: "instance_down".into(),
                subject: String::new(),
                message: format!(
                    "no report for {} s (three report intervals); the instance stopped, hangs, or cannot reach telemetry",
                    silent.as_secs()
                ),
            };
            let instance = entry.latest.instance.clone().unwrap_or_default();
            self.alert_book()
                .observe(key, &instance, &[down], unix_ms());
        }
    }

    /// (firing, recent changes) of the alerts of instances of `service` (all when empty).
    pub fn alerts(&self, service: &str) -> (Vec<Alert>, Vec<Alert>) {
        self.alert_book().list(service)
    }

    /// The alerts firing now (of `service`, all when empty) and every change from now on.
    pub fn watch_alerts(
        &self,
        service: &str,
    ) -> (Vec<Alert>, tokio::sync::broadcast::Receiver<Alert>) {
        self.alert_book().watch(service)
    }

    /// (alerts firing, conditions that raised no alert because too many were firing).
    pub fn alert_counts(&self) -> (usize, u64) {
        let book = self.alert_book();
        (book.firing_count(), book.dropped)
    }

    /// Whether no instance has reported.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Most points one QueryHistory answer holds.
pub const MAX_HISTORY_POINTS: usize = 100_000;
/// Most series one QueryHistory answer holds.
pub const MAX_HISTORY_SERIES: usize = 10_000;

/// Longest service name, host name, instance id and gauge name, in bytes.
pub const MAX_REPORT_NAME_BYTES: usize = 256;
/// Most gauges one report may carry.
pub const MAX_GAUGES_PER_REPORT: usize = mimo_proto::MAX_GAUGES_PER_REPORT;
/// Most attributes one gauge may carry.
pub const MAX_GAUGE_ATTRIBUTES: usize = 8;
/// Largest report, encoded, in bytes.
pub const MAX_REPORT_BYTES: usize = 256 * 1024;

/// Refuses identities, gauge names and gauge counts over their bounds, and values that are
/// not numbers, before anything is recorded.
fn validate_report(report: &ResourceReport) -> Result<(), TelemetryError> {
    let id = report.instance.clone().unwrap_or_default();
    for (what, value) in [
        ("instance.service", &id.service),
        ("instance.host", &id.host),
        ("instance.instance_id", &id.instance_id),
    ] {
        if value.len() > MAX_REPORT_NAME_BYTES {
            return Err(TelemetryError::BadReport(format!(
                "{what} is {} bytes; the limit is {MAX_REPORT_NAME_BYTES}",
                value.len()
            )));
        }
    }
    let encoded = prost::Message::encoded_len(report);
    if encoded > MAX_REPORT_BYTES {
        return Err(TelemetryError::BadReport(format!(
            "the report is {encoded} bytes; the limit is {MAX_REPORT_BYTES}"
        )));
    }
    let process = report.process.unwrap_or_default();
    if !(report.uptime_seconds.is_finite() && process.cpu_seconds.is_finite()) {
        return Err(TelemetryError::BadReport(
            "uptime_seconds and process.cpu_seconds must be finite numbers".into(),
        ));
    }
    if report.gauges.len() > MAX_GAUGES_PER_REPORT {
        return Err(TelemetryError::BadReport(format!(
            "the report carries {} gauges; the limit is {MAX_GAUGES_PER_REPORT}",
            report.gauges.len()
        )));
    }
    for gauge in &report.gauges {
        if gauge.name.chars().any(char::is_control) {
            return Err(TelemetryError::BadReport(format!(
                "gauge {:?} has control characters in its name",
                gauge.name
            )));
        }
        if gauge.name.trim().is_empty() || gauge.name.len() > MAX_REPORT_NAME_BYTES {
            return Err(TelemetryError::BadReport(format!(
                "a gauge name must have 1 to {MAX_REPORT_NAME_BYTES} bytes (got {})",
                gauge.name.len()
            )));
        }
        if gauge.attributes.len() > MAX_GAUGE_ATTRIBUTES {
            return Err(TelemetryError::BadReport(format!(
                "gauge {:?} has {} attributes; the limit is {MAX_GAUGE_ATTRIBUTES}",
                gauge.name,
                gauge.attributes.len()
            )));
        }
        let bad_attribute = gauge.attributes.iter().any(|(key, value)| {
            key.is_empty()
                || key.len() > MAX_REPORT_NAME_BYTES
                || value.len() > MAX_REPORT_NAME_BYTES
        });
        if bad_attribute {
            return Err(TelemetryError::BadReport(format!(
                "gauge {:?}: attribute keys need 1 to {MAX_REPORT_NAME_BYTES} bytes, values at most {MAX_REPORT_NAME_BYTES}",
                gauge.name
            )));
        }
        if !gauge.value.is_finite() {
            return Err(TelemetryError::BadReport(format!(
                "gauge {:?} is {}; gauges are finite numbers",
                gauge.name, gauge.value
            )));
        }
    }
    Ok(())
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mimo_proto::v1::InstanceId;

    fn report(instance: &str) -> ResourceReport {
        ResourceReport {
            instance: Some(InstanceId {
                service: "memory".into(),
                host: "h".into(),
                instance_id: instance.into(),
            }),
            ..ResourceReport::default()
        }
    }

    #[test]
    fn keeps_only_the_latest_report_per_instance() {
        let table = InstanceTable::new(TelemetryConfig::default());
        table.record(report("a")).unwrap();
        let mut newer = report("a");
        newer.uptime_seconds = 7.0;
        table.record(newer).unwrap();
        let listed = table.list("");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].reports_received, 2);
        assert_eq!(listed[0].latest.as_ref().unwrap().uptime_seconds, 7.0);
        assert!(table.list("registry").is_empty());
    }

    #[test]
    fn full_table_refuses_new_instances_while_all_are_fresh() {
        let table = InstanceTable::new(TelemetryConfig {
            max_instances: 2,
            evict_after: Duration::from_secs(3600),
            ..TelemetryConfig::default()
        });
        table.record(report("a")).unwrap();
        table.record(report("b")).unwrap();
        assert!(matches!(
            table.record(report("c")),
            Err(TelemetryError::TooManyInstances { limit: 2, .. })
        ));
        table.record(report("a")).unwrap();
    }

    #[test]
    fn full_table_forgets_a_silent_instance_for_a_new_one() {
        let table = InstanceTable::new(TelemetryConfig {
            max_instances: 1,
            evict_after: Duration::ZERO,
            ..TelemetryConfig::default()
        });
        table.record(report("a")).unwrap();
        table.record(report("b")).unwrap();
        let listed = table.list("");
        assert_eq!(listed.len(), 1);
        assert_eq!(
            listed[0]
                .latest
                .as_ref()
                .unwrap()
                .instance
                .as_ref()
                .unwrap()
                .instance_id,
            "b"
        );
    }

    #[test]
    fn report_without_identity_is_refused() {
        let table = InstanceTable::new(TelemetryConfig::default());
        assert!(matches!(
            table.record(ResourceReport::default()),
            Err(TelemetryError::MissingInstance)
        ));
    }

    #[test]
    fn a_silent_instance_goes_down_and_comes_back_with_its_next_report() {
        let table = InstanceTable::new(TelemetryConfig::default());
        let mut first = report("a");
        first.interval_ms = 10;
        first.conditions = vec![Condition {
            name: "skill_failed".into(),
            subject: "crashy".into(),
            message: String::new(),
        }];
        table.record(first.clone()).unwrap();
        table.sweep(Instant::now());
        assert!(!table.list("")[0].down, "within three intervals");

        table.sweep(Instant::now() + Duration::from_millis(100));
        assert!(table.list("")[0].down);
        let (firing, _) = table.alerts("");
        let names: Vec<&str> = firing.iter().map(|alert| alert.name.as_str()).collect();
        assert_eq!(
            names,
            ["instance_down"],
            "a down instance's own alerts resolve"
        );

        first.conditions.clear();
        table.record(first).unwrap();
        assert!(!table.list("")[0].down);
        assert!(table.alerts("").0.is_empty());
    }

    #[test]
    fn oversized_identities_and_gauges_are_refused() {
        let table = InstanceTable::new(TelemetryConfig::default());
        let mut long_id = report(&"x".repeat(MAX_REPORT_NAME_BYTES + 1));
        assert!(matches!(
            table.record(long_id.clone()),
            Err(TelemetryError::BadReport(_))
        ));
        long_id.instance.as_mut().unwrap().instance_id = "ok".into();
        long_id.gauges = vec![
            mimo_proto::v1::Gauge {
                name: "g".into(),
                value: 1.0,
                attributes: Default::default(),
            };
            MAX_GAUGES_PER_REPORT + 1
        ];
        assert!(table.record(long_id.clone()).is_err());
        long_id.gauges = vec![mimo_proto::v1::Gauge {
            name: "g".into(),
            value: f64::NAN,
            attributes: Default::default(),
        }];
        assert!(table.record(long_id).is_err());
        assert!(table.is_empty(), "nothing refused is kept");
    }

    #[test]
    fn an_instance_that_says_it_stops_is_forgotten_with_its_alerts() {
        let table = InstanceTable::new(TelemetryConfig::default());
        let mut failing = report("a");
        failing.conditions = vec![Condition {
            name: "skill_failed".into(),
            subject: "s".into(),
            message: String::new(),
        }];
        table.record(failing.clone()).unwrap();
        assert_eq!(table.alerts("").0.len(), 1);
        failing.stopping = true;
        table.record(failing).unwrap();
        assert!(table.is_empty());
        assert!(table.alerts("").0.is_empty(), "its alerts resolved");
        table.sweep(Instant::now() + Duration::from_secs(3600));
        assert!(
            table.alerts("").0.is_empty(),
            "and no instance_down follows"
        );
    }
}
