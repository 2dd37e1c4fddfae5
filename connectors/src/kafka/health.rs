//! Whether a Kafka client reaches its brokers, told to the query's [`Health`] from
//! librdkafka's error callback (all brokers down) and its periodic statistics (whether a
//! broker connection is up).

use rdkafka::ClientContext;
use rdkafka::Statistics;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use vigil_engine::connector::Health;

/// librdkafka's statistics interval for clients that report their health: how soon a
/// broker coming back is seen.
pub(crate) const STATISTICS_INTERVAL_MS: &str = "1000";

/// A client error that means the brokers cannot be reached.
fn cuts_off(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::Resolve)
    )
}

/// Tells `health` the brokers are out of reach, on an error that means so.
pub(crate) fn on_error(health: &Health, error: &KafkaError, reason: &str) {
    if cuts_off(error) {
        health.unreachable(format!("cannot reach the Kafka brokers: {reason}"));
    }
}

/// Tells `health` whether a statistics report shows a broker connection up. Reports come
/// every second, so an outage is seen even when a report from before it arrives after the
/// error that announced it.
pub(crate) fn on_statistics(health: &Health, statistics: &Statistics) {
    if statistics.brokers.values().any(|b| b.state == "UP") {
        health.reachable();
    } else if !statistics.brokers.is_empty() {
        let states: Vec<String> = statistics
            .brokers
            .values()
            .map(|b| format!("{} {}", b.name, b.state))
            .collect();
        health.unreachable(format!(
            "cannot reach the Kafka brokers: no connection is up ({})",
            states.join(", ")
        ));
    }
}

/// The context of a producer, reporting its health where the query said to.
#[derive(Default)]
pub(crate) struct ProducerHealth {
    health: Option<Health>,
}

impl ProducerHealth {
    /// Reports to `health`, when given.
    pub(crate) fn new(health: Option<Health>) -> Self {
        Self { health }
    }
}

impl ClientContext for ProducerHealth {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "Kafka producer error, retrying");
        if let Some(health) = &self.health {
            on_error(health, &error, reason);
        }
    }

    fn stats(&self, statistics: Statistics) {
        if let Some(health) = &self.health {
            on_statistics(health, &statistics);
        }
    }
}
