//! Connection settings shared by every Kafka client Vigil makes, and start-up checks.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::ConnectorError;

/// The environment variable naming the brokers.
pub const BROKERS_ENV: &str = "VIGIL_KAFKA_BROKERS";

/// Brokers when neither the environment nor the command line names any.
pub const DEFAULT_BROKERS: &str = "localhost:9092";

/// How long start-up waits for the brokers to answer.
pub(crate) const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the brokers are: set by the deployment, never by a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// `host:port[,host:port...]`, librdkafka's `bootstrap.servers`.
    pub brokers: String,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self::from_env(None)
    }
}

impl KafkaSettings {
    /// Brokers from `explicit` (the command line) if given, else `VIGIL_KAFKA_BROKERS`, else
    /// `localhost:9092`.
    pub fn from_env(explicit: Option<String>) -> Self {
        let brokers = explicit
            .or_else(|| std::env::var(BROKERS_ENV).ok())
            .filter(|b| !b.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_BROKERS.to_string());
        Self { brokers }
    }

    /// A client configuration pointing at the brokers; callers add their own settings.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", "vigil")
            // Resolve "localhost" to IPv4 first: brokers commonly listen on 127.0.0.1 only.
            .set("broker.address.family", "v4");
        config
    }
}

/// Partition ids of each topic, in the order given; fails with a clear message when the
/// brokers cannot be reached or a topic does not exist.
pub(crate) fn topic_partitions<C: ClientContext>(
    client: &Client<C>,
    brokers: &str,
    topics: &[String],
) -> Result<Vec<Vec<i32>>, ConnectorError> {
    topics
        .iter()
        .map(|topic| {
            let metadata = client
                .fetch_metadata(Some(topic), METADATA_TIMEOUT)
                .map_err(|e| unreachable(brokers, e))?;
            let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
                return Err(missing(topic, brokers));
            };
            match found.error() {
                None if !found.partitions().is_empty() => {
                    Ok(found.partitions().iter().map(|p| p.id()).collect())
                }
                None => Err(missing(topic, brokers)),
                Some(code) => match RDKafkaErrorCode::from(code) {
                    RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => {
                        Err(missing(topic, brokers))
                    }
                    other => Err(ConnectorError::External(format!(
                        "Kafka topic '{topic}' at {brokers}: {other}"
                    ))),
                },
            }
        })
        .collect()
}

fn missing(topic: &str, brokers: &str) -> ConnectorError {
    ConnectorError::External(format!(
        "Kafka topic '{topic}' does not exist at {brokers}; create it first"
    ))
}

pub(crate) fn unreachable(brokers: &str, e: KafkaError) -> ConnectorError {
    ConnectorError::External(format!(
        "cannot reach Kafka brokers at {brokers} (set {BROKERS_ENV} or --brokers): {e}"
    ))
}

/// Creates the topics that do not exist yet, with `partitions` partitions each.
pub async fn create_topics(
    settings: &KafkaSettings,
    topics: &[&str],
    partitions: i32,
) -> Result<(), ConnectorError> {
    let admin: AdminClient<DefaultClientContext> = settings
        .client_config()
        .create()
        .map_err(|e| unreachable(&settings.brokers, e))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let results = admin
        .create_topics(
            &new,
            &AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT)),
        )
        .await
        .map_err(|e| unreachable(&settings.brokers, e))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(ConnectorError::External(format!(
                    "cannot create Kafka topic '{topic}': {code}"
                )));
            }
        }
    }
    Ok(())
}

/// Checks that the brokers answer; for a command that needs Kafka to fail fast.
pub fn check_brokers(settings: &KafkaSettings) -> Result<(), ConnectorError> {
    let consumer: BaseConsumer = settings
        .client_config()
        .create()
        .map_err(|e| unreachable(&settings.brokers, e))?;
    consumer
        .fetch_metadata(None, METADATA_TIMEOUT)
        .map(|_| ())
        .map_err(|e| unreachable(&settings.brokers, e))
}
