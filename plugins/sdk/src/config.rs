//! Per-tenant configuration: the string key/values a binding carries in the registry.

use std::str::FromStr;

/// Per-tenant configuration of one batch.
#[derive(Debug, Clone, Default)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    pub(crate) fn new(entries: Vec<(String, String)>) -> Self {
        Self { entries }
    }

    /// A configuration from key/value pairs, for a plugin's own unit tests.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self::new(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    /// The value of `key`, if set. When a key is repeated, the last value wins.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key` parsed as `T`, `default` when unset, or an error that
    /// names the key and the value it could not parse.
    pub fn parse_or<T: FromStr>(&self, key: &str, default: T) -> Result<T, String> {
        match self.get(key) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|_| format!("config key `{key}`: cannot parse `{raw}`")),
        }
    }
}
