//! `WITH (key = 'value', ...)` options of sources and sinks.

use std::collections::BTreeMap;
use std::str::FromStr;

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

    /// Fails on any option no one took.
    pub fn finish(self) -> Result<(), ConnectorError> {
        match self.rest.keys().next() {
            None => Ok(()),
            Some(key) => Err(ConnectorError::config(key, "unknown option")),
        }
    }
}
