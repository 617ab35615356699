//! Each instance's recent reports, as compact samples in a ring: the metrics' names are
//! shared between samples (they rarely change), the values are one `f64` each.

use crate::thresholds::{metrics, MetricKey};
use mimo_proto::v1::{Point, ResourceReport};
use std::collections::VecDeque;
use std::sync::Arc;

/// Reports kept per instance by default: an hour at the default 10 s interval.
pub const DEFAULT_HISTORY: usize = 360;

#[derive(Debug)]
struct Sample {
    unix_ms: i64,
    names: Arc<[MetricKey]>,
    values: Vec<f64>,
}

/// One instance's ring of samples.
#[derive(Debug, Default)]
pub(crate) struct History {
    samples: VecDeque<Sample>,
}

impl History {
    /// Adds `report` (taken at `unix_ms`), dropping the oldest beyond `capacity`.
    pub(crate) fn push(&mut self, report: &ResourceReport, unix_ms: i64, capacity: usize) {
        if capacity == 0 {
            return;
        }
        let (names, values): (Vec<MetricKey>, Vec<f64>) = metrics(report).into_iter().unzip();
        let names = match self.samples.back() {
            Some(last) if *last.names == *names => last.names.clone(),
            _ => Arc::from(names),
        };
        while self.samples.len() >= capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(Sample {
            unix_ms,
            names,
            values,
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
    use mimo_proto::v1::Gauge;

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
            history.push(&report(n as f64), 1000 + n, 4);
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
