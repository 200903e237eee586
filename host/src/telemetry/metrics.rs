//! The host's metrics: explicit-bucket histograms, aggregated in memory and exported with
//! cumulative temporality (what Cloud Monitoring's Prometheus mapping expects). Memory is
//! bounded: each instrument keeps at most [`MAX_SERIES`] attribute sets; measurements beyond
//! go to one overflow series (`otel.metric.overflow = true`), as the OpenTelemetry SDKs do.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Histogram, HistogramDataPoint, Metric, metric,
};

use super::attributes::{Attributes, Value, key_values};
use super::semconv::{INSTRUMENTS, Instrument};

/// Attribute sets kept per instrument.
pub const MAX_SERIES: usize = 1000;

/// One histogram series.
#[derive(Debug, Clone)]
struct Series {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    /// One more than the bounds: the last bucket is everything above them.
    buckets: Vec<u64>,
}

impl Series {
    fn new(instrument: &Instrument) -> Series {
        Series {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            buckets: vec![0; instrument.bounds.len() + 1],
        }
    }

    fn record(&mut self, bounds: &[f64], value: f64) {
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        // A bucket holds values up to and including its upper bound.
        let bucket = bounds.partition_point(|bound| *bound < value);
        self.buckets[bucket] += 1;
    }
}

pub struct Metrics {
    start: SystemTime,
    instruments: Vec<Mutex<HashMap<Attributes, Series>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            start: SystemTime::now(),
            instruments: INSTRUMENTS.iter().map(|_| Mutex::default()).collect(),
        }
    }

    /// Records one measurement. Never fails; a value that is not finite is ignored.
    pub fn record(&self, instrument: Instrument, value: f64, attributes: Attributes) {
        if !value.is_finite() {
            return;
        }
        let Some(index) = INSTRUMENTS.iter().position(|i| i.name == instrument.name) else {
            return;
        };
        let mut series = self.instruments[index]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let attributes = if series.len() < MAX_SERIES || series.contains_key(&attributes) {
            attributes
        } else {
            vec![("otel.metric.overflow", Value::Bool(true))]
        };
        series
            .entry(attributes)
            .or_insert_with(|| Series::new(&instrument))
            .record(instrument.bounds, value);
    }

    /// Every series so far, as OTLP metrics (instruments with no measurement are left out).
    pub fn snapshot(&self, now: SystemTime) -> Vec<Metric> {
        let start = unix_nanos(self.start);
        let now = unix_nanos(now);
        INSTRUMENTS
            .iter()
            .zip(&self.instruments)
            .filter_map(|(instrument, series)| {
                let series = series.lock().unwrap_or_else(|e| e.into_inner());
                if series.is_empty() {
                    return None;
                }
                let data_points = series
                    .iter()
                    .map(|(attributes, s)| HistogramDataPoint {
                        attributes: key_values(attributes),
                        start_time_unix_nano: start,
                        time_unix_nano: now,
                        count: s.count,
                        sum: Some(s.sum),
                        bucket_counts: s.buckets.clone(),
                        explicit_bounds: instrument.bounds.to_vec(),
                        min: Some(s.min),
                        max: Some(s.max),
                        ..Default::default()
                    })
                    .collect();
                Some(Metric {
                    name: instrument.name.to_owned(),
                    description: instrument.description.to_owned(),
                    unit: instrument.unit.to_owned(),
                    data: Some(metric::Data::Histogram(Histogram {
                        data_points,
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    })),
                    ..Default::default()
                })
            })
            .collect()
    }
}

pub fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::semconv::{GEN_AI_CLIENT_TOKEN_USAGE, HTTP_SERVER_REQUEST_DURATION};

    fn histogram(metric: &Metric) -> &Histogram {
        match &metric.data {
            Some(metric::Data::Histogram(h)) => h,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn values_land_in_the_bucket_whose_bound_is_not_below_them() {
        let metrics = Metrics::new();
        let attributes = vec![("k", Value::from("v"))];
        for value in [0.001, 0.005, 0.006, 100.0] {
            metrics.record(HTTP_SERVER_REQUEST_DURATION, value, attributes.clone());
        }
        metrics.record(HTTP_SERVER_REQUEST_DURATION, f64::NAN, attributes.clone());
        let snapshot = metrics.snapshot(SystemTime::now());
        assert_eq!(snapshot.len(), 1, "instruments without data are left out");
        let point = &histogram(&snapshot[0]).data_points[0];
        assert_eq!(point.count, 4);
        assert_eq!(point.bucket_counts[0], 2, "0.001 and 0.005 are <= 0.005");
        assert_eq!(point.bucket_counts[1], 1);
        assert_eq!(*point.bucket_counts.last().unwrap(), 1);
        assert_eq!(point.bucket_counts.len(), point.explicit_bounds.len() + 1);
        assert_eq!(point.min, Some(0.001));
        assert_eq!(point.max, Some(100.0));
        assert!(point.start_time_unix_nano <= point.time_unix_nano);
        assert_eq!(
            histogram(&snapshot[0]).aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
    }

    #[test]
    fn series_are_bounded() {
        let metrics = Metrics::new();
        for i in 0..MAX_SERIES + 10 {
            metrics.record(
                GEN_AI_CLIENT_TOKEN_USAGE,
                1.0,
                vec![("model", Value::from(format!("m{i}")))],
            );
        }
        let snapshot = metrics.snapshot(SystemTime::now());
        let points = &histogram(&snapshot[0]).data_points;
        assert_eq!(points.len(), MAX_SERIES + 1);
        let overflow = points
            .iter()
            .find(|p| p.attributes[0].key == "otel.metric.overflow")
            .unwrap();
        assert_eq!(overflow.count, 10);
    }
}
