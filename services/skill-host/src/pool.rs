//! A skill as callers see it: one or more identical instances (`"instances": N` in its
//! entry, for MCP servers that answer one call at a time), each its own supervised process.
//! Calls go to the ready instance with the fewest calls on it; the skill's state, tools and
//! counters are those of its instances together.

use crate::error::SkillHostError;
use crate::rpc::Connection;
use crate::skill::Skill;
use crate::skills_file::SkillSpec;
use mimo_proto::v1::{SkillInstance, SkillState, SkillStatus, Tool};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::time::Instant;

/// The instances of one skill.
#[derive(Debug)]
pub struct SkillPool {
    name: String,
    spec: SkillSpec,
    instances: Vec<Arc<Skill>>,
    /// Where the next tie between equally busy instances is broken, so calls rotate.
    next: AtomicUsize,
}

impl SkillPool {
    /// Returns the pool of `instances` (at least one) of the skill `name`.
    pub fn new(name: &str, spec: SkillSpec, instances: Vec<Arc<Skill>>) -> Self {
        debug_assert!(!instances.is_empty());
        Self {
            name: name.to_string(),
            spec,
            instances,
            next: AtomicUsize::new(0),
        }
    }

    /// The skill's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How each instance is started.
    pub fn spec(&self) -> &SkillSpec {
        &self.spec
    }

    /// Every instance, in order.
    pub fn instances(&self) -> &[Arc<Skill>] {
        &self.instances
    }

    /// The catalogue to register: the first instance's that has one.
    pub fn catalog(&self) -> Option<Vec<Tool>> {
        self.instances
            .iter()
            .find_map(|instance| instance.catalog())
    }

    /// The connection for a call of `tool`: the least busy ready instance's, else (none is
    /// ready) the next instance that may still become ready, waited for until `deadline`.
    pub async fn connection_for_call(
        &self,
        tool: &str,
        deadline: Instant,
    ) -> Result<Arc<Connection>, SkillHostError> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let count = self.instances.len();
        let rotated = (0..count).map(|offset| &self.instances[(start + offset) % count]);
        let least_busy = rotated
            .clone()
            .filter_map(|instance| {
                let connection = instance.connection()?;
                // An instance whose stdout just closed is about to be restarted: skip it.
                let serving =
                    instance.state() == SkillState::Ready && !connection.closed().is_cancelled();
                serving.then_some((instance, connection))
            })
            .min_by_key(|(_, connection)| connection.in_flight() + connection.waiting());
        if let Some((instance, connection)) = least_busy {
            return instance.check_tool(tool).map(|()| connection);
        }
        let waiting_for = rotated
            .clone()
            .find(|instance| !matches!(instance.state(), SkillState::Failed | SkillState::Stopped))
            .unwrap_or(&self.instances[0]);
        waiting_for.connection_for_call(tool, deadline).await
    }

    /// The skill's status: the best state of any instance, its tools, and counts summed;
    /// each instance's own state is in `instances`.
    pub fn snapshot(&self) -> SkillStatus {
        let snapshots: Vec<SkillStatus> = self.instances.iter().map(|i| i.snapshot()).collect();
        let best = snapshots
            .iter()
            .max_by_key(|status| state_rank(status.state))
            .cloned()
            .unwrap_or_default();
        let first_nonempty = |field: fn(&SkillStatus) -> &String| {
            snapshots
                .iter()
                .map(field)
                .find(|value| !value.is_empty())
                .cloned()
                .unwrap_or_default()
        };
        SkillStatus {
            name: self.name.clone(),
            error: if best.state == SkillState::Ready as i32 {
                String::new()
            } else {
                first_nonempty(|s| &s.error)
            },
            last_exit: first_nonempty(|s| &s.last_exit),
            restarts: snapshots.iter().map(|s| s.restarts).sum(),
            calls_in_flight: snapshots.iter().map(|s| s.calls_in_flight).sum(),
            calls_waiting: snapshots.iter().map(|s| s.calls_waiting).sum(),
            instances: snapshots
                .iter()
                .enumerate()
                .map(|(index, status)| SkillInstance {
                    index: index as u32,
                    state: status.state,
                    pid: status.pid,
                    restarts: status.restarts,
                    error: status.error.clone(),
                    last_exit: status.last_exit.clone(),
                    calls_in_flight: status.calls_in_flight,
                })
                .collect(),
            ..best
        }
    }
}

/// Which state a pool shows when its instances differ: the one most useful to a caller.
fn state_rank(state: i32) -> u8 {
    match SkillState::try_from(state).unwrap_or(SkillState::Unspecified) {
        SkillState::Ready => 6,
        SkillState::Starting => 5,
        SkillState::Backoff => 4,
        SkillState::Idle => 3,
        SkillState::Unspecified => 2,
        SkillState::Failed => 1,
        SkillState::Stopped => 0,
    }
}
