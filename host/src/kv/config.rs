//! Where the key-value stores are: ion-host's flags, and Spin's runtime-config format
//! (`spin up --runtime-config-file`), of which ion-host reads the `[key_value_store.<label>]`
//! tables:
//!
//! ```toml
//! [key_value_store.default]
//! type = "redis"
//! url = "redis://10.0.0.3:6379"
//!
//! [key_value_store.cache]
//! type = "spin"          # the embedded store
//! path = "cache.redb"    # relative to this file's directory; no path: in memory
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Deserialize;

use crate::logging;

/// The default store's file in the state directory.
pub const DEFAULT_FILE: &str = "ion_key_value.redb";

#[derive(Args, Debug, Clone)]
pub struct KvOptions {
    /// Spin runtime configuration file (TOML), the format `spin up --runtime-config-file` reads:
    /// `[key_value_store.<label>]` with `type = "redis"` and `url`, or `type = "spin"` (the
    /// embedded store) with an optional `path` (relative to this file; none: in memory). Other
    /// tables are ignored.
    #[arg(long, env = "ION_RUNTIME_CONFIG_FILE", value_name = "PATH")]
    pub runtime_config_file: Option<PathBuf>,

    /// The runtime configuration as TOML text rather than a file, e.g.
    /// `key_value_store.default = { type = "redis", url = "redis://10.0.0.3:6379" }`. Relative
    /// paths in it are resolved against the working directory.
    #[arg(
        long,
        env = "ION_RUNTIME_CONFIG",
        value_name = "TOML",
        hide_env_values = true
    )]
    pub runtime_config: Option<String>,

    /// Directory of the default key-value store's file (ion_key_value.redb), created if missing;
    /// used when the runtime config does not configure the store "default". Default: `.spin`
    /// beside the manifest, as `spin up`.
    #[arg(long, env = "ION_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Deadline for one call to a Redis store (and for connecting to it); past it (or on a store
    /// error) the component gets an error at once.
    #[arg(
        long,
        env = "ION_KV_TIMEOUT_MS",
        default_value_t = 500,
        value_name = "MS"
    )]
    pub kv_timeout_ms: u64,

    /// Deadline for the embedded store's disk: one call (a write can wait behind a commit), and
    /// an answer's wait for the writes it follows to reach the disk (then 503
    /// store_unavailable). Longer than a network round trip: a busy disk's `fsync` can take a
    /// second, and only a disk that stops answering should fail requests.
    #[arg(
        long,
        env = "ION_KV_DISK_TIMEOUT_MS",
        default_value_t = 5_000,
        value_name = "MS"
    )]
    pub kv_disk_timeout_ms: u64,
}

/// One store's backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// The embedded store: a redb file, or memory when `path` is `None` (as Spin's `type =
    /// "spin"` without a path).
    Embedded {
        path: Option<PathBuf>,
    },
    Redis {
        url: String,
    },
}

impl StoreConfig {
    /// For the startup log: never the Redis URL itself, which may hold a password.
    pub fn describe(&self) -> String {
        match self {
            StoreConfig::Embedded { path: Some(path) } => {
                format!("embedded, file {}", path.display())
            }
            StoreConfig::Embedded { path: None } => {
                "embedded, in memory (gone when ion-host stops)".to_owned()
            }
            StoreConfig::Redis { url } => format!("redis at {}", super::redis::address(url)),
        }
    }
}

/// The `[key_value_store.*]` tables of a runtime config.
#[derive(Debug, Default, PartialEq)]
pub struct RuntimeConfig {
    pub stores: BTreeMap<String, StoreConfig>,
    /// Top-level tables ion-host does not use (`sqlite_database`, `llm_compute`, ...).
    pub ignored: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpinFields {
    path: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedisFields {
    url: String,
}

impl RuntimeConfig {
    /// Parses runtime-config TOML; relative paths are resolved against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<RuntimeConfig> {
        let mut table: toml::Table = toml::from_str(text)?;
        let mut config = RuntimeConfig::default();
        if let Some(stores) = table.remove("key_value_store") {
            let toml::Value::Table(stores) = stores else {
                bail!("key_value_store must be a table of stores ([key_value_store.<label>])");
            };
            for (label, store) in stores {
                let store = parse_store(store, base)
                    .with_context(|| format!("[key_value_store.{label}]"))?;
                config.stores.insert(label, store);
            }
        }
        config.ignored = table.keys().cloned().collect();
        Ok(config)
    }
}

fn parse_store(value: toml::Value, base: &Path) -> Result<StoreConfig> {
    let toml::Value::Table(mut fields) = value else {
        bail!("must be a table with `type`");
    };
    let kind = match fields.remove("type") {
        Some(toml::Value::String(kind)) => kind,
        Some(_) => bail!("`type` must be a string"),
        None => bail!("`type` is missing: \"spin\" (embedded) or \"redis\""),
    };
    let fields = toml::Value::Table(fields);
    match kind.as_str() {
        "spin" => {
            let SpinFields { path } = fields.try_into()?;
            Ok(StoreConfig::Embedded {
                path: path.map(|p| base.join(p)),
            })
        }
        "redis" => {
            let RedisFields { url } = fields.try_into()?;
            super::redis::check_url(&url)?;
            Ok(StoreConfig::Redis { url })
        }
        other => bail!(
            "type {other:?} is not supported by ion-host: use \"spin\" (the embedded store) or \
             \"redis\""
        ),
    }
}

/// Where the runtime config came from, for error hints.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    None,
    File(PathBuf),
    Inline,
}

/// Everything the stores are opened from.
#[derive(Debug)]
pub struct StoreSetup {
    config: RuntimeConfig,
    source: Source,
    /// `<state dir>/ion_key_value.redb`: the store "default" unless the config says otherwise.
    pub default_path: PathBuf,
    /// Per call to a Redis store.
    pub timeout: Duration,
    /// Per call to an embedded store, and per wait for its writes to reach the disk.
    pub disk_timeout: Duration,
}

impl StoreSetup {
    /// Reads the flags, the runtime config (file or inline) and logs what it ignores.
    /// `manifest` locates the default state directory (`.spin` beside it).
    pub fn from_options(options: &KvOptions, manifest: &Path) -> Result<StoreSetup> {
        if options.kv_timeout_ms == 0 {
            bail!("--kv-timeout-ms (ION_KV_TIMEOUT_MS) must be at least 1");
        }
        if options.kv_disk_timeout_ms == 0 {
            bail!("--kv-disk-timeout-ms (ION_KV_DISK_TIMEOUT_MS) must be at least 1");
        }
        let (config, source) = match (&options.runtime_config_file, &options.runtime_config) {
            (Some(_), Some(_)) => bail!(
                "both --runtime-config-file (ION_RUNTIME_CONFIG_FILE) and --runtime-config \
                 (ION_RUNTIME_CONFIG) are set: use one"
            ),
            (Some(path), None) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!(
                        "cannot read runtime config {} (--runtime-config-file)",
                        path.display()
                    )
                })?;
                let base = path.parent().unwrap_or(Path::new(""));
                let config = RuntimeConfig::parse(&text, base).with_context(|| {
                    format!(
                        "invalid runtime config {} (--runtime-config-file)",
                        path.display()
                    )
                })?;
                (config, Source::File(path.clone()))
            }
            (None, Some(text)) => {
                let config = RuntimeConfig::parse(text, Path::new(""))
                    .context("invalid runtime config in ION_RUNTIME_CONFIG (--runtime-config)")?;
                (config, Source::Inline)
            }
            (None, None) => (RuntimeConfig::default(), Source::None),
        };
        for table in &config.ignored {
            logging::info(&format!(
                "runtime config: [{table}] is not used by ion-host; ignored"
            ));
        }
        let state_dir = match &options.state_dir {
            Some(dir) => dir.clone(),
            None => manifest.parent().unwrap_or(Path::new("")).join(".spin"),
        };
        Ok(StoreSetup {
            config,
            source,
            default_path: state_dir.join(DEFAULT_FILE),
            timeout: Duration::from_millis(options.kv_timeout_ms),
            disk_timeout: Duration::from_millis(options.kv_disk_timeout_ms),
        })
    }

    /// The backend of `label`: the runtime config's; for "default" without one, the embedded
    /// file in the state directory; for any other label, none.
    pub fn store_for(&self, label: &str) -> Option<StoreConfig> {
        match self.config.stores.get(label) {
            Some(config) => Some(config.clone()),
            None if label == "default" => Some(StoreConfig::Embedded {
                path: Some(self.default_path.clone()),
            }),
            None => None,
        }
    }

    /// Says which setting chose the file of `label`, for errors opening it.
    pub fn hint_for(&self, label: &str) -> String {
        match (&self.source, self.config.stores.contains_key(label)) {
            (Source::File(path), true) => format!(
                "the path is set by [key_value_store.{label}] in {} (--runtime-config-file)",
                path.display()
            ),
            (Source::Inline, true) => format!(
                "the path is set by key_value_store.{label} in ION_RUNTIME_CONFIG \
                 (--runtime-config)"
            ),
            _ => "set --state-dir (ION_STATE_DIR) to a writable directory that no other process \
                  uses"
                .to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> KvOptions {
        KvOptions {
            runtime_config_file: None,
            runtime_config: None,
            state_dir: None,
            kv_timeout_ms: 500,
            kv_disk_timeout_ms: 5_000,
        }
    }

    #[test]
    fn parses_spin_and_redis_tables() {
        let config = RuntimeConfig::parse(
            r#"
[key_value_store.default]
type = "redis"
url = "redis://10.0.0.3:6379"

[key_value_store.files]
type = "spin"
path = "data/kv.redb"

[key_value_store.scratch]
type = "spin"

[sqlite_database.default]
type = "libsql"

[llm_compute]
type = "remote_http"
"#,
            Path::new("/etc/ion"),
        )
        .unwrap();
        assert_eq!(
            config.stores["default"],
            StoreConfig::Redis {
                url: "redis://10.0.0.3:6379".into()
            }
        );
        assert_eq!(
            config.stores["files"],
            StoreConfig::Embedded {
                path: Some("/etc/ion/data/kv.redb".into())
            }
        );
        assert_eq!(
            config.stores["scratch"],
            StoreConfig::Embedded { path: None }
        );
        assert_eq!(config.ignored, ["llm_compute", "sqlite_database"]);
    }

    #[test]
    fn parses_the_one_line_inline_form() {
        let config = RuntimeConfig::parse(
            r#"key_value_store.default = { type = "redis", url = "redis://10.0.0.3:6379" }"#,
            Path::new(""),
        )
        .unwrap();
        assert!(matches!(
            config.stores["default"],
            StoreConfig::Redis { .. }
        ));
        let config = RuntimeConfig::parse(
            r#"key_value_store.default = { type = "spin", path = "/tmp/x.redb" }"#,
            Path::new(""),
        )
        .unwrap();
        assert_eq!(
            config.stores["default"],
            StoreConfig::Embedded {
                path: Some("/tmp/x.redb".into())
            }
        );
    }

    #[test]
    fn rejects_unknown_types_fields_and_urls() {
        let cases = [
            (
                r#"key_value_store.default = { type = "azure_cosmos" }"#,
                "not supported",
            ),
            (
                r#"key_value_store.default = { url = "redis://x" }"#,
                "`type` is missing",
            ),
            (
                r#"key_value_store.default = { type = 3 }"#,
                "must be a string",
            ),
            (
                r#"key_value_store.default = { type = "redis", url = "redis://x", db = 2 }"#,
                "unknown field",
            ),
            (
                r#"key_value_store.default = { type = "redis" }"#,
                "missing field `url`",
            ),
            (
                r#"key_value_store.default = { type = "spin", path = "a", url = "b" }"#,
                "unknown field",
            ),
            (
                r#"key_value_store.default = { type = "redis", url = "http://x" }"#,
                "redis URL",
            ),
            (
                r#"key_value_store.default = { type = "redis", url = "rediss://x:6380" }"#,
                "TLS",
            ),
            (r#"key_value_store = 3"#, "table of stores"),
            (r#"key_value_store.default = "redis""#, "must be a table"),
            ("key_value_store.default = {", "expected"),
        ];
        for (text, expected) in cases {
            let err = format!(
                "{:#}",
                RuntimeConfig::parse(text, Path::new("")).unwrap_err()
            );
            assert!(err.contains(expected), "{expected:?} not in {err:?}");
        }
    }

    #[test]
    fn default_store_lives_in_the_state_directory() {
        let setup = StoreSetup::from_options(&options(), Path::new("/srv/app/spin.toml")).unwrap();
        assert_eq!(
            setup.store_for("default"),
            Some(StoreConfig::Embedded {
                path: Some("/srv/app/.spin/ion_key_value.redb".into())
            })
        );
        assert_eq!(setup.store_for("other"), None);
        let setup = StoreSetup::from_options(&options(), Path::new("spin.toml")).unwrap();
        assert_eq!(setup.default_path, Path::new(".spin/ion_key_value.redb"));
        let mut with_dir = options();
        with_dir.state_dir = Some("/tmp/ion-state".into());
        let setup = StoreSetup::from_options(&with_dir, Path::new("spin.toml")).unwrap();
        assert_eq!(
            setup.default_path,
            Path::new("/tmp/ion-state/ion_key_value.redb")
        );
        assert!(setup.hint_for("default").contains("--state-dir"));
    }

    #[test]
    fn inline_config_overrides_default_and_conflicts_with_a_file() {
        let mut inline = options();
        inline.runtime_config =
            Some(r#"key_value_store.default = { type = "redis", url = "redis://h:1" }"#.into());
        let setup = StoreSetup::from_options(&inline, Path::new("spin.toml")).unwrap();
        assert_eq!(
            setup.store_for("default"),
            Some(StoreConfig::Redis {
                url: "redis://h:1".into()
            })
        );
        inline.runtime_config_file = Some("/nonexistent.toml".into());
        let err = StoreSetup::from_options(&inline, Path::new("spin.toml")).unwrap_err();
        assert!(format!("{err:#}").contains("use one"), "{err:#}");
        inline.runtime_config = None;
        let err = StoreSetup::from_options(&inline, Path::new("spin.toml")).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent.toml"), "{err:#}");
        let mut zero = options();
        zero.kv_timeout_ms = 0;
        assert!(StoreSetup::from_options(&zero, Path::new("spin.toml")).is_err());
        let mut zero = options();
        zero.kv_disk_timeout_ms = 0;
        let err = StoreSetup::from_options(&zero, Path::new("spin.toml")).unwrap_err();
        assert!(
            format!("{err:#}").contains("--kv-disk-timeout-ms"),
            "{err:#}"
        );
    }

    #[test]
    fn describe_hides_redis_credentials() {
        let config = StoreConfig::Redis {
            url: "redis://user:secret@10.0.0.3:6379/0".into(),
        };
        let text = config.describe();
        assert!(text.contains("10.0.0.3:6379"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }
}
