//! Account tokens and callers (spec §8): the shape of an account's token, minting one,
//! the hash it is stored and found by, and the `Caller` a request acts as once its
//! bearer is known, with what each caller may see and change. The service asks the
//! caller at the top of each operation; the `account` commands (`admin.rs`) mint.

use crate::store::{HubRow, HubState, NewEnrollment};
use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hubkeeper_proto::Secret;
use rand::TryRng;
use rand::rngs::SysRng;
use zeroize::Zeroizing;

/// Every account token starts with this: a leaked one is recognisable (by secret
/// scanners, in a paste), and a bearer without it is not looked up at all.
pub const TOKEN_PREFIX: &str = "hka_";

/// Hex digits of a token's public id (`hka_` + these): random, so the id says nothing
/// about the secret part.
const ID_HEX: usize = 8;

/// Random bytes in the secret part: 256 bits, beyond guessing.
const SECRET_BYTES: usize = 32;

/// What a caller may not do; the service answers each as its own `ServiceError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// An account's token sent another account's id in an enroll.
    WrongAccount { token: String, sent: String },
    /// An account's token asked to enroll a hub of another account.
    ForeignHub(String),
    /// An account's token asked to change an enrolled hub's license.
    LicenseChange {
        hub_id: String,
        current: String,
        sent: String,
    },
}

/// Who a request acts for, decided once at the edge (`api::routes`) from its bearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The operator's token (`token_file`): may act on any hub.
    Operator,
    /// A live token of `account_id`: may act only on that account's hubs.
    Account {
        account_id: String,
        /// The token's public id (`hka_1a2b3c4d`), for the log.
        token_id: String,
    },
}

/// A freshly minted token: shown once, then only its id and hash are kept.
#[derive(Debug)]
pub struct MintedToken {
    /// `hka_` and 8 hex digits: public, shown by `account list`, used by `revoke --token`.
    pub id: String,
    /// `<id>_<43 characters of base64url>`: what the account's hubs send.
    pub value: Secret,
    pub sha256: [u8; 32],
}

#[derive(Debug, thiserror::Error)]
#[error("the system's random number generator failed: {0}")]
pub struct RandomError(String);

/// Mints a token from the operating system's random source.
pub fn mint() -> Result<MintedToken, RandomError> {
    let mut id = [0u8; ID_HEX / 2];
    let mut secret = Zeroizing::new([0u8; SECRET_BYTES]);
    SysRng
        .try_fill_bytes(&mut id)
        .and_then(|()| SysRng.try_fill_bytes(secret.as_mut()))
        .map_err(|e| RandomError(e.to_string()))?;
    let id: String = std::iter::once(TOKEN_PREFIX.to_owned())
        .chain(id.iter().map(|b| format!("{b:02x}")))
        .collect();
    let value = Secret::new(format!(
        "{id}_{}",
        Zeroizing::new(URL_SAFE_NO_PAD.encode(secret.as_ref())).as_str()
    ));
    let sha256 = sha256(value.expose().as_bytes());
    Ok(MintedToken { id, value, sha256 })
}

/// What a token is stored and found by. SHA-256 and no salt or slow hash: a token is
/// 256 random bits, so there is no dictionary to slow down and a fast, exact lookup is
/// safe; a database read by someone else gives them no token that works.
pub fn sha256(token: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, token).as_ref());
    out
}

/// Whether a bearer has the shape of an account token (worth a lookup).
pub fn is_account_token(presented: &[u8]) -> bool {
    presented.starts_with(TOKEN_PREFIX.as_bytes())
        && presented.len() == TOKEN_PREFIX.len() + ID_HEX + 1 + SECRET_TEXT
}

/// Length of the secret part as text: base64 without padding.
const SECRET_TEXT: usize = (SECRET_BYTES * 4).div_ceil(3);

/// Checks a token id given on the command line (`revoke --token`). A whole token is
/// refused without repeating it: it does not belong in argv or shell history.
pub fn parse_token_id(s: &str) -> Result<String, String> {
    let hex = s.strip_prefix(TOKEN_PREFIX).unwrap_or("");
    if hex.len() == ID_HEX && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Ok(s.to_owned());
    }
    if s.len() > TOKEN_PREFIX.len() + ID_HEX && s.starts_with(TOKEN_PREFIX) {
        return Err(format!(
            "--token takes a token's id ({TOKEN_PREFIX} and {ID_HEX} hex digits, its first {} characters), not the whole token: a token does not belong on a command line",
            TOKEN_PREFIX.len() + ID_HEX
        ));
    }
    Err(format!(
        "invalid token id: a token's id is {TOKEN_PREFIX} and {ID_HEX} hex digits, as `account list` shows it"
    ))
}

impl Caller {
    /// The caller as the log names it: `operator`, or `account:<id>/<token id>`.
    pub fn log_name(&self) -> String {
        match self {
            Caller::Operator => "operator".into(),
            Caller::Account {
                account_id,
                token_id,
            } => format!("account:{account_id}/{token_id}"),
        }
    }

    /// Whether this caller may see and act on the hub of `row`. Another account's hub
    /// is answered as an unknown one, so a token cannot even learn that it exists; the
    /// attempt is logged for the operator.
    pub fn sees(&self, row: &HubRow) -> bool {
        match self {
            Caller::Operator => true,
            Caller::Account { account_id, .. } if *account_id == row.account_id => true,
            Caller::Account { .. } => {
                tracing::warn!(
                    hub_id = %row.hub_id,
                    caller = %self.log_name(),
                    "another account's hub asked for: answered as unknown"
                );
                false
            }
        }
    }

    /// An enroll's `account_id` must be the token's own.
    pub fn may_enroll_as(&self, account_id: &str) -> Result<(), Refusal> {
        match self {
            Caller::Account {
                account_id: own, ..
            } if own != account_id => Err(Refusal::WrongAccount {
                token: own.clone(),
                sent: account_id.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// Checks an enroll against what is recorded for its hub (`prev`): an account's
    /// token may not enroll another account's hub (even a disabled one: it still owns
    /// the hub's retained backups), nor change the license of a live enrollment. The
    /// operator may do both, as before (a license change is logged).
    pub fn may_enroll(&self, prev: Option<&HubRow>, new: &NewEnrollment) -> Result<(), Refusal> {
        let Some(prev) = prev else {
            return Ok(());
        };
        if !self.sees(prev) {
            return Err(Refusal::ForeignHub(prev.hub_id.clone()));
        }
        let live = matches!(prev.state, HubState::Provisioning | HubState::Active);
        if prev.license_id != new.license_id {
            if live && *self != Caller::Operator {
                return Err(Refusal::LicenseChange {
                    hub_id: prev.hub_id.clone(),
                    current: prev.license_id.clone(),
                    sent: new.license_id.clone(),
                });
            }
            tracing::info!(
                hub_id = %prev.hub_id,
                old_license_id = %prev.license_id,
                new_license_id = %new.license_id,
                caller = %self.log_name(),
                "the hub's license_id changes"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_have_their_shape_and_differ() {
        let a = mint().unwrap();
        let b = mint().unwrap();
        assert_ne!(a.value.expose(), b.value.expose());
        assert_ne!(a.id, b.id);
        assert!(a.value.expose().starts_with(&format!("{}_", a.id)));
        assert_eq!(a.id.len(), 12);
        assert_eq!(a.value.expose().len(), 12 + 1 + 43);
        assert!(is_account_token(a.value.expose().as_bytes()));
        assert_eq!(a.sha256, sha256(a.value.expose().as_bytes()));
        assert_eq!(parse_token_id(&a.id).unwrap(), a.id);
        assert!(!is_account_token(b"hka_short"));
        assert!(!is_account_token(b"operator-token"));
    }

    #[test]
    fn sha256_is_sha256() {
        let h = sha256(b"abc");
        assert_eq!(
            h[..4],
            [0xba, 0x78, 0x16, 0xbf],
            "the FIPS 180-2 test vector"
        );
    }

    #[test]
    fn a_whole_token_is_not_a_token_id_and_is_not_echoed() {
        let t = mint().unwrap();
        let e = parse_token_id(t.value.expose()).unwrap_err();
        assert!(e.contains("not the whole token"), "{e}");
        assert!(!e.contains(t.value.expose()));
        for bad in [
            "",
            "hka_",
            "hka_1234567",
            "hka_1234567G",
            "1a2b3c4d",
            "HKA_1a2b3c4d",
        ] {
            assert!(parse_token_id(bad).is_err(), "{bad}");
        }
    }
}
