//! The tunnel's identity, from a token file (managed mode) or from config.yml plus the
//! credentials file it names (self-managed mode), checked the way cloudflared checks
//! them at start.
//!
//! Error messages never quote file content: a token or a TunnelSecret must not reach
//! the log even when it is malformed. serde_json's messages can quote values
//! (`invalid type: string "..."`), so only its line and column are reported.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};
use std::path::Path;
use uuid::Uuid;

/// How starting failed, which decides the exit code as in cloudflared.
pub enum Failure {
    /// cloudflared's `cliutil.UsageError`: printed with a `See ... --help` line, exit 255.
    /// cloudflared classifies an unreadable or invalid token this way.
    Usage(String),
    /// Any other start error: exit 1.
    Runtime(String),
}

pub struct Identity {
    pub tunnel_id: Uuid,
    /// Lines to log as warnings once the tunnel starts.
    pub warnings: Vec<String>,
}

/// `run --token-file`: read once; the trimmed content must be standard base64 of JSON
/// `{"a": account tag, "t": tunnel UUID, "s": base64 secret}`.
pub fn from_token_file(path: &Path) -> Result<Identity, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::Usage(format!(
            "Failed to read token file: open {}: {e}\nSee 'cloudflared tunnel run --help'.",
            path.display()
        ))
    })?;
    let invalid = || {
        Failure::Usage(
            "Provided Tunnel token is not valid.\nSee 'cloudflared tunnel run --help'.".into(),
        )
    };
    let json = STANDARD.decode(text.trim()).map_err(|_| invalid())?;
    let token: Map<String, Value> = serde_json::from_slice(&json).map_err(|_| invalid())?;
    // Stricter than cloudflared, which accepts an empty "a" or "s" here and only fails
    // later, when the edge refuses the registration: a stand-in cannot ask the edge.
    non_empty_str(&token, "a").ok_or_else(invalid)?;
    base64_secret(&token, "s").ok_or_else(invalid)?;
    let tunnel_id = uuid_field(&token, "t").ok_or_else(invalid)?;
    Ok(Identity {
        tunnel_id,
        warnings: Vec::new(),
    })
}

/// `--config`: a light, line-based read of the YAML, not a YAML parser. It understands
/// the top-level `tunnel:` and `credentials-file:` scalars (plain, "double" or 'single'
/// quoted) and the `hostname`/`path`/`service` keys of `ingress:` list items written
/// in block style, which is the shape hubkeeper writes. Flow style, anchors and
/// multi-document files are not understood.
pub fn from_config(path: &Path) -> Result<Identity, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Runtime(format!("open {}: {e}", path.display())))?;
    let config = ConfigYaml::read(&text);
    let mut warnings = Vec::new();

    if config.tunnel.as_deref().unwrap_or("").is_empty() {
        return Err(Failure::Usage(
            "\"cloudflared tunnel run\" requires the ID or name of the tunnel to run as the last \
             command line argument or in the configuration file.\n\
             See 'cloudflared tunnel run --help'."
                .into(),
        ));
    }
    let creds_path = config.credentials_file.unwrap_or_default();
    if creds_path.is_empty() {
        return Err(Failure::Runtime(format!(
            "cloudflared-standin: {} names no credentials-file (real cloudflared would search its \
             default directories for <tunnel id>.json; the stand-in does not)",
            path.display()
        )));
    }
    let creds_path = Path::new(&creds_path);
    if !creds_path.is_file() {
        return Err(Failure::Runtime(format!(
            "Tunnel credentials file '{}' doesn't exist or is not a file",
            creds_path.display()
        )));
    }
    let creds_text = std::fs::read(creds_path).map_err(|e| {
        Failure::Runtime(format!(
            "Couldn't read tunnel credentials from {}: {e}",
            creds_path.display()
        ))
    })?;
    let bad_creds = |why: &str| {
        Failure::Runtime(format!(
            "Couldn't read tunnel credentials from {}: {why}",
            creds_path.display()
        ))
    };
    let creds: Map<String, Value> = serde_json::from_slice(&creds_text).map_err(|e| {
        bad_creds(&format!(
            "invalid JSON at line {} column {}",
            e.line(),
            e.column()
        ))
    })?;
    non_empty_str(&creds, "AccountTag")
        .ok_or_else(|| bad_creds("AccountTag is missing or empty"))?;
    base64_secret(&creds, "TunnelSecret")
        .ok_or_else(|| bad_creds("TunnelSecret is missing, empty or not base64"))?;
    let tunnel_id = uuid_field(&creds, "TunnelID")
        .ok_or_else(|| bad_creds("TunnelID is missing or not a UUID"))?;

    match config.ingress {
        None => warnings.push(
            "No ingress rules were defined in provided config (if any) nor from the cli, \
             cloudflared will return 503 for all incoming HTTP requests"
                .to_owned(),
        ),
        Some(rules) if rules.is_empty() => {
            return Err(Failure::Runtime(
                "The config file doesn't contain any ingress rules".into(),
            ));
        }
        Some(rules) => {
            if rules.iter().any(|r| !r.has_service) {
                return Err(Failure::Runtime(
                    "cloudflared-standin: an ingress rule has no service".into(),
                ));
            }
            if rules.last().is_some_and(|r| r.has_filter) {
                return Err(Failure::Runtime(
                    "The last ingress rule must match all URLs (i.e. it should not have a \
                     hostname or path filter)"
                        .into(),
                ));
            }
        }
    }
    Ok(Identity {
        tunnel_id,
        warnings,
    })
}

fn non_empty_str<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    m.get(key)?.as_str().filter(|s| !s.is_empty())
}

/// Go decodes a `[]byte` JSON field as standard base64.
fn base64_secret(m: &Map<String, Value>, key: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(non_empty_str(m, key)?)
        .ok()
        .filter(|s| !s.is_empty())
}

fn uuid_field(m: &Map<String, Value>, key: &str) -> Option<Uuid> {
    Uuid::parse_str(m.get(key)?.as_str()?).ok()
}

#[derive(Default)]
struct ConfigYaml {
    tunnel: Option<String>,
    credentials_file: Option<String>,
    ingress: Option<Vec<IngressRule>>,
}

#[derive(Default)]
struct IngressRule {
    has_filter: bool,
    has_service: bool,
}

impl ConfigYaml {
    fn read(text: &str) -> ConfigYaml {
        let mut out = ConfigYaml::default();
        let mut in_ingress = false;
        // The column where the current ingress item's keys start (after "- ").
        let mut item_indent = None;
        for raw in text.lines() {
            let content = raw.trim_start();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let indent = raw.len() - content.len();
            if indent == 0 {
                in_ingress = false;
                let Some((key, value)) = content.split_once(':') else {
                    continue;
                };
                match key.trim() {
                    "tunnel" => out.tunnel = Some(scalar(value)),
                    "credentials-file" => out.credentials_file = Some(scalar(value)),
                    "ingress" => {
                        in_ingress = true;
                        item_indent = None;
                        out.ingress = Some(Vec::new());
                    }
                    _ => {}
                }
                continue;
            }
            if !in_ingress {
                continue;
            }
            let rules = out.ingress.get_or_insert_with(Vec::new);
            let (key_indent, entry) = match content.strip_prefix('-') {
                Some(after) => {
                    rules.push(IngressRule::default());
                    let entry = after.trim_start();
                    let indent = indent + (content.len() - entry.len());
                    item_indent = Some(indent);
                    (indent, entry)
                }
                None => (indent, content),
            };
            // Keys nested deeper (e.g. under originRequest) do not filter or route.
            if Some(key_indent) != item_indent {
                continue;
            }
            let (Some(rule), Some((key, _))) = (rules.last_mut(), entry.split_once(':')) else {
                continue;
            };
            match key.trim() {
                "hostname" | "path" => rule.has_filter = true,
                "service" => rule.has_service = true,
                _ => {}
            }
        }
        out
    }
}

/// A YAML scalar: "double quoted" (JSON escapes, which is how hubkeeper quotes),
/// 'single quoted', or plain up to a ` #` comment.
fn scalar(value: &str) -> String {
    let v = value.trim();
    if v.starts_with('"') {
        let end = v.rfind('"').unwrap_or(0);
        if end > 0
            && let Ok(s) = serde_json::from_str::<String>(&v[..=end])
        {
            return s;
        }
        return v.trim_matches('"').to_owned();
    }
    if let Some(inner) = v.strip_prefix('\'') {
        return inner
            .rsplit_once('\'')
            .map_or(inner, |(s, _)| s)
            .replace("''", "'");
    }
    v.split(" #").next().unwrap_or("").trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_yaml_light_read() {
        let c = ConfigYaml::read(
            "tunnel: \"6ff42ae2-765d-4adf-8112-31c55c1551ef\"\n\
             credentials-file: '/s/it''s.json' \n\
             ingress:\n\
             \x20 - hostname: \"hub.example.com\"\n\
             \x20   service: \"https://127.0.0.1:8443\"\n\
             \x20   originRequest:\n\
             \x20     httpHostHeader: x\n\
             \x20 - service: http_status:404 # catch-all\n\
             protocol: quic\n",
        );
        assert_eq!(
            c.tunnel.as_deref(),
            Some("6ff42ae2-765d-4adf-8112-31c55c1551ef")
        );
        assert_eq!(c.credentials_file.as_deref(), Some("/s/it's.json"));
        let rules = c.ingress.unwrap();
        assert_eq!(rules.len(), 2);
        assert!(rules[0].has_filter && rules[0].has_service);
        assert!(!rules[1].has_filter && rules[1].has_service);
    }
}
