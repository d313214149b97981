//! The enrollment on disk (spec §4): `enrollment.json` with the pinned keys and
//! `tunnel-token` holding the token alone. Also hubkeeper's own small state
//! (`state.json`): the last disable note and a disable that is still pending.
//!
//! Write order makes the pair safe: `tunnel-token` first, `enrollment.json` last, so an
//! `enrollment.json` on disk always has its token beside it. Enroll is idempotent, so
//! a crash between the two is healed by enrolling again.

use crate::secrets::{Secret, SecretsStore, StoreError, exposed};
use hubkeeper_proto::control::{EnrollResponse, RotateKeysResponse};
use serde::{Deserialize, Serialize};
use std::time::SystemTime;

pub const ENROLLMENT: &str = "enrollment.json";
pub const TUNNEL_TOKEN: &str = "tunnel-token";
pub const RUSTIC_PROFILE: &str = "rustic/profile.toml";
pub const STATE: &str = "state.json";

/// `enrollment.json` (pinned keys, plus whom it was made for).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enrollment {
    pub tunnel_id: String,
    pub hostname: String,
    pub r2_endpoint: String,
    pub r2_bucket: String,
    pub r2_access_key_id: String,
    #[serde(with = "exposed")]
    pub r2_secret_access_key: Secret,
    pub enrolled_at: String,
    /// When the R2 keys were last rotated (RFC 3339); absent until the first rotation.
    /// `r2.rotate_every` counts from it, or from `enrolled_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys_rotated_at: Option<String>,
    /// The origin the service was last told about; absent in files from before it was
    /// sent (the daemon then tells the service once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Ingress>,
    /// Absent in files written before hubkeeper recorded it: such an enrollment is taken
    /// to be for the hub the config names.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub made_for: Option<MadeFor>,
}

/// What the tunnel's ingress was set to: `tunnel.origin` and `tunnel.no_tls_verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ingress {
    pub origin: String,
    pub no_tls_verify: bool,
}

/// Whom an enrollment belongs to: a config naming someone else must not use it, and a
/// disable must be sent for this hub, not for whatever the config says now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MadeFor {
    pub hub_id: String,
    pub account_id: String,
    pub control_url: String,
}

/// An enrollment with its tunnel token.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub enrollment: Enrollment,
    pub tunnel_token: Secret,
}

#[derive(Debug, thiserror::Error)]
pub enum EnrollmentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{} is damaged ({reason}); hubkeeper will enroll again", file)]
    Damaged { file: &'static str, reason: String },
}

/// Reads the enrollment, if there is a complete one.
pub fn load(store: &SecretsStore) -> Result<Option<Stored>, EnrollmentError> {
    let Some(json) = store.read(ENROLLMENT)? else {
        return Ok(None);
    };
    let enrollment: Enrollment =
        serde_json::from_slice(&json).map_err(|e| EnrollmentError::Damaged {
            file: ENROLLMENT,
            // Category and position only: the file holds a secret key.
            reason: format!("not valid at line {} column {}", e.line(), e.column()),
        })?;
    let Some(token) = store.read(TUNNEL_TOKEN)? else {
        return Err(EnrollmentError::Damaged {
            file: TUNNEL_TOKEN,
            reason: "missing".into(),
        });
    };
    let token = String::from_utf8(token).map_err(|_| EnrollmentError::Damaged {
        file: TUNNEL_TOKEN,
        reason: "not text".into(),
    })?;
    Ok(Some(Stored {
        enrollment,
        tunnel_token: Secret::from_file_contents(token),
    }))
}

/// Stores what enroll returned, and for whom.
pub fn save(
    store: &SecretsStore,
    r: &EnrollResponse,
    made_for: MadeFor,
    ingress: Ingress,
    now: SystemTime,
) -> Result<Stored, StoreError> {
    let stored = Stored {
        enrollment: Enrollment {
            tunnel_id: r.tunnel_id.clone(),
            hostname: r.hostname.clone(),
            r2_endpoint: r.r2_endpoint.clone(),
            r2_bucket: r.r2_bucket.clone(),
            r2_access_key_id: r.r2_access_key_id.clone(),
            r2_secret_access_key: r.r2_secret_access_key.clone(),
            enrolled_at: crate::status::rfc3339(now),
            keys_rotated_at: None,
            ingress: Some(ingress),
            made_for: Some(made_for),
        },
        tunnel_token: r.tunnel_token.clone(),
    };
    store.write_if_changed(TUNNEL_TOKEN, stored.tunnel_token.expose().as_bytes())?;
    write_enrollment(store, &stored.enrollment)?;
    Ok(stored)
}

/// Stores what a repeated enroll (a changed origin) returned: the same hub, so its
/// enrollment and rotation times stay.
pub fn refresh(
    store: &SecretsStore,
    stored: &Stored,
    r: &EnrollResponse,
    ingress: Ingress,
) -> Result<Stored, StoreError> {
    let mut next = stored.clone();
    let e = &mut next.enrollment;
    e.tunnel_id = r.tunnel_id.clone();
    e.hostname = r.hostname.clone();
    e.r2_endpoint = r.r2_endpoint.clone();
    e.r2_bucket = r.r2_bucket.clone();
    e.r2_access_key_id = r.r2_access_key_id.clone();
    e.r2_secret_access_key = r.r2_secret_access_key.clone();
    e.ingress = Some(ingress);
    next.tunnel_token = r.tunnel_token.clone();
    store.write_if_changed(TUNNEL_TOKEN, next.tunnel_token.expose().as_bytes())?;
    write_enrollment(store, &next.enrollment)?;
    Ok(next)
}

/// Replaces the R2 keys after a rotation (one atomic rewrite).
pub fn update_keys(
    store: &SecretsStore,
    stored: &Stored,
    keys: &RotateKeysResponse,
    now: SystemTime,
) -> Result<Stored, StoreError> {
    let mut next = stored.clone();
    next.enrollment.r2_access_key_id = keys.r2_access_key_id.clone();
    next.enrollment.r2_secret_access_key = keys.r2_secret_access_key.clone();
    next.enrollment.keys_rotated_at = Some(crate::status::rfc3339(now));
    write_enrollment(store, &next.enrollment)?;
    Ok(next)
}

fn write_enrollment(store: &SecretsStore, e: &Enrollment) -> Result<(), StoreError> {
    store.write_json_if_changed(ENROLLMENT, e).map(|_| ())
}

/// Deletes what came from Cloudflare. `rustic/password` stays: without it the
/// retained backups cannot be restored.
pub fn remove_cloudflare_secrets(store: &SecretsStore) -> Result<(), StoreError> {
    // enrollment.json first: without it, nothing counts as enrolled any more.
    store.remove(ENROLLMENT)?;
    store.remove(TUNNEL_TOKEN)?;
    store.remove(RUSTIC_PROFILE)
}

/// A disable that the control service has not confirmed yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingDisable {
    pub hub_id: String,
    pub delete_bucket: bool,
    pub retention_days: u32,
    pub since: String,
}

/// `state.json`: what must survive a restart besides the secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub note: Option<String>,
    pub disable_pending: Option<PendingDisable>,
    /// The hub a key rotation was started for and not yet stored: written before the
    /// control service is asked, so a rotation cut short (a crash, a full disk) is done
    /// again at the next start instead of leaving revoked keys on disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_pending: Option<String>,
}

pub fn load_state(store: &SecretsStore) -> State {
    match store.read(STATE) {
        Ok(Some(b)) => serde_json::from_slice(&b).unwrap_or_else(|e| {
            tracing::warn!("{STATE} is damaged ({e}); starting from an empty state");
            State::default()
        }),
        Ok(None) => State::default(),
        Err(e) => {
            tracing::warn!("{e}; starting from an empty state");
            State::default()
        }
    }
}

pub fn save_state(store: &SecretsStore, state: &State) -> Result<(), StoreError> {
    store.write_json_if_changed(STATE, state).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response() -> EnrollResponse {
        EnrollResponse {
            tunnel_id: "t-1".into(),
            tunnel_token: Secret::new("TOKEN"),
            hostname: "acme-1.example.com".into(),
            r2_endpoint: "http://127.0.0.1:9000".into(),
            r2_bucket: "b".into(),
            r2_access_key_id: "AK".into(),
            r2_secret_access_key: Secret::new("SK"),
        }
    }

    fn ingress() -> Ingress {
        Ingress {
            origin: "http://127.0.0.1:8080/".into(),
            no_tls_verify: false,
        }
    }

    fn made_for() -> MadeFor {
        MadeFor {
            hub_id: "hub-1".into(),
            account_id: "acct-1".into(),
            control_url: "http://127.0.0.1:1/".into(),
        }
    }

    #[test]
    fn save_load_rotate_remove() {
        let t = tempfile::tempdir().unwrap();
        let store = SecretsStore::open(&t.path().join("s")).unwrap();
        assert!(load(&store).unwrap().is_none());
        let saved = save(
            &store,
            &response(),
            made_for(),
            ingress(),
            SystemTime::UNIX_EPOCH,
        )
        .unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&store.read(ENROLLMENT).unwrap().unwrap()).unwrap();
        let mut keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "account_id",
                "control_url",
                "enrolled_at",
                "hostname",
                "hub_id",
                "ingress",
                "r2_access_key_id",
                "r2_bucket",
                "r2_endpoint",
                "r2_secret_access_key",
                "tunnel_id"
            ]
        );
        assert_eq!(json["enrolled_at"], "1970-01-01T00:00:00Z");
        assert_eq!(store.read(TUNNEL_TOKEN).unwrap().unwrap(), b"TOKEN");
        assert_eq!(load(&store).unwrap().unwrap(), saved);

        let rotated = update_keys(
            &store,
            &saved,
            &RotateKeysResponse {
                r2_access_key_id: "AK2".into(),
                r2_secret_access_key: Secret::new("SK2"),
            },
            SystemTime::UNIX_EPOCH,
        )
        .unwrap();
        assert_eq!(load(&store).unwrap().unwrap(), rotated);
        assert_eq!(rotated.enrollment.r2_access_key_id, "AK2");
        assert_eq!(
            rotated.enrollment.keys_rotated_at.as_deref(),
            Some("1970-01-01T00:00:00Z")
        );

        store.write("rustic/password", b"pw").unwrap();
        remove_cloudflare_secrets(&store).unwrap();
        assert!(load(&store).unwrap().is_none());
        assert!(store.read(TUNNEL_TOKEN).unwrap().is_none());
        assert_eq!(store.read("rustic/password").unwrap().unwrap(), b"pw");
    }

    #[test]
    fn enrollment_without_token_is_damaged() {
        let t = tempfile::tempdir().unwrap();
        let store = SecretsStore::open(&t.path().join("s")).unwrap();
        save(
            &store,
            &response(),
            made_for(),
            ingress(),
            SystemTime::now(),
        )
        .unwrap();
        store.remove(TUNNEL_TOKEN).unwrap();
        assert!(matches!(load(&store), Err(EnrollmentError::Damaged { .. })));
    }

    #[test]
    fn an_enrollment_from_before_made_for_still_loads() {
        let t = tempfile::tempdir().unwrap();
        let store = SecretsStore::open(&t.path().join("s")).unwrap();
        store
            .write(
                ENROLLMENT,
                br#"{"tunnel_id":"t","hostname":"h","r2_endpoint":"e","r2_bucket":"b","r2_access_key_id":"a","r2_secret_access_key":"s","enrolled_at":"1970-01-01T00:00:00Z"}"#,
            )
            .unwrap();
        store.write(TUNNEL_TOKEN, b"tok").unwrap();
        assert_eq!(load(&store).unwrap().unwrap().enrollment.made_for, None);
    }

    #[test]
    fn state_round_trips() {
        let t = tempfile::tempdir().unwrap();
        let store = SecretsStore::open(&t.path().join("s")).unwrap();
        assert_eq!(load_state(&store), State::default());
        let s = State {
            note: Some("disabled x".into()),
            disable_pending: Some(PendingDisable {
                hub_id: "h".into(),
                delete_bucket: false,
                retention_days: 30,
                since: "now".into(),
            }),
            rotation_pending: Some("h".into()),
        };
        save_state(&store, &s).unwrap();
        assert_eq!(load_state(&store), s);
    }
}
