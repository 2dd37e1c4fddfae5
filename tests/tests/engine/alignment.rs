//! Watermark alignment: a source with `max_drift` reads on only while its watermark is
//! within the drift of the query's other timed sources, however much faster it is read.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::{RecordBatch, StringArray, TimestampNanosecondArray};
use datafusion::arrow::datatypes::SchemaRef;
use vigil_engine::connector::{
    ConnectorError, ConnectorFactory, ConnectorRegistry, Source, SourceContext, SourceEvent,
};
use vigil_engine::sql::Options;
use vigil_engine::{Engine, EngineConfig};

const SECOND: i64 = 1_000_000_000;
const BATCHES: usize = 120;

/// Per source name, how many batches it has handed out.
type Reads = Arc<Mutex<Vec<(String, usize)>>>;

/// A `paced` source: `BATCHES` batches, batch `i` holding 4 rows within second `i` of event
/// time, each handed out after `delay_ms`; every hand-out is logged.
struct PacedFactory {
    reads: Reads,
}

struct PacedSource {
    name: String,
    schema: SchemaRef,
    delay: Duration,
    next: usize,
    reads: Reads,
}

impl ConnectorFactory for PacedFactory {
    fn name(&self) -> &'static str {
        "paced"
    }

    fn create_source(
        &self,
        options: &Options,
        schema: SchemaRef,
        ctx: SourceContext,
    ) -> Result<Box<dyn Source>, ConnectorError> {
        let delay = options.get("delay_ms").unwrap_or("0").parse().unwrap();
        Ok(Box::new(PacedSource {
            name: ctx.name,
            schema,
            delay: Duration::from_millis(delay),
            next: 0,
            reads: Arc::clone(&self.reads),
        }))
    }
}

#[async_trait]
impl Source for PacedSource {
    async fn next_batch(&mut self, _max_wait: Duration) -> Result<SourceEvent, ConnectorError> {
        if self.next == BATCHES {
            return Ok(SourceEvent::End);
        }
        tokio::time::sleep(self.delay).await;
        let second = self.next as i64 * SECOND;
        let times = (0..4).map(|i| second + i * SECOND / 4);
        let rows = RecordBatch::try_new(
            Arc::clone(&self.schema),
            vec![
                Arc::new(StringArray::from(vec!["k"; 4])),
                Arc::new(TimestampNanosecondArray::from_iter_values(times)),
            ],
        )
        .unwrap();
        self.next += 1;
        self.reads
            .lock()
            .unwrap()
            .push((self.name.clone(), self.next));
        Ok(SourceEvent::Batch(rows))
    }
}

/// How far ahead of the slow source, in batches (seconds), the fast one ever was when it
/// handed out a batch.
async fn largest_lead(fast_options: &str) -> usize {
    let reads = Reads::default();
    let mut registry = ConnectorRegistry::new();
    registry.register(Arc::new(PacedFactory {
        reads: Arc::clone(&reads),
    }));
    let mut engine = Engine::with_config(
        registry,
        EngineConfig {
            start_queries: false,
            ..EngineConfig::default()
        },
    );
    for (name, options) in [("fast", fast_options), ("slow", ", delay_ms = '3'")] {
        engine
            .execute(&format!(
                "CREATE SOURCE {name} (k TEXT, ts TIMESTAMP, WATERMARK FOR ts AS ts)
                 WITH (connector = 'paced'{options})"
            ))
            .await
            .unwrap();
    }
    let planned = engine
        .plan(
            "SELECT f.k, f.ts, s.ts FROM fast f JOIN slow s
             ON f.k = s.k AND s.ts BETWEEN f.ts AND f.ts + INTERVAL '1' SECOND",
        )
        .await
        .unwrap();
    let query = engine.start(planned, Box::new(Discard)).unwrap();
    tokio::time::timeout(Duration::from_secs(30), query.wait())
        .await
        .expect("both sources end")
        .unwrap();
    let reads = reads.lock().unwrap();
    let mut slow = 0;
    let mut lead = 0;
    for (name, count) in reads.iter() {
        match name.as_str() {
            "slow" => slow = *count,
            _ => lead = lead.max(count.saturating_sub(slow)),
        }
    }
    lead
}

/// Keeps nothing.
struct Discard;

#[async_trait]
impl vigil_engine::connector::Sink for Discard {
    async fn write(&mut self, _batch: RecordBatch) -> Result<(), ConnectorError> {
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_with_a_max_drift_stays_within_it_of_the_slower_one() {
    let unaligned = largest_lead("").await;
    assert!(
        unaligned > 60,
        "without alignment the fast source runs ahead: {unaligned} s"
    );
    // The drift, plus the fast source's batches in flight (the channel's and the one being
    // processed) that its published watermark does not count yet.
    let aligned = largest_lead(", max_drift = '5s'").await;
    assert!(aligned <= 5 + 6, "with a 5 s drift it led by {aligned} s");
}
