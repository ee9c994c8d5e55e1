//! Layered settings: embedded defaults, then an optional file, then environment variables, then
//! command-line flags; the last layer that sets a key wins (the `config` crate does the merging).
//! Errors are one line naming the source and the key.

use std::path::Path;

use config::{Config, Environment, File, FileFormat};
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(String);

/// The layers above the embedded defaults.
pub struct Layers<'a> {
    /// YAML with every key set: the embedded default.
    pub defaults: &'static str,
    pub file: Option<&'a Path>,
    /// Environment variables `PREFIX_KEY`, nested keys joined with `__` (`SVC_RELAY__TIMEOUT`).
    pub env_prefix: &'static str,
    /// The environment to read (`std::env::vars()` in `main`; tests pass their own).
    pub env: Vec<(String, String)>,
    /// Keys whose environment value is a comma-separated list (`SVC_RELAY__ALLOW_HOSTS=a,b`).
    pub list_keys: &'static [&'static str],
    /// Flags given on the command line, as (key, value).
    pub overrides: Vec<(&'static str, String)>,
}

/// Loads `T` from the layers; the message of an error names where the bad value came from.
pub fn load<T: DeserializeOwned>(layers: Layers<'_>) -> Result<T, SettingsError> {
    let source = match layers.file {
        Some(path) => path.display().to_string(),
        None => "settings".to_owned(),
    };
    let mut builder = Config::builder().add_source(File::from_str(layers.defaults, FileFormat::Yaml));
    if let Some(path) = layers.file {
        if !path.is_file() {
            return Err(SettingsError(format!("{}: no such settings file", path.display())));
        }
        builder = builder.add_source(File::from(path).format(FileFormat::Yaml));
    }
    // Only variables that name a setting: others that happen to share the prefix (Kubernetes
    // injects GATEWAY_PORT=tcp://... for a Service named gateway) are not settings at all.
    let known: Vec<String> = Config::builder()
        .add_source(File::from_str(layers.defaults, FileFormat::Yaml))
        .build()
        .and_then(|defaults| defaults.try_deserialize::<std::collections::HashMap<String, config::Value>>())
        .map(|map| map.into_keys().collect())
        .map_err(|e| SettingsError(format!("embedded defaults: {e}")))?;
    let prefix = format!("{}_", layers.env_prefix);
    let names_a_setting = |name: &str| {
        name.strip_prefix(&prefix).is_some_and(|rest| known.contains(&rest.split("__").next().unwrap_or_default().to_ascii_lowercase()))
    };
    let env = Environment::with_prefix(layers.env_prefix)
        .prefix_separator("_")
        .separator("__")
        .source(Some(layers.env.into_iter().filter(|(name, _)| names_a_setting(name)).collect()));
    let env = match layers.list_keys {
        [] => env,
        keys => keys.iter().fold(env.try_parsing(true).list_separator(","), |env, key| env.with_list_parse_key(key)),
    };
    builder = builder.add_source(env);
    for (key, value) in layers.overrides {
        builder = builder.set_override(key, value).map_err(|e| SettingsError(format!("--{key}: {e}")))?;
    }
    let built = builder.build().map_err(|e| SettingsError(format!("{source}: {e}")))?;
    built.try_deserialize().map_err(|e| SettingsError(format!("{source} (with {}_* environment and flags): {e}", layers.env_prefix)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{DEFAULT_SETTINGS, LIST_SETTINGS, ServiceSettings};

    fn load_with(env: &[(&str, &str)]) -> Result<ServiceSettings, SettingsError> {
        load(Layers {
            defaults: DEFAULT_SETTINGS,
            file: None,
            env_prefix: "SVC",
            env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            list_keys: LIST_SETTINGS,
            overrides: Vec::new(),
        })
    }

    #[test]
    fn variables_that_name_no_setting_are_not_settings() {
        // What Kubernetes injects for a Service named "svc", next to a real setting.
        let settings =
            load_with(&[("SVC_PORT", "tcp://10.0.0.1:80"), ("SVC_SERVICE_HOST", "10.0.0.1"), ("SVC_LISTEN", "127.0.0.1:1")]).unwrap();
        assert_eq!(settings.listen, "127.0.0.1:1");
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let error = load_with(&[("SVC_RELAY__TIMEOUT", "soon")]).unwrap_err().to_string();
        assert!(error.contains("relay.timeout"), "{error}");
        let error = load_with(&[("SVC_RELAY__TYPO", "1")]).unwrap_err().to_string();
        assert!(error.contains("typo"), "{error}");
    }
}
