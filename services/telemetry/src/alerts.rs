//! Alerts raised by the conditions instances report: an alert fires when a report first
//! carries a condition, stays firing while later reports carry it, and resolves when one no
//! longer does (or the instance is forgotten). Firing alerts and the change log are bounded.

use crate::error::TelemetryError;
use mimo_proto::v1::{Alert, AlertState, Condition, InstanceId};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use mimo_proto::{
    MAX_CONDITIONS_PER_REPORT, MAX_CONDITION_MESSAGE_BYTES, MAX_CONDITION_NAME_BYTES,
};

/// (service, host, instance id).
pub(crate) type InstanceKey = (String, String, String);
type AlertKey = (InstanceKey, String, String);

/// Bounds of the alert book.
#[derive(Debug, Clone, Copy)]
pub struct AlertLimits {
    /// Most alerts firing at once; a condition beyond it raises no alert and is counted.
    pub max_firing: usize,
    /// Alert changes kept in the log; the oldest are forgotten first.
    pub recent: usize,
}

impl Default for AlertLimits {
    fn default() -> Self {
        Self {
            max_firing: 10_000,
            recent: 1_000,
        }
    }
}

/// Changes a watcher may fall behind by before it is ended.
pub const WATCH_BUFFER: usize = 1024;

/// Firing alerts and the latest changes.
#[derive(Debug)]
pub(crate) struct AlertBook {
    limits: AlertLimits,
    firing: BTreeMap<AlertKey, Alert>,
    recent: VecDeque<Alert>,
    /// Conditions that raised no alert because `max_firing` alerts were firing.
    pub(crate) dropped: u64,
    /// Every change, for the watchers.
    changes: tokio::sync::broadcast::Sender<Alert>,
}

/// Checks a report's conditions against the bounds before anything is recorded.
pub(crate) fn validate_conditions(conditions: &[Condition]) -> Result<(), TelemetryError> {
    if conditions.len() > MAX_CONDITIONS_PER_REPORT {
        return Err(TelemetryError::BadCondition(format!(
            "a report carries {} conditions; the limit is {MAX_CONDITIONS_PER_REPORT}",
            conditions.len()
        )));
    }
    for condition in conditions {
        if condition.name.trim().is_empty() {
            return Err(TelemetryError::BadCondition(
                "a condition has no name; name what kind of problem it is".into(),
            ));
        }
        let too_long = condition.name.len() > MAX_CONDITION_NAME_BYTES
            || condition.subject.len() > MAX_CONDITION_NAME_BYTES
            || condition.message.len() > MAX_CONDITION_MESSAGE_BYTES;
        if too_long {
            return Err(TelemetryError::BadCondition(format!(
                "condition {:?}: name and subject may have {MAX_CONDITION_NAME_BYTES} bytes, \
                 the message {MAX_CONDITION_MESSAGE_BYTES}",
                condition.name
            )));
        }
    }
    Ok(())
}

impl AlertBook {
    /// Returns an empty book enforcing `limits`.
    pub(crate) fn new(limits: AlertLimits) -> Self {
        Self {
            limits,
            firing: BTreeMap::new(),
            recent: VecDeque::new(),
            dropped: 0,
            changes: tokio::sync::broadcast::channel(WATCH_BUFFER).0,
        }
    }

    /// The alerts firing now (of `service`, all when empty) and a receiver of every change
    /// from this moment.
    pub(crate) fn watch(
        &self,
        service: &str,
    ) -> (Vec<Alert>, tokio::sync::broadcast::Receiver<Alert>) {
        (self.list(service).0, self.changes.subscribe())
    }

    /// Applies one report's conditions (already validated) for `instance` at `now_ms`.
    pub(crate) fn observe(
        &mut self,
        key: &InstanceKey,
        instance: &InstanceId,
        conditions: &[Condition],
        now_ms: i64,
    ) {
        let reported: BTreeMap<(&str, &str), &str> = conditions
            .iter()
            .map(|c| ((c.name.as_str(), c.subject.as_str()), c.message.as_str()))
            .collect();
        let firing_now: BTreeSet<AlertKey> = self.keys_of(key);
        for alert_key in &firing_now {
            let still = reported.get(&(alert_key.1.as_str(), alert_key.2.as_str()));
            match still {
                Some(message) => {
                    if let Some(alert) = self.firing.get_mut(alert_key) {
                        alert.message = (*message).to_string();
                    }
                }
                None => self.resolve(alert_key, now_ms),
            }
        }
        for ((name, subject), message) in reported {
            let alert_key = (key.clone(), name.to_string(), subject.to_string());
            if firing_now.contains(&alert_key) {
                continue;
            }
            if self.firing.len() >= self.limits.max_firing {
                self.dropped += 1;
                tracing::warn!(
                    alert = name,
                    subject,
                    limit = self.limits.max_firing,
                    "alert not raised: the firing-alert limit is reached"
                );
                continue;
            }
            let alert = Alert {
                instance: Some(instance.clone()),
                name: name.to_string(),
                subject: subject.to_string(),
                message: message.to_string(),
                state: AlertState::Firing as i32,
                fired_unix_ms: now_ms,
                resolved_unix_ms: 0,
            };
            tracing::warn!(alert = name, subject, message, service = %key.0, host = %key.1,
                instance = %key.2, "alert firing");
            self.log(alert.clone());
            self.firing.insert(alert_key, alert);
        }
    }

    /// Resolves every alert of an instance that is being forgotten.
    pub(crate) fn forget_instance(&mut self, key: &InstanceKey, now_ms: i64) {
        for alert_key in self.keys_of(key) {
            self.resolve(&alert_key, now_ms);
        }
    }

    /// (firing, recent changes) of instances of `service` (all when empty).
    pub(crate) fn list(&self, service: &str) -> (Vec<Alert>, Vec<Alert>) {
        let of_service = |alert: &&Alert| {
            service.is_empty()
                || alert
                    .instance
                    .as_ref()
                    .is_some_and(|i| i.service == service)
        };
        (
            self.firing.values().filter(of_service).cloned().collect(),
            self.recent.iter().filter(of_service).cloned().collect(),
        )
    }

    /// Number of alerts firing.
    pub(crate) fn firing_count(&self) -> usize {
        self.firing.len()
    }

    fn keys_of(&self, key: &InstanceKey) -> BTreeSet<AlertKey> {
        let start = (key.clone(), String::new(), String::new());
        self.firing
            .range(start..)
            .take_while(|(alert_key, _)| &alert_key.0 == key)
            .map(|(alert_key, _)| alert_key.clone())
            .collect()
    }

    fn resolve(&mut self, alert_key: &AlertKey, now_ms: i64) {
        if let Some(mut alert) = self.firing.remove(alert_key) {
            alert.state = AlertState::Resolved as i32;
            alert.resolved_unix_ms = now_ms;
            tracing::info!(alert = %alert.name, subject = %alert.subject, service = %alert_key.0 .0,
                host = %alert_key.0 .1, instance = %alert_key.0 .2, "alert resolved");
            self.log(alert);
        }
    }

    fn log(&mut self, alert: Alert) {
        // No watcher is no error.
        let _ = self.changes.send(alert.clone());
        if self.limits.recent == 0 {
            return;
        }
        if self.recent.len() == self.limits.recent {
            self.recent.pop_front();
        }
        self.recent.push_back(alert);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str) -> (InstanceKey, InstanceId) {
        let instance = InstanceId {
            service: "skill-host".into(),
            host: "h".into(),
            instance_id: id.into(),
        };
        (("skill-host".into(), "h".into(), id.into()), instance)
    }

    fn condition(subject: &str, message: &str) -> Condition {
        Condition {
            name: "skill_failed".into(),
            subject: subject.into(),
            message: message.into(),
        }
    }

    #[test]
    fn a_condition_fires_while_reported_and_resolves_when_dropped() {
        let mut book = AlertBook::new(AlertLimits::default());
        let (key, id) = instance("a");
        book.observe(&key, &id, &[condition("crashy", "first")], 1);
        book.observe(&key, &id, &[condition("crashy", "second")], 2);
        let (firing, recent) = book.list("");
        assert_eq!(firing.len(), 1);
        assert_eq!(firing[0].message, "second");
        assert_eq!(firing[0].fired_unix_ms, 1);
        assert_eq!(recent.len(), 1, "an update is not a change of state");

        book.observe(&key, &id, &[], 3);
        let (firing, recent) = book.list("");
        assert!(firing.is_empty());
        assert_eq!(recent.len(), 2);
        assert_eq!(recent[1].state, AlertState::Resolved as i32);
        assert_eq!(recent[1].resolved_unix_ms, 3);
    }

    #[test]
    fn instances_alerts_are_apart_and_forgetting_one_resolves_only_its_own() {
        let mut book = AlertBook::new(AlertLimits::default());
        let (a, a_id) = instance("a");
        let (b, b_id) = instance("b");
        book.observe(&a, &a_id, &[condition("x", "")], 1);
        book.observe(&b, &b_id, &[condition("x", "")], 1);
        book.observe(&a, &a_id, &[condition("x", "")], 2);
        assert_eq!(book.firing_count(), 2);
        book.forget_instance(&a, 3);
        let (firing, _) = book.list("");
        assert_eq!(firing.len(), 1);
        assert_eq!(firing[0].instance.as_ref().unwrap().instance_id, "b");
        assert!(book.list("memory").0.is_empty());
    }

    #[test]
    fn firing_alerts_and_the_log_are_bounded() {
        let mut book = AlertBook::new(AlertLimits {
            max_firing: 2,
            recent: 3,
        });
        let (key, id) = instance("a");
        let many: Vec<_> = ["p", "q", "r"].iter().map(|s| condition(s, "")).collect();
        book.observe(&key, &id, &many, 1);
        assert_eq!(book.firing_count(), 2);
        assert_eq!(book.dropped, 1);
        book.observe(&key, &id, &[], 2);
        assert_eq!(
            book.list("").1.len(),
            3,
            "the log keeps only the latest changes"
        );
    }

    #[test]
    fn oversized_or_nameless_conditions_are_refused() {
        let nameless = Condition::default();
        assert!(validate_conditions(&[nameless]).is_err());
        let long = condition("s", &"m".repeat(MAX_CONDITION_MESSAGE_BYTES + 1));
        assert!(validate_conditions(&[long]).is_err());
        let many = vec![condition("s", ""); MAX_CONDITIONS_PER_REPORT + 1];
        assert!(validate_conditions(&many).is_err());
        assert!(validate_conditions(&[condition("s", "m")]).is_ok());
    }
}
