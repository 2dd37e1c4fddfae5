//! `WITH (key = 'value', ...)` options of sources and sinks.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use crate::connector::ConnectorError;

/// The options of a `CREATE SOURCE` or `CREATE SINK`, in the order written.
///
/// Connectors take the keys they know with the `take_*` methods and finish with
/// [`Options::finish`], which rejects any key left over, so a misspelt option fails at
/// CREATE time instead of being ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    entries: BTreeMap<String, String>,
}

impl Options {
    /// Options from key/value pairs; keys are matched case-insensitively.
    pub fn new<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        let entries = pairs
            .into_iter()
            .map(|(k, v)| (k.into().to_ascii_lowercase(), v.into()))
            .collect();
        Self { entries }
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// Sets `key`, replacing any value it had.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.entries.insert(key.to_ascii_lowercase(), value.into());
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.entries.remove(key)
    }

    /// All entries, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The connector name (`connector = '...'`).
    pub fn connector(&self) -> Option<&str> {
        self.get("connector")
    }

    /// A reader that takes options one by one and checks nothing is left.
    pub fn reader(&self) -> OptionReader {
        let mut rest = self.entries.clone();
        rest.remove("connector");
        OptionReader { rest }
    }
}

/// Parses `500ms`, `5s`, `5 seconds`, `2m`, `1h`, `7 days`; a bare number is seconds.
pub fn parse_duration(raw: &str) -> Option<Duration> {
    let raw = raw.trim();
    let split = raw
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit.trim().to_ascii_lowercase().as_str() {
        "ms" | "millis" | "millisecond" | "milliseconds" => number / 1000.0,
        "" | "s" | "sec" | "second" | "seconds" => number,
        "m" | "min" | "minute" | "minutes" => number * 60.0,
        "h" | "hour" | "hours" => number * 3600.0,
        "d" | "day" | "days" => number * 86_400.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

/// Takes options out of an [`Options`]; see [`Options::reader`].
#[derive(Debug)]
pub struct OptionReader {
    rest: BTreeMap<String, String>,
}

impl OptionReader {
    /// Removes and returns `key`.
    pub fn take(&mut self, key: &str) -> Option<String> {
        self.rest.remove(key)
    }

    /// Removes and returns `key`, which must be set.
    pub fn require(&mut self, key: &str) -> Result<String, ConnectorError> {
        self.take(key)
            .ok_or_else(|| ConnectorError::config(key, "this option is required"))
    }

    /// Removes `key` and parses it.
    pub fn take_parsed<T: FromStr>(&mut self, key: &str) -> Result<Option<T>, ConnectorError>
    where
        T::Err: std::fmt::Display,
    {
        match self.take(key) {
            None => Ok(None),
            Some(raw) => raw
                .trim()
                .parse()
                .map(Some)
                .map_err(|e| ConnectorError::config(key, format!("cannot parse '{raw}': {e}"))),
        }
    }

    /// Removes every option starting with `prefix`; returns them with the prefix stripped.
    pub fn take_prefixed(&mut self, prefix: &str) -> Vec<(String, String)> {
        let keys: Vec<String> = self
            .rest
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        keys.into_iter()
            .map(|k| {
                let value = self.rest.remove(&k).expect("listed above");
                (k[prefix.len()..].to_string(), value)
            })
            .collect()
    }

    /// Removes `key` and parses it as a duration: a number with a unit (`500ms`, `5s`,
    /// `2m`, `1h`, `5 seconds`); a bare number is seconds.
    pub fn take_duration(&mut self, key: &str) -> Result<Option<Duration>, ConnectorError> {
        match self.take(key) {
            None => Ok(None),
            Some(raw) => parse_duration(&raw).map(Some).ok_or_else(|| {
                ConnectorError::config(
                    key,
                    format!("cannot parse '{raw}' as a duration (examples: '500ms', '5s', '2m')"),
                )
            }),
        }
    }

    /// Fails on any option no one took.
    pub fn finish(self) -> Result<(), ConnectorError> {
        match self.rest.keys().next() {
            None => Ok(()),
            Some(key) => Err(ConnectorError::config(key, "unknown option")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit_or_default_to_seconds() {
        let cases = [
            ("500ms", Some(Duration::from_millis(500))),
            ("5s", Some(Duration::from_secs(5))),
            ("5 seconds", Some(Duration::from_secs(5))),
            ("2m", Some(Duration::from_secs(120))),
            ("1.5", Some(Duration::from_millis(1500))),
            ("1h", Some(Duration::from_secs(3600))),
            ("soon", None),
            ("5 parsecs", None),
        ];
        for (raw, expected) in cases {
            assert_eq!(parse_duration(raw), expected, "{raw}");
        }
    }

    #[test]
    fn prefixed_options_are_taken_with_the_prefix_stripped() {
        let options = Options::new([
            ("connector", "kafka"),
            ("properties.fetch.min.bytes", "1"),
            ("topic", "t"),
        ]);
        let mut r = options.reader();
        assert_eq!(
            r.take_prefixed("properties."),
            vec![("fetch.min.bytes".to_string(), "1".to_string())]
        );
        assert_eq!(r.take("topic").as_deref(), Some("t"));
        r.finish().unwrap();
    }
}
