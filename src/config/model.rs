//! The typed configuration (spec §3): serde structs with defaults; unknown keys are refused.
//!
//! Cross-field rules ("mode = managed needs [managed]") live in `validate.rs`, and
//! secret files are read in `load.rs`; this module only says what each key is.

use hubkeeper_base::config::{HttpUrl, HumanDuration, LogLevel, NonEmpty};
use hubkeeper_proto::HubId;
use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::path::PathBuf;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/hubkeeper/hubkeeper.toml";

/// The file's settings. Whether and how the daemon runs (the toggle, the mode, the hub
/// id and the mode sections) is readable only through the [`Plan`](super::Plan) they
/// make, so no code outside `config` decides "which mode is active" on its own.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The admin's toggle (pinned).
    #[serde(default)]
    pub(super) enabled: bool,
    pub(super) mode: Option<Mode>,
    pub(super) hub_id: Option<HubId>,
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    #[serde(default = "default_socket_mode")]
    pub socket_mode: FileMode,
    pub socket_group: Option<String>,
    #[serde(default = "default_secrets_dir")]
    pub secrets_dir: PathBuf,
    /// `error`, `warn`, `info`, `debug` or `trace`; `RUST_LOG` overrides it.
    #[serde(default)]
    pub log_level: LogLevel,
    pub(super) managed: Option<Managed>,
    pub(super) self_managed: Option<SelfManaged>,
    #[serde(default)]
    pub tunnel: Tunnel,
    #[serde(default)]
    pub r2: R2,
    #[serde(default)]
    pub backup: Backup,
    #[serde(default)]
    pub health: Health,
    #[serde(default)]
    pub disable: Disable,
    #[serde(default)]
    pub api: Api,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Mode {
    #[serde(rename = "managed")]
    Managed,
    #[serde(rename = "self-managed")]
    SelfManaged,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Managed => "managed",
            Mode::SelfManaged => "self-managed",
        }
    }
}

/// A Unix permission mode written in octal as a string, e.g. `"0660"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMode(pub u32);

impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let digits = s.strip_prefix("0o").unwrap_or(&s);
        match u32::from_str_radix(digits, 8) {
            Ok(m) if m <= 0o777 && !digits.is_empty() => Ok(FileMode(m)),
            _ => Err(serde::de::Error::custom(format!(
                "invalid mode \"{s}\": expected an octal permission string like \"0660\""
            ))),
        }
    }
}

/// `[managed]`: the control service that holds the Cloudflare key (spec §8).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Managed {
    pub url: HttpUrl,
    /// Shared secret; without it, the systemd credential `control-token` is used.
    pub token_file: Option<PathBuf>,
    pub account_id: NonEmpty,
    pub license_id: NonEmpty,
    pub requested_subdomain: Option<String>,
    /// How long one request to the control service may take (connect included).
    #[serde(default = "default_control_timeout")]
    pub request_timeout: HumanDuration,
}

fn default_control_timeout() -> HumanDuration {
    HumanDuration::secs(30)
}

/// `[self_managed]`: the admin's own Cloudflare account.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfManaged {
    #[serde(default = "default_api_base")]
    pub api_base: HttpUrl,
    pub account_id: NonEmpty,
    /// Without it, the systemd credential `cloudflare-token` is used.
    pub api_token_file: Option<PathBuf>,
    pub zone: NonEmpty,
    pub hostname: NonEmpty,
    pub tunnel_name: Option<String>,
    pub r2: Option<SelfManagedR2>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfManagedR2 {
    pub bucket: NonEmpty,
    pub access_key_id_file: PathBuf,
    pub secret_access_key_file: PathBuf,
    pub endpoint: Option<HttpUrl>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tunnel {
    pub cloudflared: PathBuf,
    pub origin: HttpUrl,
    pub no_tls_verify: bool,
    pub metrics: SocketAddr,
    pub grace_period: HumanDuration,
    pub ready_timeout: HumanDuration,
    pub restart_after_failed_probes: u32,
    pub backoff_initial: HumanDuration,
    pub backoff_max: HumanDuration,
}

impl Default for Tunnel {
    fn default() -> Self {
        Self {
            cloudflared: "/usr/bin/cloudflared".into(),
            origin: HttpUrl::from_static("http://127.0.0.1:8080"),
            no_tls_verify: false,
            metrics: SocketAddr::from(([127, 0, 0, 1], 20241)),
            grace_period: HumanDuration::secs(30),
            ready_timeout: HumanDuration::secs(60),
            restart_after_failed_probes: 3,
            backoff_initial: HumanDuration::secs(1),
            backoff_max: HumanDuration::secs(300),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct R2 {
    pub force_path_style: bool,
    /// Rotate the R2 keys this long after they were made (off when absent).
    pub rotate_every: Option<HumanDuration>,
}

impl Default for R2 {
    fn default() -> Self {
        Self {
            force_path_style: true,
            rotate_every: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Backup {
    pub enabled: bool,
    pub rustic: PathBuf,
    pub paths: Vec<PathBuf>,
    pub interval: HumanDuration,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
    /// A run (backup and retention) still going after this is killed and counts as
    /// failed: rustic has no request timeout of its own.
    pub timeout: HumanDuration,
    /// CPU niceness of rustic (0-19): backups yield to the hub.
    pub nice: u8,
    /// Give rustic the idle I/O class, so it only uses the disk when nobody else does.
    pub io_idle: bool,
    /// How often `rustic check` reads a part of the stored data back; `"off"` disables.
    pub verify_interval: VerifyInterval,
    /// How much pack data each verify reads: `"n%"`, `"n/m"` or a size (`"500MiB"`).
    pub verify_subset: VerifySubset,
}

/// `backup.verify_interval`: a duration, or `"off"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyInterval {
    Off,
    Every(HumanDuration),
}

impl VerifyInterval {
    pub fn get(self) -> Option<std::time::Duration> {
        match self {
            VerifyInterval::Off => None,
            VerifyInterval::Every(d) => Some(d.get()),
        }
    }
}

impl<'de> Deserialize<'de> for VerifyInterval {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let t = text.trim();
        if t.eq_ignore_ascii_case("off") {
            return Ok(VerifyInterval::Off);
        }
        let every = hubkeeper_base::config::duration::parse(t).map_err(serde::de::Error::custom)?;
        if every.is_zero() {
            return Err(serde::de::Error::custom(
                "a zero interval is no schedule: write \"off\" to turn verification off, or e.g. \"7d\"",
            ));
        }
        Ok(VerifyInterval::Every(HumanDuration(every)))
    }
}

/// `backup.verify_subset`, in the forms `rustic check --read-data-subset` takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum VerifySubset {
    /// A random share of the packs, in percent (more than 0, at most 100).
    Percent(f64),
    /// Part `n` of `m` (1 ≤ n ≤ m): reading parts 1..m in turn covers everything.
    Part { n: u32, m: u32 },
    /// A random subset of about this many bytes.
    Bytes(u64),
}

impl VerifySubset {
    /// The value for `--read-data-subset`.
    pub fn arg(&self) -> String {
        match self {
            VerifySubset::Percent(p) => format!("{p}%"),
            VerifySubset::Part { n, m } => format!("{n}/{m}"),
            VerifySubset::Bytes(b) => b.to_string(),
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        const FORMS: &str =
            "use a share like \"5%\", a part like \"1/12\", or a size like \"500MiB\"";
        let t = text.trim();
        if let Some(p) = t.strip_suffix('%') {
            return match p.trim().parse::<f64>() {
                Ok(x) if x > 0.0 && x <= 100.0 => Ok(VerifySubset::Percent(x)),
                Ok(_) => Err(format!(
                    "\"{t}\" is not a share of the data: use more than 0% and at most 100%"
                )),
                Err(_) => Err(format!("\"{t}\" is not a number of percent: {FORMS}")),
            };
        }
        if let Some((n, m)) = t.split_once('/') {
            return match (n.trim().parse::<u32>(), m.trim().parse::<u32>()) {
                (Ok(n), Ok(m)) if n >= 1 && n <= m => Ok(VerifySubset::Part { n, m }),
                (Ok(_), Ok(_)) => Err(format!(
                    "\"{t}\" is no part: in \"n/m\", n is 1 to m (\"1/12\" is the first of 12 parts)"
                )),
                _ => Err(format!("\"{t}\" is not a part like \"1/12\": {FORMS}")),
            };
        }
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let unit = unit.trim();
        let scale: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            "t" | "tb" => 1_000_000_000_000,
            "tib" => 1 << 40,
            _ => {
                return Err(format!(
                    "\"{t}\" has an unknown size unit \"{unit}\": {FORMS}"
                ));
            }
        };
        match num.parse::<f64>() {
            Ok(x) if x.is_finite() && x * scale as f64 >= 1.0 && x * (scale as f64) < 1e18 => {
                Ok(VerifySubset::Bytes((x * scale as f64) as u64))
            }
            Ok(_) => Err(format!("\"{t}\" is no size to read: use at least 1 byte")),
            Err(_) => Err(format!("\"{t}\" is not a subset rustic can read: {FORMS}")),
        }
    }
}

impl std::fmt::Display for VerifySubset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.arg())
    }
}

impl<'de> Deserialize<'de> for VerifySubset {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        VerifySubset::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Default for Backup {
    fn default() -> Self {
        Self {
            enabled: true,
            rustic: "/usr/bin/rustic".into(),
            paths: vec!["/var/lib/hub".into()],
            interval: HumanDuration::secs(24 * 3600),
            keep_daily: 7,
            keep_weekly: 4,
            keep_monthly: 6,
            timeout: HumanDuration::secs(12 * 3600),
            nice: 10,
            io_idle: true,
            verify_interval: VerifyInterval::Every(HumanDuration::secs(7 * 24 * 3600)),
            verify_subset: VerifySubset::Percent(5.0),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Health {
    pub interval: HumanDuration,
    pub dns_resolver: DnsResolver,
    pub public_url: PublicUrl,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            interval: HumanDuration::secs(60),
            dns_resolver: DnsResolver::System,
            public_url: PublicUrl::default(),
        }
    }
}

/// `health.public_url`: where the public-path check sends its request, with
/// `<hostname>` standing for the enrolled hostname (known only after enrollment, so
/// the template is kept and expanded then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl(String);

/// The placeholder that stands for the enrolled hostname.
pub const HOSTNAME_PLACEHOLDER: &str = "<hostname>";

impl Default for PublicUrl {
    fn default() -> Self {
        PublicUrl(format!("https://{HOSTNAME_PLACEHOLDER}/"))
    }
}

impl PublicUrl {
    /// Checks a template; the error says what to write instead.
    pub fn parse(s: &str) -> Result<PublicUrl, String> {
        let url = Self::expand_str(s, "hub.example.com")?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "invalid public_url \"{s}\": the scheme must be https (or http), like \"https://<hostname>/\""
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!(
                "invalid public_url \"{s}\": it names no host; use \"https://<hostname>/\""
            ));
        }
        // The URL is shown in status details and logs: it must not carry credentials.
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "invalid public_url: it must not contain a user name or password (it is shown in the status)"
                    .into(),
            );
        }
        Ok(PublicUrl(s.to_owned()))
    }

    /// The URL to request for the hub enrolled as `hostname`.
    pub fn expand(&self, hostname: &str) -> Result<url::Url, String> {
        Self::expand_str(&self.0, hostname)
    }

    fn expand_str(template: &str, hostname: &str) -> Result<url::Url, String> {
        let text = template.replace(HOSTNAME_PLACEHOLDER, hostname);
        if text.contains(['<', '>']) {
            return Err(format!(
                "invalid public_url \"{template}\": the only placeholder is {HOSTNAME_PLACEHOLDER}"
            ));
        }
        url::Url::parse(&text).map_err(|e| {
            format!(
                "invalid public_url \"{template}\": {e}; expected a URL like \"https://<hostname>/\""
            )
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for PublicUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PublicUrl::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsResolver {
    System,
    At(SocketAddr),
}

impl<'de> Deserialize<'de> for DnsResolver {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "system" {
            return Ok(DnsResolver::System);
        }
        s.parse().map(DnsResolver::At).map_err(|_| {
            serde::de::Error::custom(format!(
                "invalid dns_resolver \"{s}\": expected \"system\" or an IP:PORT like \"127.0.0.1:53\""
            ))
        })
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Disable {
    pub delete_bucket: bool,
    pub retention_days: u32,
}

impl Default for Disable {
    fn default() -> Self {
        Self {
            delete_bucket: false,
            retention_days: 30,
        }
    }
}

/// `[api]`: limits of the local status socket.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Api {
    /// Connections served at once; more wait in the listen backlog. One uid may hold
    /// at most three quarters of them.
    pub max_connections: u32,
    /// A client must send a whole request (headers and body) within this time; an
    /// idle keep-alive connection, or one whose client stops reading an answer, is
    /// closed after it too.
    pub request_timeout: HumanDuration,
}

impl Default for Api {
    fn default() -> Self {
        Self {
            max_connections: 128,
            request_timeout: HumanDuration::secs(10),
        }
    }
}

fn default_socket() -> PathBuf {
    Config::default_socket()
}

impl Config {
    pub fn default_socket() -> PathBuf {
        "/run/hubkeeper/hubkeeper.sock".into()
    }
}

fn default_socket_mode() -> FileMode {
    FileMode(0o660)
}

fn default_secrets_dir() -> PathBuf {
    "/var/lib/hubkeeper/secrets".into()
}

fn default_api_base() -> HttpUrl {
    HttpUrl::from_static("https://api.cloudflare.com/client/v4")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_url_is_checked_and_expanded() {
        let d = PublicUrl::default();
        assert_eq!(d.as_str(), "https://<hostname>/");
        assert_eq!(
            d.expand("acme-1.example.com").unwrap().as_str(),
            "https://acme-1.example.com/"
        );
        let u = PublicUrl::parse("http://127.0.0.1:8/health").unwrap();
        assert_eq!(u.expand("x").unwrap().as_str(), "http://127.0.0.1:8/health");
        for (bad, says) in [
            ("ftp://<hostname>/", "scheme"),
            ("https://user:pw@<hostname>/", "password"),
            ("https://<host>/", "placeholder"),
            ("not a url", "expected a URL"),
        ] {
            let e = PublicUrl::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}

#[cfg(test)]
mod backup_verify_tests {
    use super::*;

    fn backup(text: &str) -> Result<Backup, String> {
        toml::from_str::<Config>(&format!("[backup]\n{text}"))
            .map(|c| c.backup)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn verify_defaults_to_weekly_five_percent() {
        let b = backup("").unwrap();
        assert_eq!(
            b.verify_interval.get(),
            Some(std::time::Duration::from_secs(7 * 86400))
        );
        assert_eq!(b.verify_subset.arg(), "5%");
    }

    #[test]
    fn verify_interval_is_a_duration_or_off() {
        assert_eq!(
            backup("verify_interval = \"off\"").unwrap().verify_interval,
            VerifyInterval::Off
        );
        assert_eq!(
            backup("verify_interval = \"1d\"")
                .unwrap()
                .verify_interval
                .get(),
            Some(std::time::Duration::from_secs(86400))
        );
        assert!(
            backup("verify_interval = \"0s\"")
                .unwrap_err()
                .contains("\"off\"")
        );
        assert!(
            backup("verify_interval = \"400d\"")
                .unwrap_err()
                .contains("366d")
        );
    }

    #[test]
    fn verify_subset_takes_rustics_forms_and_refuses_the_rest() {
        for (text, arg) in [
            ("5%", "5%"),
            ("2.5 %", "2.5%"),
            ("100%", "100%"),
            ("1/12", "1/12"),
            ("3/3", "3/3"),
            ("500MiB", "524288000"),
            ("1 GB", "1000000000"),
            ("4096", "4096"),
        ] {
            assert_eq!(VerifySubset::parse(text).unwrap().arg(), arg, "{text}");
        }
        for (text, says) in [
            ("0%", "more than 0%"),
            ("101%", "at most 100%"),
            ("x%", "percent"),
            ("0/3", "n is 1 to m"),
            ("4/3", "n is 1 to m"),
            ("1.5/3", "a part like"),
            ("5 parsecs", "unknown size unit"),
            ("0MiB", "at least 1 byte"),
            ("", "is not a subset"),
        ] {
            let e = VerifySubset::parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
        assert!(
            backup("verify_subset = \"all of it\"")
                .unwrap_err()
                .contains("500MiB")
        );
    }
}
