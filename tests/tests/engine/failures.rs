//! Every way a query fails ends it the same way: its sources stop, and the error is the
//! query's, whether a sink or an operator failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::record_batch::RecordBatch;
use vigil_engine::connector::{ConnectorError, Sink};
use vigil_engine::{Engine, EngineConfig};

/// Fails on its `fail_at`-th write, counting writes.
struct FailingSink {
    writes: Arc<AtomicUsize>,
    fail_at: usize,
}

#[async_trait]
impl Sink for FailingSink {
    async fn write(&mut self, _batch: RecordBatch) -> Result<(), ConnectorError> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= self.fail_at {
            return Err(ConnectorError::External("the disk is full".into()));
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sink_stops_an_unbounded_query_with_its_error() {
    let mut engine = Engine::with_config(
        vigil_connectors::registry(),
        EngineConfig {
            batch_size: 16,
            start_queries: false,
            ..EngineConfig::default()
        },
    );
    engine
        .execute(
            "CREATE SOURCE readings (sensor_id TEXT, temperature DOUBLE, humidity DOUBLE, ts TIMESTAMP)
             WITH (connector = 'generator', kind = 'sensors', rate = '2000')",
        )
        .await
        .unwrap();
    let planned = engine.plan("SELECT sensor_id FROM readings").await.unwrap();
    let writes = Arc::new(AtomicUsize::new(0));
    let sink = FailingSink {
        writes: Arc::clone(&writes),
        fail_at: 3,
    };
    let query = engine.start(planned, Box::new(sink)).unwrap();
    let stop = query.stop_handle();
    let outcome = tokio::time::timeout(Duration::from_secs(20), query.wait())
        .await
        .expect("an unbounded query ends when its sink fails");
    let error = outcome
        .expect_err("the sink's error is the query's")
        .to_string();
    assert!(error.contains("the disk is full"), "{error}");
    assert_eq!(
        writes.load(Ordering::SeqCst),
        3,
        "no write after the failure"
    );
    assert!(stop.is_finished(), "every task of the query is gone");
}
