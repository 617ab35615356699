//! The lease table: TTLs and deadlines on a monotonic clock, with expiry found through a
//! deadline-ordered index (O(log n) per grant, heartbeat and expiry; nothing is scanned).

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;
use tokio::time::Instant;

/// One live lease.
#[derive(Debug, Clone, Copy)]
struct Lease {
    ttl: Duration,
    deadline: Instant,
}

/// Live leases ordered by deadline.
#[derive(Debug)]
pub(crate) struct LeaseTable {
    leases: HashMap<u64, Lease>,
    deadlines: BTreeSet<(Instant, u64)>,
    next_id: u64,
}

impl LeaseTable {
    /// Returns an empty table whose ids start at a random point, so that ids granted by an
    /// earlier run of the registry are not granted again to someone else.
    pub(crate) fn new() -> Self {
        let random = RandomState::new().hash_one(std::process::id());
        Self {
            leases: HashMap::new(),
            deadlines: BTreeSet::new(),
            next_id: (random >> 16).max(1),
        }
    }

    /// Ids of the live leases.
    pub(crate) fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.leases.keys().copied()
    }

    /// Number of live leases.
    pub(crate) fn len(&self) -> usize {
        self.leases.len()
    }

    /// Grants a lease of `ttl` from `now` and returns its id.
    pub(crate) fn grant(&mut self, ttl: Duration, now: Instant) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let deadline = now + ttl;
        self.leases.insert(id, Lease { ttl, deadline });
        self.deadlines.insert((deadline, id));
        id
    }

    /// Records a lease granted elsewhere (by etcd, for a cache of it) under its own id.
    pub(crate) fn insert(&mut self, id: u64, ttl: Duration, deadline: Instant) {
        self.revoke(id);
        self.leases.insert(id, Lease { ttl, deadline });
        self.deadlines.insert((deadline, id));
    }

    /// Moves the lease's deadline to `now + ttl` and returns the TTL, or `None` if unknown.
    pub(crate) fn keep_alive(&mut self, id: u64, now: Instant) -> Option<Duration> {
        let lease = self.leases.get_mut(&id)?;
        self.deadlines.remove(&(lease.deadline, id));
        lease.deadline = now + lease.ttl;
        self.deadlines.insert((lease.deadline, id));
        Some(lease.ttl)
    }

    /// Removes the lease; returns whether it existed.
    pub(crate) fn revoke(&mut self, id: u64) -> bool {
        match self.leases.remove(&id) {
            Some(lease) => {
                self.deadlines.remove(&(lease.deadline, id));
                true
            }
            None => false,
        }
    }

    /// Returns (time left, granted TTL) of the lease, or `None` if unknown.
    pub(crate) fn time_to_live(&self, id: u64, now: Instant) -> Option<(Duration, Duration)> {
        let lease = self.leases.get(&id)?;
        Some((lease.deadline.saturating_duration_since(now), lease.ttl))
    }

    /// Earliest deadline of any live lease.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(deadline, _)| *deadline)
    }

    /// Removes and returns every lease whose deadline is at or before `now`.
    pub(crate) fn take_expired(&mut self, now: Instant) -> Vec<u64> {
        let mut expired = Vec::new();
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            self.leases.remove(&id);
            expired.push(id);
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_expire_in_deadline_order_and_keep_alive_postpones() {
        let start = Instant::now();
        let mut table = LeaseTable::new();
        let short = table.grant(Duration::from_secs(1), start);
        let long = table.grant(Duration::from_secs(5), start);
        assert_eq!(table.next_deadline(), Some(start + Duration::from_secs(1)));

        assert!(table
            .take_expired(start + Duration::from_millis(999))
            .is_empty());
        assert_eq!(
            table.keep_alive(short, start + Duration::from_millis(900)),
            Some(Duration::from_secs(1))
        );
        assert!(table
            .take_expired(start + Duration::from_millis(1500))
            .is_empty());
        assert_eq!(
            table.take_expired(start + Duration::from_millis(1900)),
            vec![short]
        );
        assert_eq!(
            table.keep_alive(short, start + Duration::from_secs(2)),
            None
        );
        assert_eq!(
            table.take_expired(start + Duration::from_secs(5)),
            vec![long]
        );
        assert_eq!(table.len(), 0);
        assert_eq!(table.next_deadline(), None);
    }

    #[test]
    fn revoked_lease_is_gone_and_never_expires_later() {
        let start = Instant::now();
        let mut table = LeaseTable::new();
        let id = table.grant(Duration::from_secs(1), start);
        assert!(table.revoke(id));
        assert!(!table.revoke(id));
        assert!(table
            .take_expired(start + Duration::from_secs(10))
            .is_empty());
        assert!(table.time_to_live(id, start).is_none());
    }
}
