//! Each instance's recent reports, as compact samples in a ring: the metrics' names are
//! shared between samples (they rarely change), the values are one `f64` each.

use crate::thresholds::MetricKey;
use mimo_proto::v1::Point;
use std::collections::VecDeque;
use std::sync::Arc;

/// Reports kept per instance by default: an hour at the default 10 s interval.
pub const DEFAULT_HISTORY: usize = 360;
/// Bytes of samples kept per instance at most (names counted once per change); the oldest
/// go first.
pub const MAX_HISTORY_BYTES: usize = 1024 * 1024;

#[derive(Debug)]
struct Sample {
    unix_ms: i64,
    names: Arc<[MetricKey]>,
    values: Vec<f64>,
    /// What it costs: its values, and its names when they are not the previous sample's.
    bytes: usize,
}

/// Bytes of `names`, roughly.
fn names_bytes(names: &[MetricKey]) -> usize {
    names
        .iter()
        .map(|key| {
            32 + key.name.len()
                + key
                    .attributes
                    .iter()
                    .map(|(k, v)| 48 + k.len() + v.len())
                    .sum::<usize>()
        })
        .sum()
}

/// One instance's ring of samples.
#[derive(Debug, Default)]
pub(crate) struct History {
    samples: VecDeque<Sample>,
    /// The samples' bytes.
    bytes: usize,
}

impl History {
    /// Adds `report` at `unix_ms` (when it arrived, by the telemetry service's clock, so that
    /// points are in order whatever the reporters' clocks say), dropping the oldest beyond
    /// `capacity`.
    pub(crate) fn push(&mut self, metrics: Vec<(MetricKey, f64)>, unix_ms: i64, capacity: usize) {
        if capacity == 0 {
            return;
        }
        let (names, values): (Vec<MetricKey>, Vec<f64>) = metrics.into_iter().unzip();
        let (names, names_cost) = match self.samples.back() {
            Some(last) if *last.names == *names => (last.names.clone(), 0),
            _ => {
                let cost = names_bytes(&names);
                (Arc::from(names), cost)
            }
        };
        let bytes = 64 + values.len() * 8 + names_cost;
        while !self.samples.is_empty()
            && (self.samples.len() >= capacity || self.bytes + bytes > MAX_HISTORY_BYTES)
        {
            if let Some(oldest) = self.samples.pop_front() {
                self.bytes -= oldest.bytes;
            }
        }
        self.bytes += bytes;
        self.samples.push_back(Sample {
            unix_ms,
            names,
            values,
            bytes,
        });
    }

    /// The points of each metric matching `matches`, within `since..=until`, oldest first;
    /// at most `budget` points in all (the budget is reduced by what is returned).
    pub(crate) fn series(
        &self,
        matches: impl Fn(&str) -> bool,
        since: i64,
        until: i64,
        budget: &mut usize,
    ) -> Vec<(MetricKey, Vec<Point>)> {
        let mut found: Vec<(MetricKey, Vec<Point>)> = Vec::new();
        for sample in &self.samples {
            if sample.unix_ms < since || sample.unix_ms > until {
                continue;
            }
            for (name, value) in sample.names.iter().zip(&sample.values) {
                if !matches(&name.name) {
                    continue;
                }
                if *budget == 0 {
                    return found;
                }
                *budget -= 1;
                let point = Point {
                    unix_ms: sample.unix_ms,
                    value: *value,
                };
                match found.iter_mut().find(|(metric, _)| metric == name) {
                    Some((_, points)) => points.push(point),
                    None => found.push((name.clone(), vec![point])),
                }
            }
        }
        found
    }

    /// Samples held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.samples.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thresholds::metrics;
    use mimo_proto::v1::Gauge;
    use mimo_proto::v1::ResourceReport;

    fn report(engrams: f64) -> ResourceReport {
        ResourceReport {
            gauges: vec![Gauge {
                name: "memory.engrams".into(),
                value: engrams,
                attributes: Default::default(),
            }],
            ..ResourceReport::default()
        }
    }

    #[test]
    fn the_ring_keeps_the_latest_and_answers_by_name_and_time() {
        let mut history = History::default();
        for n in 0..10 {
            history.push(metrics(&report(n as f64)), 1000 + n, 4);
        }
        assert_eq!(history.len(), 4);
        let mut budget = 100;
        let series = history.series(|name| name == "memory.engrams", 1007, i64::MAX, &mut budget);
        assert_eq!(series.len(), 1);
        let values: Vec<f64> = series[0].1.iter().map(|point| point.value).collect();
        assert_eq!(values, [7.0, 8.0, 9.0]);
        assert_eq!(budget, 97);
        let mut small = 2;
        let cut = history.series(|_| true, 0, i64::MAX, &mut small);
        assert_eq!(cut[0].1.len(), 2, "the budget bounds the answer");
    }
}
