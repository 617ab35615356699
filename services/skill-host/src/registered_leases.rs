//! The lease each skill is registered under now, as the registrar last learned it: calls
//! routed by an older registration (a stale epoch) are refused with it.

use std::collections::HashMap;
use std::sync::Mutex;

/// Skill name → lease id of its live registration.
#[derive(Debug, Default)]
pub struct RegisteredLeases {
    leases: Mutex<HashMap<String, u64>>,
}

impl RegisteredLeases {
    /// Replaces the whole table with `leases`.
    pub fn replace(&self, leases: HashMap<String, u64>) {
        *self.leases.lock().unwrap_or_else(|p| p.into_inner()) = leases;
    }

    /// The lease `skill` is registered under now, if any.
    pub fn get(&self, skill: &str) -> Option<u64> {
        self.leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(skill)
            .copied()
    }
}
