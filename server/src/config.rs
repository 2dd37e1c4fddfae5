//! [`ServerConfig`]: where to listen, who may call, and the limits; from flags and the
//! environment (`VIGIL_BIND`, `VIGIL_TOKEN`, `VIGIL_MAX_QUERIES`, `VIGIL_MAX_BODY_BYTES`,
//! `VIGIL_DATA_DIR`, `VIGIL_ALLOW_KAFKA_PROPERTIES`, `VIGIL_TRANSIENT_GRACE_SECONDS`,
//! `VIGIL_TRANSIENT_RETENTION_SECONDS`).

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::ServerError;
use crate::queries::TransientLifetime;

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
    /// librdkafka properties that touch the host (see [`HOST_KAFKA_PROPERTIES`]) which
    /// statements sent over HTTP may set nonetheless.
    pub allowed_kafka_properties: Vec<String>,
    /// How long a SELECT lives with nobody watching it, and stays listed once ended.
    pub transient: TransientLifetime,
}

/// librdkafka properties that load code, run commands, read files or make requests of
/// their own: refused over HTTP unless allowed. A name ending in `*` covers a family.
pub const HOST_KAFKA_PROPERTIES: &[&str] = &[
    "plugin.library.paths",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.keystore.location",
    "ssl.crl.location",
    "ssl.engine.*",
    "ssl.providers",
    "ssl.ca.certificate.stores",
    "sasl.kerberos.kinit.cmd",
    "sasl.kerberos.keytab",
    "sasl.oauthbearer.*",
    "https.*",
];

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            max_body_bytes: 1 << 20,
            max_queries: 64,
            data_dir: PathBuf::from("data"),
            client_buffer: 1024,
            allowed_kafka_properties: Vec::new(),
            transient: TransientLifetime {
                grace: Duration::from_secs(10),
                retention: Duration::from_secs(300),
            },
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
        if let Some(seconds) = env("VIGIL_TRANSIENT_GRACE_SECONDS") {
            config.transient.grace = seconds_of("VIGIL_TRANSIENT_GRACE_SECONDS", &seconds)?;
        }
        if let Some(seconds) = env("VIGIL_TRANSIENT_RETENTION_SECONDS") {
            config.transient.retention = seconds_of("VIGIL_TRANSIENT_RETENTION_SECONDS", &seconds)?;
        }
        if let Some(names) = env("VIGIL_ALLOW_KAFKA_PROPERTIES") {
            config.allowed_kafka_properties =
                names.split(',').map(|n| n.trim().to_string()).collect();
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

    /// Whether a statement sent over HTTP may set librdkafka property `name`.
    pub fn allows_kafka_property(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        let touches_host = HOST_KAFKA_PROPERTIES
            .iter()
            .any(|p| match p.strip_suffix('*') {
                Some(family) => name.starts_with(family),
                None => name == *p,
            })
            || name.ends_with(".location");
        !touches_host || self.allowed_kafka_properties.contains(&name)
    }

    /// Whether `path` (as a file connector would open it) lies inside the data directory.
    /// Paths climbing with `..` are refused outright; symbolic links are followed as the
    /// file system would follow them when the file is created, and a dangling one refused.
    pub fn allows_path(&self, path: &str) -> bool {
        let path = Path::new(path);
        if path.components().any(|c| c == Component::ParentDir) {
            return false;
        }
        match (resolve(path), resolve(&self.data_dir)) {
            (Some(path), Some(dir)) => path.starts_with(dir),
            _ => false,
        }
    }
}

/// Where `path` really leads: its nearest existing ancestor with every symbolic link
/// resolved, then the components that do not exist yet. `None` when it cannot be told,
/// or when the nearest existing entry is a dangling link (creating the file would follow it).
fn resolve(path: &Path) -> Option<PathBuf> {
    let path = std::path::absolute(path).ok()?;
    let mut existing = path.as_path();
    let mut missing = Vec::new();
    // `symlink_metadata` sees a dangling link as existing, where `exists` would not.
    while existing.symlink_metadata().is_err() {
        missing.push(existing.file_name()?);
        existing = existing.parent()?;
    }
    let mut resolved = existing.canonicalize().ok()?;
    resolved.extend(missing.iter().rev());
    Some(resolved)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn parse<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ServerError> {
    value
        .parse()
        .map_err(|_| ServerError::Config(format!("{name}: cannot use '{value}'")))
}

fn seconds_of(name: &str, value: &str) -> Result<Duration, ServerError> {
    Duration::try_from_secs_f64(parse(name, value)?)
        .map_err(|_| ServerError::Config(format!("{name}: cannot use '{value}' seconds")))
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

    /// A link inside the data directory may not lead a new file out of it, whether it
    /// points at a directory, at a file, or nowhere yet.
    #[test]
    fn symbolic_links_cannot_lead_outside_the_data_directory() {
        let root = std::env::temp_dir().join(format!("vigil-paths-{}", std::process::id()));
        let (data, outside) = (root.join("data"), root.join("outside"));
        std::fs::create_dir_all(&data).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, data.join("linked_dir")).unwrap();
        std::os::unix::fs::symlink(outside.join("target.jsonl"), data.join("dangling")).unwrap();
        std::fs::write(outside.join("real.jsonl"), "").unwrap();
        std::os::unix::fs::symlink(outside.join("real.jsonl"), data.join("file_link")).unwrap();
        let config = ServerConfig {
            data_dir: data.clone(),
            ..ServerConfig::default()
        };
        let within = |p: &str| config.allows_path(data.join(p).to_str().unwrap());
        assert!(within("new.jsonl"));
        assert!(within("new_dir/deeper/new.jsonl"));
        assert!(!within("linked_dir/new.jsonl"));
        assert!(!within("linked_dir/a/b.jsonl"));
        assert!(!within("dangling"));
        assert!(!within("file_link"));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn kafka_properties_that_touch_the_host_need_leave() {
        let config = ServerConfig::default();
        for name in [
            "plugin.library.paths",
            "ssl.key.location",
            "SSL.CA.LOCATION",
            "sasl.kerberos.kinit.cmd",
            "sasl.oauthbearer.token.endpoint.url",
            "ssl.engine.location",
        ] {
            assert!(!config.allows_kafka_property(name), "{name}");
        }
        assert!(config.allows_kafka_property("fetch.min.bytes"));
        assert!(config.allows_kafka_property("security.protocol"));
        let allowing = ServerConfig {
            allowed_kafka_properties: vec!["ssl.ca.location".into()],
            ..ServerConfig::default()
        };
        assert!(allowing.allows_kafka_property("ssl.ca.location"));
        assert!(!allowing.allows_kafka_property("plugin.library.paths"));
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
