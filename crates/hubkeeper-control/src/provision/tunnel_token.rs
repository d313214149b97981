//! cloudflared's tunnel token format: standard padded base64 of the JSON
//! `{"a":"<account tag>","t":"<tunnel uuid>","s":"<base64 tunnel secret>"}`
//! (cloudflared `connection.TunnelToken`), so `cloudflared tunnel run --token` accepts
//! what the local provisioner hands out.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hubkeeper_proto::Secret;
use rand::Rng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The decoded token. `secret` is the tunnel secret, still base64 as in the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenParts {
    #[serde(rename = "a")]
    pub account_tag: String,
    #[serde(rename = "t")]
    pub tunnel_id: String,
    #[serde(rename = "s", with = "hubkeeper_proto::exposed")]
    pub secret: Secret,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the tunnel token is not base64")]
    NotBase64,
    #[error("the tunnel token does not hold the JSON cloudflared expects")]
    NotJson,
}

/// A fresh tunnel secret: base64 of 32 random bytes, as cloudflared and the Cloudflare
/// API (`tunnel_secret`, at least 32 bytes) expect.
pub fn new_secret() -> Secret {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::rng().fill_bytes(bytes.as_mut());
    Secret::new(STANDARD.encode(bytes.as_ref()))
}

pub fn encode(parts: &TokenParts) -> Result<Secret, serde_json::Error> {
    let json = Zeroizing::new(serde_json::to_vec(parts)?);
    Ok(Secret::new(STANDARD.encode(json.as_slice())))
}

pub fn decode(token: &str) -> Result<TokenParts, TokenError> {
    let json = Zeroizing::new(
        STANDARD
            .decode(token.trim())
            .map_err(|_| TokenError::NotBase64)?,
    );
    serde_json::from_slice(&json).map_err(|_| TokenError::NotJson)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_in_cloudflareds_shape() {
        let parts = TokenParts {
            account_tag: "acct".into(),
            tunnel_id: "c1744f8b-0000-4000-8000-000000000000".into(),
            secret: new_secret(),
        };
        let token = encode(&parts).unwrap();
        assert_eq!(decode(token.expose()).unwrap(), parts);
        let raw = STANDARD.decode(token.expose()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 3, "{v}");
        assert_eq!(v["a"], "acct");
        let secret = STANDARD.decode(v["s"].as_str().unwrap()).unwrap();
        assert_eq!(secret.len(), 32);
    }

    #[test]
    fn secrets_differ() {
        assert_ne!(new_secret(), new_secret());
    }

    #[test]
    fn garbage_is_refused_without_echo() {
        assert_eq!(decode("%%%"), Err(TokenError::NotBase64));
        assert_eq!(decode(&STANDARD.encode("nope")), Err(TokenError::NotJson));
    }
}
