//! Where pcfg finds the gateway: flags, then the environment (`PCFG_ADDR`,
//! `PCFG_API_KEY`), then the config file (`--config`, default
//! `$XDG_CONFIG_HOME/pcfg/config.yaml` or `~/.config/pcfg/config.yaml`),
//! then the defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pingora_config_client::{ConnectOptions, TlsOptions};
use serde::Deserialize;

/// The config file: every field optional.
///
/// ```yaml
/// addr: https://gw.internal:9180
/// api_key: 9f8c...
/// timeout: 30s
/// tls: { ca_file: /etc/pcfg/ca.pem, server_name: gw.internal }
/// ```
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub addr: Option<String>,
    pub api_key: Option<String>,
    pub timeout: Option<String>,
    pub connect_timeout: Option<String>,
    pub tls: Option<FileTls>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    pub ca_file: Option<PathBuf>,
    pub server_name: Option<String>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// The connection flags of the command line.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub addr: Option<String>,
    pub api_key: Option<String>,
    pub tls: bool,
    pub ca_cert: Option<PathBuf>,
    pub tls_server_name: Option<String>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub timeout: Option<Duration>,
    pub connect_timeout: Option<Duration>,
}

/// The default config file.
pub fn default_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let base = env("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".config")))?;
    Some(base.join("pcfg").join("config.yaml"))
}

/// Reads a config file with the same YAML parser as the gateway.
pub fn read_file(path: &Path) -> Result<FileSettings, String> {
    let src = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let tree = pingora_config_rules::parse_yaml(&src).map_err(|v| {
        let first = v.first().map(|v| v.to_string()).unwrap_or_default();
        format!("{}:{first}", path.display())
    })?;
    if tree.to_json().is_null() {
        return Ok(FileSettings::default());
    }
    FileSettings::deserialize(&tree).map_err(|e| format!("{}: {e}", path.display()))
}

/// Each setting from the first place that has it: flag, environment, file,
/// default.
pub fn resolve(
    flags: &Flags,
    env: &dyn Fn(&str) -> Option<String>,
    file: &FileSettings,
) -> Result<ConnectOptions, String> {
    let defaults = ConnectOptions::default();
    let env = |k: &str| env(k).filter(|v| !v.is_empty());
    let addr = flags.addr.clone().or_else(|| env("PCFG_ADDR")).or_else(|| file.addr.clone()).unwrap_or(defaults.addr);
    let api_key = flags.api_key.clone().or_else(|| env("PCFG_API_KEY")).or_else(|| file.api_key.clone());
    let duration = |flag: Option<Duration>, file: &Option<String>, default: Duration| -> Result<Duration, String> {
        match (flag, file) {
            (Some(d), _) => Ok(d),
            (None, Some(s)) => parse_duration(s),
            (None, None) => Ok(default),
        }
    };
    let timeout = duration(flags.timeout, &file.timeout, defaults.timeout)?;
    let connect_timeout = duration(flags.connect_timeout, &file.connect_timeout, defaults.connect_timeout)?;
    let ft = file.tls.as_ref();
    let ca_file = flags.ca_cert.clone().or_else(|| ft.and_then(|t| t.ca_file.clone()));
    let server_name = flags.tls_server_name.clone().or_else(|| ft.and_then(|t| t.server_name.clone()));
    let cert = flags.client_cert.clone().or_else(|| ft.and_then(|t| t.client_cert.clone()));
    let key = flags.client_key.clone().or_else(|| ft.and_then(|t| t.client_key.clone()));
    let client_cert = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => return Err("a client certificate needs both --client-cert and --client-key".into()),
    };
    let tls_wanted = flags.tls || ft.is_some() || ca_file.is_some() || server_name.is_some() || client_cert.is_some();
    let tls = tls_wanted.then_some(TlsOptions { ca_file, server_name, client_cert });
    Ok(ConnectOptions { addr, api_key, tls, connect_timeout, timeout })
}

/// `30s`, `1.5s`, `500ms`, `2m`, or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    number
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)
        .map(|n| Duration::from_secs_f64(n * scale))
        .ok_or_else(|| format!("`{s}` is not a duration: write for example 30s, 1.5s or 500ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|(name, _)| *name == k).map(|(_, v)| (*v).to_owned())
    }

    fn file() -> FileSettings {
        FileSettings { addr: Some("file:1".into()), api_key: Some("file-key".into()), ..Default::default() }
    }

    #[test]
    fn a_flag_beats_the_environment_which_beats_the_file() {
        let env = env_of(&[("PCFG_ADDR", "env:1"), ("PCFG_API_KEY", "env-key")]);
        let flags = Flags { addr: Some("flag:1".into()), ..Default::default() };
        let o = resolve(&flags, &env, &file()).expect("resolve");
        assert_eq!((o.addr.as_str(), o.api_key.as_deref()), ("flag:1", Some("env-key")));

        let o = resolve(&Flags::default(), &env_of(&[("PCFG_API_KEY", "env-key")]), &file()).expect("resolve");
        assert_eq!((o.addr.as_str(), o.api_key.as_deref()), ("file:1", Some("env-key")));

        // An empty variable counts as unset.
        let o = resolve(&Flags::default(), &env_of(&[("PCFG_ADDR", "")]), &file()).expect("resolve");
        assert_eq!((o.addr.as_str(), o.api_key.as_deref()), ("file:1", Some("file-key")));
    }

    #[test]
    fn without_any_setting_pcfg_talks_to_the_default_admin_listener_without_tls() {
        let o = resolve(&Flags::default(), &env_of(&[]), &FileSettings::default()).expect("resolve");
        assert_eq!((o.addr.as_str(), o.api_key, o.tls.is_none()), ("127.0.0.1:9180", None, true));
        assert_eq!(o.timeout, Duration::from_secs(30));
    }

    #[test]
    fn tls_settings_come_from_flags_or_the_file_and_turn_tls_on() {
        let file = FileSettings {
            tls: Some(FileTls { ca_file: Some("ca.pem".into()), ..Default::default() }),
            timeout: Some("2.5s".into()),
            ..Default::default()
        };
        let o = resolve(&Flags::default(), &env_of(&[]), &file).expect("resolve");
        assert_eq!(o.tls.and_then(|t| t.ca_file), Some(PathBuf::from("ca.pem")));
        assert_eq!(o.timeout, Duration::from_millis(2500));
        let half = Flags { client_cert: Some("c.pem".into()), ..Default::default() };
        assert!(resolve(&half, &env_of(&[]), &FileSettings::default()).is_err());
    }

    #[test]
    fn the_config_file_is_yaml_and_unknown_keys_are_errors() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "addr: gw:9180\napi_key: k\ntls: { server_name: gw }\n").expect("write");
        let f = read_file(&path).expect("read");
        assert_eq!(f.addr.as_deref(), Some("gw:9180"));
        assert_eq!(f.tls.and_then(|t| t.server_name), Some("gw".into()));
        std::fs::write(&path, "adr: gw:9180\n").expect("write");
        assert!(read_file(&path).is_err_and(|e| e.contains("adr")));
    }

    #[test]
    fn the_default_file_follows_xdg_config_home_then_home() {
        let p = default_path(&env_of(&[("XDG_CONFIG_HOME", "/x"), ("HOME", "/h")]));
        assert_eq!(p, Some(PathBuf::from("/x/pcfg/config.yaml")));
        let p = default_path(&env_of(&[("HOME", "/h")]));
        assert_eq!(p, Some(PathBuf::from("/h/.config/pcfg/config.yaml")));
    }

    #[test]
    fn durations_are_written_like_the_config_files() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("soon").is_err());
    }
}
