//! Revisions and the watch history: every catalogue change gets the next revision and is
//! kept in a bounded history, from which a watcher may resume, and is broadcast live.

use mimo_proto::v1::{WatchEvent, WatchResponse};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;

/// Changes buffered for live watchers; one that falls further behind resumes from history.
const LIVE_BUFFER: usize = 1024;

/// A change, shared by every watcher.
pub type Change = Arc<WatchResponse>;

/// The start revision is no longer (or not) in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// The oldest revision a watch may start from now.
    pub oldest: u64,
}

/// The revision counter, the bounded history and the live feed.
#[derive(Debug)]
pub(crate) struct WatchHub {
    /// Revision of the latest change.
    revision: u64,
    /// The history holds every change after this revision.
    complete_after: u64,
    history: VecDeque<Change>,
    max_history: usize,
    /// Encoded bytes of `history`, and their bound.
    history_bytes: usize,
    max_history_bytes: usize,
    live: broadcast::Sender<Change>,
}

impl WatchHub {
    /// Returns a hub keeping `max_history` changes. Revisions start at the wall clock's
    /// microseconds, so that a revision from before a registry restart is always older than
    /// any of this run and gets a `compacted` answer rather than a wrong resume.
    pub(crate) fn new(max_history: usize, max_history_bytes: usize) -> Self {
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |elapsed| elapsed.as_micros() as u64);
        Self::starting_at(start, max_history, max_history_bytes)
    }

    /// Returns a hub whose latest revision is `revision`: for a cache of a store that keeps
    /// its own revisions (etcd).
    pub(crate) fn starting_at(revision: u64, max_history: usize, max_history_bytes: usize) -> Self {
        Self {
            revision,
            complete_after: revision,
            history: VecDeque::new(),
            max_history: max_history.max(1),
            history_bytes: 0,
            max_history_bytes,
            live: broadcast::channel(LIVE_BUFFER).0,
        }
    }

    /// Revision of the latest change (or of the start, before any).
    pub(crate) fn revision(&self) -> u64 {
        self.revision
    }

    /// Publishes `events` as one change with the next revision; nothing when empty.
    pub(crate) fn publish(&mut self, events: Vec<WatchEvent>) {
        if events.is_empty() {
            return;
        }
        let next = self.revision + 1;
        self.publish_at(next, events);
    }

    /// Publishes `events` as one change with `revision`, which must be newer than the latest
    /// (an older one is ignored); nothing when empty, but the revision still moves on.
    pub(crate) fn publish_at(&mut self, revision: u64, events: Vec<WatchEvent>) {
        if revision <= self.revision && !events.is_empty() {
            tracing::warn!(
                revision,
                latest = self.revision,
                "an old change was ignored"
            );
            return;
        }
        if events.is_empty() {
            self.revision = self.revision.max(revision);
            return;
        }
        self.revision = revision;
        let change = Arc::new(WatchResponse {
            revision: self.revision,
            events,
            compacted: false,
            compact_revision: 0,
        });
        self.history_bytes += prost::Message::encoded_len(&*change);
        self.history.push_back(change.clone());
        while self.history.len() > self.max_history
            || (self.history_bytes > self.max_history_bytes && self.history.len() > 1)
        {
            let Some(dropped) = self.history.pop_front() else {
                break;
            };
            self.history_bytes -= prost::Message::encoded_len(&*dropped);
            self.complete_after = dropped.revision;
        }
        // No receiver is not an error: nobody watches.
        let _ = self.live.send(change);
    }

    /// The oldest revision a watch may start from.
    pub(crate) fn oldest(&self) -> u64 {
        self.complete_after + 1
    }

    /// Changes from `start` on (0: none, from now on), and a feed of the changes after them.
    pub(crate) fn subscribe(
        &self,
        start: u64,
    ) -> Result<(Vec<Change>, broadcast::Receiver<Change>), Compacted> {
        let backlog = if start == 0 {
            Vec::new()
        } else {
            self.since(start)?
        };
        Ok((backlog, self.live.subscribe()))
    }

    /// Changes with revision `start` or later, if the history still reaches back to `start`.
    pub(crate) fn since(&self, start: u64) -> Result<Vec<Change>, Compacted> {
        let oldest = self.oldest();
        // Ahead of this registry: a revision of another registry, or of a run before a restart
        // whose clock was ahead; no resume can be right.
        if start < oldest || start > self.revision + 1 {
            return Err(Compacted { oldest });
        }
        // Revisions may have gaps (a store's own revisions), so find the start by search.
        let skip = self
            .history
            .partition_point(|change| change.revision < start);
        Ok(self.history.iter().skip(skip).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(skill: &str) -> Vec<WatchEvent> {
        vec![WatchEvent {
            skill: skill.into(),
            ..WatchEvent::default()
        }]
    }

    #[test]
    fn revisions_grow_by_one_per_change_and_empty_changes_take_none() {
        let mut hub = WatchHub::new(10, usize::MAX);
        let start = hub.revision();
        hub.publish(event("a"));
        hub.publish(Vec::new());
        hub.publish(event("b"));
        assert_eq!(hub.revision(), start + 2);
        let all = hub.since(start + 1).unwrap();
        assert_eq!(
            all.iter().map(|c| c.revision).collect::<Vec<_>>(),
            [start + 1, start + 2]
        );
        assert_eq!(hub.since(start + 2).unwrap()[0].events[0].skill, "b");
        assert!(
            hub.since(start + 3).unwrap().is_empty(),
            "the next revision is fine"
        );
    }

    #[test]
    fn history_is_bounded_and_older_or_foreign_revisions_are_compacted() {
        let mut hub = WatchHub::new(2, usize::MAX);
        let start = hub.revision();
        for skill in ["a", "b", "c"] {
            hub.publish(event(skill));
        }
        assert_eq!(hub.since(start + 1), Err(Compacted { oldest: start + 2 }));
        assert_eq!(hub.since(start + 2).unwrap().len(), 2);
        assert!(
            hub.since(start + 10).is_err(),
            "a revision ahead is refused"
        );
        assert!(
            hub.since(1).is_err(),
            "a revision of an earlier run is refused"
        );
    }

    #[test]
    fn history_is_bounded_in_bytes_too() {
        let mut hub = WatchHub::new(1000, 200);
        let start = hub.revision();
        for _ in 0..20 {
            hub.publish(event(&"s".repeat(50)));
        }
        let kept = hub.since(hub.oldest()).unwrap();
        assert!(kept.len() < 20 && !kept.is_empty(), "{}", kept.len());
        assert!(hub.since(start + 1).is_err());
    }

    #[test]
    fn a_subscriber_gets_the_backlog_then_live_changes() {
        let mut hub = WatchHub::new(10, usize::MAX);
        let start = hub.revision();
        hub.publish(event("a"));
        let (backlog, mut live) = hub.subscribe(start + 1).unwrap();
        assert_eq!(backlog.len(), 1);
        hub.publish(event("b"));
        assert_eq!(live.try_recv().unwrap().events[0].skill, "b");
    }
}
