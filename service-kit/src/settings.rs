//! Layered settings: embedded defaults, then an optional file, then environment variables, then
//! command-line flags; the last layer that sets a key wins (the `config` crate does the merging).
//! Errors are one line naming the source and the key.

use std::path::Path;

use config::{Config, Environment, File, FileFormat};
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(String);

/// A settings type: its embedded defaults and how the environment names its keys.
pub trait Layered: DeserializeOwned {
    /// YAML with every key set: the embedded default.
    const DEFAULTS: &'static str;
    /// Environment variables `PREFIX_KEY`, nested keys joined with `__` (`SVC_RELAY__TIMEOUT`).
    const ENV_PREFIX: &'static str;
    /// Keys whose environment value is a comma-separated list (`SVC_RELAY__ALLOW_HOSTS=a,b`).
    const LIST_KEYS: &'static [&'static str] = &[];

    /// Loads the settings from the defaults and `sources`; an error names where the bad value
    /// came from.
    fn load(sources: Sources<'_>) -> Result<Self, SettingsError> {
        load(Layers { defaults: Self::DEFAULTS, env_prefix: Self::ENV_PREFIX, list_keys: Self::LIST_KEYS, sources })
    }
}

/// The layers above the embedded defaults, lowest first.
#[derive(Debug, Default)]
pub struct Sources<'a> {
    pub file: Option<&'a Path>,
    /// The environment to read (the process's in `main`; tests pass their own).
    pub env: Vec<(String, String)>,
    /// Flags given on the command line, as (key, value).
    pub overrides: Vec<(&'static str, String)>,
}

impl<'a> Sources<'a> {
    /// An optional file, this process's environment, and flags.
    pub fn process(file: Option<&'a Path>, overrides: Vec<(&'static str, String)>) -> Self {
        Self { file, env: std::env::vars().collect(), overrides }
    }
}

struct Layers<'a> {
    defaults: &'static str,
    env_prefix: &'static str,
    list_keys: &'static [&'static str],
    sources: Sources<'a>,
}

fn load<T: DeserializeOwned>(layers: Layers<'_>) -> Result<T, SettingsError> {
    let Layers { defaults, env_prefix, list_keys, sources: Sources { file, env, overrides } } = layers;
    let source = match file {
        Some(path) => path.display().to_string(),
        None => "settings".to_owned(),
    };
    let mut builder = Config::builder().add_source(File::from_str(defaults, FileFormat::Yaml));
    if let Some(path) = file {
        if !path.is_file() {
            return Err(SettingsError(format!("{}: no such settings file", path.display())));
        }
        builder = builder.add_source(File::from(path).format(FileFormat::Yaml));
    }
    // Only variables that name a setting: others that happen to share the prefix (Kubernetes
    // injects GATEWAY_PORT=tcp://... for a Service named gateway) are not settings at all.
    let known: Vec<String> = Config::builder()
        .add_source(File::from_str(defaults, FileFormat::Yaml))
        .build()
        .and_then(|defaults| defaults.try_deserialize::<std::collections::HashMap<String, config::Value>>())
        .map(|map| map.into_keys().collect())
        .map_err(|e| SettingsError(format!("embedded defaults: {e}")))?;
    let prefix = format!("{}_", env_prefix);
    let names_a_setting = |name: &str| {
        name.strip_prefix(&prefix).is_some_and(|rest| known.contains(&rest.split("__").next().unwrap_or_default().to_ascii_lowercase()))
    };
    let env = Environment::with_prefix(env_prefix)
        .prefix_separator("_")
        .separator("__")
        .source(Some(env.into_iter().filter(|(name, _)| names_a_setting(name)).collect()));
    let env = match list_keys {
        [] => env,
        keys => keys.iter().fold(env.try_parsing(true).list_separator(","), |env, key| env.with_list_parse_key(key)),
    };
    builder = builder.add_source(env);
    for (key, value) in overrides {
        builder = builder.set_override(key, value).map_err(|e| SettingsError(format!("--{key}: {e}")))?;
    }
    let built = builder.build().map_err(|e| SettingsError(format!("{source}: {e}")))?;
    built.try_deserialize().map_err(|e| SettingsError(format!("{source} (with {}_* environment and flags): {e}", env_prefix)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A settings type of the shape the binaries use: a top-level key and a nested table.
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Example {
        listen: String,
        relay: Relay,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Relay {
        attempts: u16,
    }

    impl Layered for Example {
        const DEFAULTS: &'static str = "listen: 0.0.0.0:8090\nrelay:\n  attempts: 1\n";
        const ENV_PREFIX: &'static str = "SVC";
    }

    fn load_with(env: &[(&str, &str)]) -> Result<Example, SettingsError> {
        Example::load(Sources { env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(), ..Sources::default() })
    }

    #[test]
    fn variables_that_name_no_setting_are_not_settings() {
        // What Kubernetes injects for a Service named "svc", next to a real setting.
        let settings =
            load_with(&[("SVC_PORT", "tcp://10.0.0.1:80"), ("SVC_SERVICE_HOST", "10.0.0.1"), ("SVC_LISTEN", "127.0.0.1:1")]).unwrap();
        assert_eq!(settings.listen, "127.0.0.1:1");
        assert_eq!(settings.relay.attempts, 1, "the embedded default stays");
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let error = load_with(&[("SVC_RELAY__ATTEMPTS", "soon")]).unwrap_err().to_string();
        assert!(error.contains("relay.attempts"), "{error}");
        let error = load_with(&[("SVC_RELAY__TYPO", "1")]).unwrap_err().to_string();
        assert!(error.contains("typo"), "{error}");
    }
}
