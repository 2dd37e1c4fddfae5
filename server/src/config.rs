//! [`ServerConfig`]: where to listen, who may call, and the limits; from flags and the
//! environment (`VIGIL_BIND`, `VIGIL_TOKEN`, `VIGIL_MAX_QUERIES`, `VIGIL_MAX_BODY_BYTES`,
//! `VIGIL_DATA_DIR`).

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};

use crate::ServerError;

/// Settings of `vigil serve`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// Bearer token every route but the health checks requires; mandatory off loopback.
    pub token: Option<String>,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Most queries running at once.
    pub max_queries: usize,
    /// The only directory file sources and sinks may touch.
    pub data_dir: PathBuf,
    /// Rows a results client may fall behind before it is sent a gap marker.
    pub client_buffer: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            max_body_bytes: 1 << 20,
            max_queries: 64,
            data_dir: PathBuf::from("data"),
            client_buffer: 1024,
        }
    }
}

impl ServerConfig {
    /// The defaults overridden by the environment.
    pub fn from_env() -> Result<Self, ServerError> {
        let mut config = Self::default();
        if let Some(bind) = env("VIGIL_BIND") {
            config.bind = parse("VIGIL_BIND", &bind)?;
        }
        config.token = env("VIGIL_TOKEN");
        if let Some(n) = env("VIGIL_MAX_BODY_BYTES") {
            config.max_body_bytes = parse("VIGIL_MAX_BODY_BYTES", &n)?;
        }
        if let Some(n) = env("VIGIL_MAX_QUERIES") {
            config.max_queries = parse("VIGIL_MAX_QUERIES", &n)?;
        }
        if let Some(dir) = env("VIGIL_DATA_DIR") {
            config.data_dir = PathBuf::from(dir);
        }
        Ok(config)
    }

    /// Refuses settings that would expose the server: no token off loopback.
    pub fn check(&self) -> Result<(), ServerError> {
        if !self.bind.ip().is_loopback() && self.token.is_none() {
            return Err(ServerError::Config(format!(
                "binding to {} (not loopback) needs a token: set VIGIL_TOKEN",
                self.bind
            )));
        }
        if self.token.as_deref() == Some("") {
            return Err(ServerError::Config("VIGIL_TOKEN is empty".into()));
        }
        Ok(())
    }

    /// Whether `path` (as a file connector would open it) lies inside the data directory.
    /// Paths climbing with `..` are refused outright.
    pub fn allows_path(&self, path: &str) -> bool {
        let path = Path::new(path);
        if path.components().any(|c| c == Component::ParentDir) {
            return false;
        }
        match (absolute(path), absolute(&self.data_dir)) {
            (Some(path), Some(dir)) => path.starts_with(dir),
            _ => false,
        }
    }
}

fn absolute(path: &Path) -> Option<PathBuf> {
    let path = std::path::absolute(path).ok()?;
    // Resolve symbolic links where the path exists, so a link cannot lead outside.
    Some(path.canonicalize().unwrap_or(path))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn parse<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ServerError> {
    value
        .parse()
        .map_err(|_| ServerError::Config(format!("{name}: cannot use '{value}'")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_outside_the_data_directory_are_refused() {
        let config = ServerConfig {
            data_dir: PathBuf::from("/srv/vigil/data"),
            ..ServerConfig::default()
        };
        assert!(config.allows_path("/srv/vigil/data/sensors.jsonl"));
        assert!(!config.allows_path("/etc/passwd"));
        assert!(!config.allows_path("/srv/vigil/data/../secrets"));
        assert!(!config.allows_path("/srv/vigil/database"));
    }

    #[test]
    fn a_public_address_needs_a_token() {
        let open = ServerConfig {
            bind: SocketAddr::from(([0, 0, 0, 0], 8080)),
            ..ServerConfig::default()
        };
        assert!(open.check().is_err());
        let guarded = ServerConfig {
            token: Some("s3cret".into()),
            ..open
        };
        assert!(guarded.check().is_ok());
        assert!(ServerConfig::default().check().is_ok());
    }
}
