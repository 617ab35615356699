//! Decay: an engram's retention is its importance, halving every half-life since it was last
//! accessed and raised by how often it was (`importance * 0.5^(age / half_life) *
//! (1 + ln(1 + accesses))`); a pass forgets every unprotected engram whose retention is
//! below a threshold, logging and counting each, or with a dry run only lists them. Off by
//! default: passes run when asked (the Decay RPC) or every `interval` when one is set.

use crate::database::{engram_from_row, now_unix_ms, on_connection, ENGRAM_COLUMNS};
use crate::error::MemoryError;
use crate::store::MemoryStore;
use mimo_proto::v1::{DecayRequest, DecayResponse};
use std::time::Duration;

/// Engrams read per page of a pass.
const PAGE: i64 = 1000;
/// Engrams a response lists at most (the count covers them all).
const MAX_LISTED: usize = 1000;

/// When and how engrams decay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecaySettings {
    /// Days for retention to halve without access.
    pub half_life_days: f64,
    /// Engrams below this retention are forgotten.
    pub forget_below: f32,
    /// Time between two passes, or `None` to run only when asked.
    pub interval: Option<Duration>,
}

impl Default for DecaySettings {
    fn default() -> Self {
        Self {
            half_life_days: 30.0,
            forget_below: 0.05,
            interval: None,
        }
    }
}

/// The retention of an engram of `importance`, last accessed `age_ms` ago, `accesses` times.
pub(crate) fn retention(importance: f64, age_ms: i64, accesses: i64, half_life_days: f64) -> f64 {
    let age_days = age_ms.max(0) as f64 / 86_400_000.0;
    let boost = 1.0 + (1.0 + accesses.max(0) as f64).ln();
    (importance * 0.5_f64.powf(age_days / half_life_days) * boost).min(1.0)
}

impl MemoryStore {
    /// Runs one decay pass with `request`'s settings (the store's where it gives none).
    pub async fn decay(&self, request: DecayRequest) -> Result<DecayResponse, MemoryError> {
        let defaults = self.decay_settings();
        let half_life = request.half_life_days.unwrap_or(defaults.half_life_days);
        if !(half_life.is_finite() && half_life > 0.0 && half_life <= 1.0e6) {
            return Err(MemoryError::OutOfRange {
                field: "half_life_days",
                value: half_life.to_string(),
                bounds: "(0, 1000000]".to_string(),
            });
        }
        let forget_below = request.forget_below.unwrap_or(defaults.forget_below);
        if !(0.0..=1.0).contains(&forget_below) {
            return Err(MemoryError::OutOfRange {
                field: "forget_below",
                value: forget_below.to_string(),
                bounds: "0.0..=1.0".to_string(),
            });
        }
        let now = now_unix_ms();
        let mut response = DecayResponse::default();
        let mut after = String::new();
        loop {
            let mut page = Vec::new();
            on_connection!(&mut self.read_connection().await?, |connection, Db| {
                let statement = format!(
                    "SELECT {ENGRAM_COLUMNS} FROM engrams WHERE protected = 0 AND id > $1 \
                     ORDER BY id LIMIT $2"
                );
                for row in &sqlx::query(&statement)
                    .bind(&after)
                    .bind(PAGE)
                    .fetch_all(&mut *connection)
                    .await?
                {
                    page.push(engram_from_row(row)?);
                }
            });
            let Some(last) = page.last() else {
                break;
            };
            after = last.id.clone();
            for engram in page {
                response.examined += 1;
                let kept = retention(
                    f64::from(engram.importance),
                    now - engram.last_accessed_at_unix_ms,
                    i64::try_from(engram.access_count).unwrap_or(i64::MAX),
                    half_life,
                );
                if kept >= f64::from(forget_below) {
                    continue;
                }
                if request.dry_run {
                    tracing::info!(engram = %engram.id, retention = kept, "decay would forget this engram (dry run)");
                } else {
                    match self.delete(&engram.id).await {
                        Ok(()) => {
                            self.count_forgotten();
                            tracing::info!(engram = %engram.id, retention = kept, "engram forgotten by decay");
                        }
                        Err(MemoryError::NotFound(_)) => continue,
                        Err(error) => return Err(error),
                    }
                }
                response.count += 1;
                if response.forgotten.len() < MAX_LISTED {
                    response.forgotten.push(engram);
                }
            }
        }
        crate::response_size::fit(&mut response.forgotten);
        tracing::info!(
            examined = response.examined,
            forgotten = response.count,
            dry_run = request.dry_run,
            "decay pass done"
        );
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::retention;

    #[test]
    fn retention_halves_with_each_half_life_and_grows_with_access() {
        let day = 86_400_000;
        assert_eq!(retention(0.8, 0, 0, 30.0), 0.8);
        assert!((retention(0.8, 30 * day, 0, 30.0) - 0.4).abs() < 1e-9);
        assert!((retention(0.8, 60 * day, 0, 30.0) - 0.2).abs() < 1e-9);
        assert!(retention(0.2, 30 * day, 10, 30.0) > retention(0.2, 30 * day, 0, 30.0));
        assert_eq!(retention(0.9, 0, 1000, 30.0), 1.0);
        assert_eq!(
            retention(0.5, -5, 0, 30.0),
            0.5,
            "a clock step back is no age"
        );
    }
}
