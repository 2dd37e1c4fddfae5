//! Options of Kafka sources and sinks, read from `WITH (...)` and checked at CREATE time.

use std::time::Duration;

use datafusion::arrow::datatypes::{Schema, TimeUnit};
use vigil_engine::sql::{OptionReader, Options};

use crate::ConnectorError;

/// Where a source starts reading a partition it has not read before in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// The oldest message kept.
    Earliest,
    /// Only messages produced after the query starts.
    Latest,
    /// The consumer group's committed offset; the oldest message where there is none.
    Committed,
}

/// What event time does when every partition of a source is idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleAdvance {
    /// After `idle_timeout` without any data, the watermark follows the wall clock from the
    /// last event time seen, so the last windows close and their alerts fire.
    WallClock,
    /// The watermark waits for data.
    None,
}

/// The `WITH (...)` of a Kafka source.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Topics read; partitions of all of them are the source's splits.
    pub topics: Vec<String>,
    /// Prefix of the consumer group: the group is `<group_id>.<query>.<source>`. Without
    /// one, the source joins no group: it assigns its partitions itself and commits nothing.
    pub group_id: Option<String>,
    /// The partitions to read, without a group (`partitions = '0,2'`); `None`: all.
    pub partitions: Option<Vec<i32>>,
    /// Where reading starts.
    pub start: StartFrom,
    /// Read up to the end offsets that exist at start, then end.
    pub bounded: bool,
    /// A partition without data for this long stops holding the watermark back.
    pub idle_timeout: Duration,
    /// What the watermark does when every partition is idle.
    pub idle_advance: IdleAdvance,
    /// Where malformed messages go.
    pub dead_letter_topic: Option<String>,
    /// The unit of epoch numbers in timestamp fields (`timestamp_unit`).
    pub timestamp_unit: TimeUnit,
    /// librdkafka properties passed through (`properties.<name>`).
    pub properties: Vec<(String, String)>,
}

/// Default for `idle_timeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// librdkafka settings for throughput that Vigil's consumers start from (`properties.*`
/// overrides them): larger fetches, and a bounded prefetch queue, so memory stays small.
pub const CONSUMER_DEFAULTS: [(&str, &str); 4] = [
    // Up to 4 MiB per partition and fetch, instead of 1 MiB.
    ("max.partition.fetch.bytes", "4194304"),
    // Fetches wait for 64 KiB or 100 ms, whichever first: fewer, fuller round trips, and
    // at most 100 ms of added latency on a quiet topic.
    ("fetch.min.bytes", "65536"),
    ("fetch.wait.max.ms", "100"),
    // Prefetch at most 16 MiB per consumer (librdkafka's default is 64 MiB).
    ("queued.max.messages.kbytes", "16384"),
];

/// librdkafka properties Vigil sets itself: overriding them would break delivery guarantees.
const RESERVED_PROPERTIES: [&str; 5] = [
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
];

impl SourceConfig {
    /// Reads and checks the options of a source with `schema`.
    pub fn from_options(options: &Options, schema: &Schema) -> Result<Self, ConnectorError> {
        let mut r = options.reader();
        let topics = topic_list(&mut r)?;
        check_json(&mut r)?;
        let group_id = r.take("group_id").filter(|g| !g.trim().is_empty());
        let partitions = partition_list(&mut r, group_id.is_some())?;
        let start = match r.take("start").as_deref().map(str::to_ascii_lowercase) {
            None if group_id.is_some() => StartFrom::Committed,
            None => StartFrom::Earliest,
            Some(s) if s == "committed" && group_id.is_none() => {
                return Err(ConnectorError::config(
                    "start",
                    "'committed' reads from a consumer group's offsets: set group_id, or \
                     start from 'earliest' or 'latest'",
                ));
            }
            Some(s) => match s.as_str() {
                "earliest" => StartFrom::Earliest,
                "latest" => StartFrom::Latest,
                "committed" => StartFrom::Committed,
                _ => {
                    return Err(ConnectorError::config(
                        "start",
                        format!("'{s}' is not one of earliest, latest, committed"),
                    ));
                }
            },
        };
        let bounded = match r.take("bounded").as_deref().map(str::to_ascii_lowercase) {
            None => false,
            Some(b) if b == "latest" => true,
            Some(b) if b == "none" => false,
            Some(other) => {
                return Err(ConnectorError::config(
                    "bounded",
                    format!("'{other}' is not supported; use 'latest' (or 'none')"),
                ));
            }
        };
        let idle_timeout = r
            .take_duration("idle_timeout")?
            .unwrap_or(DEFAULT_IDLE_TIMEOUT);
        if idle_timeout.is_zero() {
            return Err(ConnectorError::config(
                "idle_timeout",
                "must be more than zero",
            ));
        }
        let idle_advance = match r
            .take("idle_advance")
            .as_deref()
            .map(str::to_ascii_lowercase)
        {
            None => IdleAdvance::WallClock,
            Some(a) if a == "wall_clock" => IdleAdvance::WallClock,
            Some(a) if a == "none" => IdleAdvance::None,
            Some(other) => {
                return Err(ConnectorError::config(
                    "idle_advance",
                    format!("'{other}' is not one of wall_clock, none"),
                ));
            }
        };
        let dead_letter_topic = r.take("dead_letter_topic");
        let timestamp_unit = crate::format::timestamp_unit(r.take("timestamp_unit"))?;
        let properties = properties(&mut r)?;
        r.finish()?;
        super::batcher::check_metadata_columns(schema)?;
        Ok(Self {
            topics,
            group_id,
            partitions,
            start,
            bounded,
            idle_timeout,
            idle_advance,
            dead_letter_topic,
            timestamp_unit,
            properties,
        })
    }
}

/// The `WITH (...)` of a Kafka sink.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// The topic written.
    pub topic: String,
    /// Columns making the message key; empty for no key.
    pub key: Vec<String>,
    /// librdkafka properties passed through (`properties.<name>`).
    pub properties: Vec<(String, String)>,
    /// `delivery = 'exactly_once'`: one transaction per checkpoint.
    pub exactly_once: bool,
    /// Where an exactly-once sink records its committed epochs (default
    /// `vigil.<query>.epochs`).
    pub epochs_topic: Option<String>,
}

impl SinkConfig {
    /// Reads and checks the options of a sink receiving rows of `schema`.
    pub fn from_options(options: &Options, schema: &Schema) -> Result<Self, ConnectorError> {
        let mut r = options.reader();
        let topic = r.require("topic")?.trim().to_string();
        check_json(&mut r)?;
        let key: Vec<String> = r
            .take("key")
            .map(|k| {
                k.split(',')
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        // A sink declared without its query has no columns yet; they are checked when the
        // query arrives.
        let declared_only = schema.fields().is_empty();
        for column in &key {
            if !declared_only && schema.field_with_name(column).is_err() {
                let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(ConnectorError::config(
                    "key",
                    format!(
                        "the query has no column '{column}' (columns: {})",
                        names.join(", ")
                    ),
                ));
            }
        }
        let exactly_once = match r.take("delivery").as_deref().map(str::to_ascii_lowercase) {
            None => false,
            Some(d) if d == "at_least_once" => false,
            Some(d) if d == "exactly_once" => true,
            Some(other) => {
                return Err(ConnectorError::config(
                    "delivery",
                    format!("'{other}': use 'at_least_once' or 'exactly_once'"),
                ));
            }
        };
        let epochs_topic = r.take("epochs_topic").map(|t| t.trim().to_string());
        if epochs_topic.is_some() && !exactly_once {
            return Err(ConnectorError::config(
                "epochs_topic",
                "only an exactly-once sink records epochs: add delivery = 'exactly_once'",
            ));
        }
        let properties = properties(&mut r)?;
        r.finish()?;
        Ok(Self {
            topic,
            key,
            properties,
            exactly_once,
            epochs_topic,
        })
    }
}

/// `partitions = '0,2'`: which partitions a source without a group reads.
fn partition_list(
    r: &mut OptionReader,
    has_group: bool,
) -> Result<Option<Vec<i32>>, ConnectorError> {
    let Some(list) = r.take("partitions") else {
        return Ok(None);
    };
    if has_group {
        return Err(ConnectorError::config(
            "partitions",
            "a consumer group assigns partitions itself: remove group_id to choose them",
        ));
    }
    let partitions = list
        .split(',')
        .map(|p| p.trim().parse::<i32>().ok().filter(|p| *p >= 0))
        .collect::<Option<Vec<i32>>>()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            ConnectorError::config(
                "partitions",
                format!("'{list}' is not a list of partition numbers, e.g. '0,2'"),
            )
        })?;
    Ok(Some(partitions))
}

fn topic_list(r: &mut OptionReader) -> Result<Vec<String>, ConnectorError> {
    let topics: Vec<String> = r
        .require("topic")?
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    if topics.is_empty() {
        return Err(ConnectorError::config("topic", "names no topic"));
    }
    if topics.len() > usize::from(u16::MAX) {
        return Err(ConnectorError::config("topic", "too many topics"));
    }
    Ok(topics)
}

fn check_json(r: &mut OptionReader) -> Result<(), ConnectorError> {
    match r.take("format").as_deref() {
        None | Some("json") => Ok(()),
        Some(other) => Err(ConnectorError::config(
            "format",
            format!("'{other}' is not supported; use 'json'"),
        )),
    }
}

fn properties(r: &mut OptionReader) -> Result<Vec<(String, String)>, ConnectorError> {
    let properties = r.take_prefixed("properties.");
    for (name, _) in &properties {
        if RESERVED_PROPERTIES.contains(&name.as_str()) {
            return Err(ConnectorError::config(
                &format!("properties.{name}"),
                "is set by Vigil (brokers come from VIGIL_KAFKA_BROKERS or --brokers; the group from group_id)",
            ));
        }
    }
    Ok(properties)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field};

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("_offset", DataType::Int64, true),
        ])
    }

    #[test]
    fn source_options_have_defaults_and_pass_properties_through() {
        let options = Options::new([
            ("connector", "kafka"),
            ("topic", "a, b"),
            ("properties.fetch.min.bytes", "1000"),
        ]);
        let config = SourceConfig::from_options(&options, &schema()).unwrap();
        assert_eq!(config.topics, vec!["a", "b"]);
        // Without a group: every partition, from the earliest offset.
        assert_eq!(config.group_id, None);
        assert_eq!(config.partitions, None);
        assert_eq!(config.start, StartFrom::Earliest);
        assert!(!config.bounded);
        assert_eq!(config.idle_timeout, DEFAULT_IDLE_TIMEOUT);
        assert_eq!(config.idle_advance, IdleAdvance::WallClock);
        assert_eq!(
            config.properties,
            vec![("fetch.min.bytes".to_string(), "1000".to_string())]
        );
    }

    #[test]
    fn bad_source_options_name_the_option() {
        let cases = [
            (("start", "yesterday"), "start"),
            (("bounded", "forever"), "bounded"),
            (("idle_timeout", "0s"), "idle_timeout"),
            (("idle_advance", "sometimes"), "idle_advance"),
            (("properties.group.id", "x"), "properties.group.id"),
            (("colour", "red"), "colour"),
            (("partitions", "0,x"), "partitions"),
            (("start", "committed"), "start"),
        ];
        for ((key, value), named) in cases {
            let options = Options::new([("connector", "kafka"), ("topic", "t"), (key, value)]);
            let err = SourceConfig::from_options(&options, &schema()).unwrap_err();
            assert!(
                err.to_string().starts_with(&format!("option '{named}'")),
                "{key}: {err}"
            );
        }
    }

    #[test]
    fn partitions_are_chosen_only_without_a_group() {
        let options = |extra: &[(&'static str, &'static str)]| {
            let mut all = vec![("connector", "kafka"), ("topic", "t")];
            all.extend_from_slice(extra);
            Options::new(all)
        };
        let direct = SourceConfig::from_options(&options(&[("partitions", "0, 2")]), &schema());
        assert_eq!(direct.unwrap().partitions, Some(vec![0, 2]));
        let grouped = SourceConfig::from_options(&options(&[("group_id", "g")]), &schema());
        assert_eq!(grouped.unwrap().start, StartFrom::Committed);
        let both = [("group_id", "g"), ("partitions", "1")];
        let err = SourceConfig::from_options(&options(&both), &schema()).unwrap_err();
        assert!(err.to_string().contains("remove group_id"), "{err}");
    }

    #[test]
    fn sink_key_columns_must_exist() {
        let options = Options::new([("connector", "kafka"), ("topic", "t"), ("key", "id, nope")]);
        let err = SinkConfig::from_options(&options, &schema()).unwrap_err();
        assert!(err.to_string().contains("no column 'nope'"), "{err}");
    }
}
