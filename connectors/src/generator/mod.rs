//! The `generator` connector: deterministic synthetic events, for demos, tests and
//! benchmarks.
//!
//! ```sql
//! CREATE SOURCE sensors (sensor_id TEXT, temperature DOUBLE, humidity DOUBLE, ts TIMESTAMP,
//!     WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
//! WITH (connector = 'generator', kind = 'sensors', rate = '200', seed = '7');
//! ```
//!
//! | option | meaning | default |
//! |---|---|---|
//! | `kind` | `sensors`, `payments`, `dues`, `logins`, `transfers`, `clicks`, `city_events`, or Nexmark's `persons`, `auctions` and `bids` | required |
//! | `seed` | the same seed gives the same events | 42 |
//! | `rate` | events per second, or `unlimited` | unlimited |
//! | `count` | stop after this many events (bounded source) | unbounded |
//! | `keys` | distinct sensors, accounts or users | 100 |
//! | `anomaly_ratio` | share of anomalous values | 0.02 |
//! | `disorder_ms` | events arrive up to this much out of order | 0 |
//! | `late_ratio` | share of events arriving `late_by_ms` behind | 0 |
//! | `late_by_ms` | how far behind late events are | 60000 |
//! | `start_ms` | first event time (epoch ms) without a rate | 2024-01-01T00:00:00Z |
//! | `step_ms` | event-time step between events without a rate | 10 |
//!
//! With a `rate`, event time follows the wall clock, so windows close as you watch.
//! Unlimited, event time advances by `step_ms` per event, as fast as the machine goes.

mod kinds;
mod rng;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use tokio::time::Instant;
use vigil_engine::connector::{
    ConnectorFactory, Source, SourceContext, SourceEvent, SourcePosition,
};
use vigil_engine::sql::Options;

pub use kinds::Kind;
use kinds::{KindState, Shape, generate};
use rng::Rng;

use crate::ConnectorError;

/// Factory of the `generator` connector.
#[derive(Debug, Default)]
pub struct GeneratorFactory;

/// The `generator` options, checked.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    /// What to generate.
    pub kind: Kind,
    /// PRNG seed.
    pub seed: u64,
    /// Events per second; `None` is as fast as possible.
    pub rate: Option<f64>,
    /// Total events, for a bounded source.
    pub count: Option<u64>,
    /// Distinct keys.
    pub keys: u64,
    /// Share of anomalies.
    pub anomaly_ratio: f64,
    /// Maximum out-of-orderness.
    pub disorder_ms: u64,
    /// Share of late events.
    pub late_ratio: f64,
    /// How late they are.
    pub late_by_ms: u64,
    /// First event time without a rate.
    pub start_ms: i64,
    /// Event-time step without a rate.
    pub step_ms: i64,
}

impl GeneratorConfig {
    /// Reads and checks the options.
    pub fn from_options(options: &Options) -> Result<Self, ConnectorError> {
        let mut r = options.reader();
        let kind_name = r.require("kind")?;
        let kind = Kind::parse(&kind_name).ok_or_else(|| {
            ConnectorError::config(
                "kind",
                format!("'{kind_name}' is not one of sensors, payments, dues, logins"),
            )
        })?;
        let rate = match r.take("rate") {
            None => None,
            Some(v) if v.eq_ignore_ascii_case("unlimited") => None,
            Some(v) => match v.trim().parse::<f64>() {
                Ok(rate) if rate > 0.0 => Some(rate),
                _ => {
                    return Err(ConnectorError::config(
                        "rate",
                        format!("'{v}' is not a positive number or 'unlimited'"),
                    ));
                }
            },
        };
        let config = Self {
            kind,
            seed: r.take_parsed("seed")?.unwrap_or(42),
            rate,
            count: r.take_parsed("count")?,
            keys: r.take_parsed("keys")?.unwrap_or(100).max(1),
            anomaly_ratio: r.take_parsed("anomaly_ratio")?.unwrap_or(0.02),
            disorder_ms: r.take_parsed("disorder_ms")?.unwrap_or(0),
            late_ratio: r.take_parsed("late_ratio")?.unwrap_or(0.0),
            late_by_ms: r.take_parsed("late_by_ms")?.unwrap_or(60_000),
            start_ms: r.take_parsed("start_ms")?.unwrap_or(1_704_067_200_000),
            step_ms: r.take_parsed("step_ms")?.unwrap_or(10),
        };
        r.finish()?;
        for (key, v) in [
            ("anomaly_ratio", config.anomaly_ratio),
            ("late_ratio", config.late_ratio),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(ConnectorError::config(key, "must be between 0 and 1"));
            }
        }
        Ok(config)
    }
}

impl ConnectorFactory for GeneratorFactory {
    fn name(&self) -> &'static str {
        "generator"
    }

    fn create_source(
        &self,
        options: &Options,
        schema: SchemaRef,
        ctx: SourceContext,
    ) -> Result<Box<dyn Source>, ConnectorError> {
        let config = GeneratorConfig::from_options(options)?;
        Ok(Box::new(GeneratorSource::try_new(
            config,
            schema,
            ctx.batch_size,
        )?))
    }
}

/// Makes events of one kind, projected onto the declared columns.
pub struct GeneratorSource {
    config: GeneratorConfig,
    schema: SchemaRef,
    /// For each declared column, its index in the kind's schema.
    projection: Vec<usize>,
    rng: Rng,
    state: KindState,
    produced: u64,
    batch_size: usize,
    started: Option<Instant>,
}

impl GeneratorSource {
    /// A generator whose rows follow `schema`, which must be a subset of the kind's columns
    /// with the same types.
    pub fn try_new(
        config: GeneratorConfig,
        schema: SchemaRef,
        batch_size: usize,
    ) -> Result<Self, ConnectorError> {
        let full = config.kind.schema();
        let projection = schema
            .fields()
            .iter()
            .map(|f| {
                let Ok(i) = full.index_of(f.name()) else {
                    let names: Vec<_> = full
                        .fields()
                        .iter()
                        .map(|f| format!("{} {}", f.name(), f.data_type()))
                        .collect();
                    return Err(ConnectorError::Schema(format!(
                        "generator kind {:?} has no column '{}' (it has: {})",
                        config.kind,
                        f.name(),
                        names.join(", ")
                    )));
                };
                if full.field(i).data_type() != f.data_type() {
                    return Err(ConnectorError::Schema(format!(
                        "column '{}' is {} in generator kind {:?}, declared {}",
                        f.name(),
                        full.field(i).data_type(),
                        config.kind,
                        f.data_type()
                    )));
                }
                Ok(i)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rng = Rng::new(
            config
                .seed
                .wrapping_mul(31)
                .wrapping_add(config.kind.salt()),
        );
        Ok(Self {
            config,
            schema,
            projection,
            rng,
            state: KindState::default(),
            produced: 0,
            batch_size: batch_size.max(1),
            started: None,
        })
    }

    /// Makes the next `n` events with event times from `base_ms`, stepping `step_ns`.
    fn make_batch(
        &mut self,
        n: usize,
        times: impl Iterator<Item = i64>,
    ) -> Result<RecordBatch, ConnectorError> {
        let disorder = self.config.disorder_ms as i64 * 1_000_000;
        let late_by = self.config.late_by_ms as i64 * 1_000_000;
        let mut ts = Vec::with_capacity(n);
        for t in times.take(n) {
            let mut t = t;
            if disorder > 0 {
                t -= self.rng.below(disorder as u64 + 1) as i64;
            }
            if self.rng.chance(self.config.late_ratio) {
                t -= late_by;
            }
            ts.push(t);
        }
        let shape = Shape {
            keys: self.config.keys,
            anomaly_ratio: self.config.anomaly_ratio,
        };
        let columns = generate(self.config.kind, &shape, &mut self.rng, &mut self.state, ts);
        let columns = self
            .projection
            .iter()
            .map(|&i| columns[i].clone())
            .collect();
        self.produced += n as u64;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    /// The next `n` events of an unpaced generator, whose event time steps by `step_ms`.
    fn make_stepped(&mut self, n: usize) -> Result<RecordBatch, ConnectorError> {
        let first = self.produced as i64;
        let (start, step) = (
            self.config.start_ms * 1_000_000,
            self.config.step_ms * 1_000_000,
        );
        self.make_batch(n, (first..).map(|i| start + i * step))
    }

    fn remaining(&self) -> u64 {
        self.config
            .count
            .map_or(u64::MAX, |c| c.saturating_sub(self.produced))
    }
}

#[async_trait]
impl Source for GeneratorSource {
    async fn next_batch(&mut self, max_wait: Duration) -> Result<SourceEvent, ConnectorError> {
        let remaining = self.remaining();
        if remaining == 0 {
            return Ok(SourceEvent::End);
        }
        let Some(rate) = self.config.rate else {
            let n = (self.batch_size as u64).min(remaining) as usize;
            return Ok(SourceEvent::Batch(self.make_stepped(n)?));
        };
        // Paced: emit what the rate allows since start, waiting at most `max_wait`.
        let started = *self.started.get_or_insert_with(Instant::now);
        let due = (started.elapsed().as_secs_f64() * rate) as u64 + 1;
        if due <= self.produced {
            let next_due = Duration::from_secs_f64((self.produced as f64) / rate);
            let wait = (started + next_due)
                .saturating_duration_since(Instant::now())
                .min(max_wait);
            tokio::time::sleep(wait).await;
            if ((started.elapsed().as_secs_f64() * rate) as u64) < self.produced {
                return Ok(SourceEvent::Idle);
            }
        }
        let due = (started.elapsed().as_secs_f64() * rate) as u64 + 1;
        let n = (due - self.produced)
            .min(self.batch_size as u64)
            .min(remaining) as usize;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
            * 1_000_000;
        let batch = self.make_batch(n, std::iter::repeat(now))?;
        Ok(SourceEvent::Batch(batch))
    }

    /// The number of events made.
    fn position(&self) -> Option<SourcePosition> {
        Some(SourcePosition::single(self.produced as i64))
    }

    /// Makes (and drops) the events an earlier run made, in batches of the same size (the
    /// pseudo-random draws follow the batches), so the sequence continues where it stood;
    /// a paced generator then keeps its pace from there.
    async fn restore(&mut self, position: SourcePosition) -> Result<(), ConnectorError> {
        let target = position.splits.get(&0).copied().unwrap_or(0).max(0) as u64;
        while self.produced < target {
            let n = (target - self.produced).min(self.batch_size as u64) as usize;
            self.make_stepped(n)?;
        }
        if let Some(rate) = self.config.rate {
            let made_for = Duration::from_secs_f64(self.produced as f64 / rate);
            self.started = Instant::now().checked_sub(made_for);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(options: &[(&str, &str)]) -> GeneratorSource {
        let config = GeneratorConfig::from_options(&Options::new(options.iter().copied())).unwrap();
        GeneratorSource::try_new(config.clone(), config.kind.schema(), 100).unwrap()
    }

    #[tokio::test]
    async fn same_seed_same_events_and_count_bounds_the_stream() {
        let opts = [("kind", "sensors"), ("count", "150"), ("seed", "9")];
        let (mut a, mut b) = (source(&opts), source(&opts));
        let mut total = 0;
        loop {
            match (
                a.next_batch(Duration::ZERO).await.unwrap(),
                b.next_batch(Duration::ZERO).await.unwrap(),
            ) {
                (SourceEvent::Batch(x), SourceEvent::Batch(y)) => {
                    assert_eq!(x, y);
                    total += x.num_rows();
                }
                (SourceEvent::End, SourceEvent::End) => break,
                other => panic!("sources diverged: {other:?}"),
            }
        }
        assert_eq!(total, 150);
    }

    #[test]
    fn declared_column_not_in_kind_is_rejected() {
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        let config = GeneratorConfig::from_options(&Options::new([("kind", "payments")])).unwrap();
        let schema = std::sync::Arc::new(Schema::new(vec![Field::new(
            "sensor_id",
            DataType::Utf8,
            true,
        )]));
        let err = GeneratorSource::try_new(config, schema, 10).err().unwrap();
        assert!(err.to_string().contains("no column 'sensor_id'"), "{err}");
    }

    /// The events of a bounded generator, in one batch.
    async fn all_events(options: &[(&str, &str)]) -> RecordBatch {
        let mut source = source(options);
        let mut batches = Vec::new();
        while let SourceEvent::Batch(b) = source.next_batch(Duration::ZERO).await.unwrap() {
            batches.push(b);
        }
        datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
    }

    #[tokio::test]
    async fn a_login_device_is_new_only_the_first_time_its_user_logs_in_with_it() {
        use datafusion::arrow::array::{AsArray, BooleanArray};
        let options = [("kind", "logins"), ("count", "2000"), ("keys", "20")];
        let batch = all_events(&options).await;
        let users = batch.column_by_name("user_id").unwrap().as_string::<i32>();
        let devices = batch
            .column_by_name("device_id")
            .unwrap()
            .as_string::<i32>();
        let new: &BooleanArray = batch.column_by_name("new_device").unwrap().as_boolean();
        let mut seen = std::collections::HashSet::new();
        let mut unusual = 0;
        for i in 0..batch.num_rows() {
            let device = devices.value(i);
            assert!(device.starts_with(users.value(i).replace("user", "dev").as_str()));
            let first_time = seen.insert(device);
            assert_eq!(new.value(i), first_time, "row {i}: {device}");
            unusual += usize::from(device.rsplit('-').next().unwrap().parse::<u64>().unwrap() >= 3);
        }
        assert!(unusual > 0, "some logins come from a device never seen");
    }

    #[tokio::test]
    async fn transfers_are_under_900_but_for_anomalies_at_or_over_1000() {
        use datafusion::arrow::array::AsArray;
        use datafusion::arrow::datatypes::Float64Type;
        let options = [
            ("kind", "transfers"),
            ("count", "5000"),
            ("anomaly_ratio", "0.1"),
        ];
        let batch = all_events(&options).await;
        let amounts = batch
            .column_by_name("amount")
            .unwrap()
            .as_primitive::<Float64Type>();
        let (mut exactly, mut over) = (0, 0);
        for amount in amounts.values().iter().copied() {
            assert!(
                (5.0..=900.0).contains(&amount) || amount >= 1000.0,
                "{amount}"
            );
            exactly += usize::from(amount == 1000.0);
            over += usize::from(amount > 1000.0);
        }
        assert!(
            exactly > 0 && over > exactly,
            "{exactly} at 1000, {over} over"
        );
    }

    #[tokio::test]
    async fn nexmark_ids_count_from_one_and_bids_favour_the_hot_auctions() {
        use datafusion::arrow::array::AsArray;
        use datafusion::arrow::datatypes::Int64Type;
        let persons = all_events(&[("kind", "persons"), ("count", "250")]).await;
        let ids = persons
            .column_by_name("id")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert!(ids.values().iter().copied().eq(1..=250));
        let auctions = all_events(&[("kind", "auctions"), ("count", "500"), ("keys", "40")]).await;
        let sellers = auctions
            .column_by_name("seller")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert!(sellers.values().iter().all(|s| (1..=40).contains(s)));
        let options = [
            ("kind", "bids"),
            ("count", "3000"),
            ("keys", "100"),
            ("anomaly_ratio", "0.3"),
        ];
        let bids = all_events(&options).await;
        let auction = bids
            .column_by_name("auction")
            .unwrap()
            .as_primitive::<Int64Type>();
        let hot = auction.values().iter().filter(|a| **a <= 3).count();
        // About 30% of the bids, and 3% of the rest, go to auctions 1 to 3.
        assert!((800..1200).contains(&hot), "{hot} bids on the hot auctions");
    }

    #[test]
    fn unknown_option_is_rejected() {
        let err = GeneratorConfig::from_options(&Options::new([("kind", "logins"), ("rat", "5")]))
            .unwrap_err();
        assert_eq!(err.to_string(), "option 'rat': unknown option");
    }
}
