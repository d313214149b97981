//! The `account` commands (`hubkeeper-control account add|list|revoke`): account tokens
//! in the service's database, also while the service runs on it. They read the config
//! for the database only (no secret), open it alongside the service through the same
//! migrations, and write only the `account_tokens` table.

use crate::accounts;
use crate::cli::AccountCommand;
use crate::config_load;
use crate::names;
use crate::store::{AccountTokenRow, SqliteStore, Store, StoreError};
use hubkeeper_base::exit::{self, ExitError};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Draws of a token id before giving up: ids are 32 random bits, so a second draw is
/// already rare and a third means the random source is broken.
const ID_DRAWS: usize = 3;

/// Runs one `account` command with the config at `config`.
pub fn account(config: &Path, cmd: &AccountCommand) -> Result<(), ExitError> {
    let cfg = config_load::load_without_secrets(config).map_err(|e| ExitError::from(&e))?;
    check_owner(&cfg.database)?;
    let store = SqliteStore::open_alongside(&cfg.database).map_err(failure)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failure(format!("cannot start the runtime: {e}")))?;
    rt.block_on(async {
        match cmd {
            AccountCommand::Add { account_id } => add(&store, account_id).await,
            AccountCommand::List { account_id } => list(&store, account_id.as_deref()).await,
            AccountCommand::Revoke { account_id, token } => {
                revoke(&store, account_id, token.as_deref()).await
            }
        }
    })
}

fn failure(e: impl ToString) -> ExitError {
    ExitError::new(exit::FAILURE, e.to_string())
}

fn store_failure(e: StoreError) -> ExitError {
    failure(e)
}

async fn add(store: &SqliteStore, account_id: &str) -> Result<(), ExitError> {
    names::check_account_id(account_id).map_err(failure)?;
    let mut minted = None;
    for _ in 0..ID_DRAWS {
        let t = accounts::mint().map_err(failure)?;
        if store
            .add_account_token(&t.id, account_id, &t.sha256)
            .await
            .map_err(store_failure)?
        {
            minted = Some(t);
            break;
        }
    }
    let Some(t) = minted else {
        return Err(failure(
            "could not draw an unused token id: the system's random source looks broken",
        ));
    };
    // The token goes out once, alone on stdout (so `> file` captures exactly it); if
    // it cannot be written, nobody has it, so it must not stay valid.
    let printed = writeln!(std::io::stdout().lock(), "{}", t.value.expose())
        .and_then(|()| std::io::stdout().lock().flush());
    if let Err(e) = printed {
        let undo = store
            .revoke_account_tokens(account_id, Some(&t.id))
            .await
            .map(|_| "revoked it again")
            .unwrap_or("could not revoke it: run `account revoke` with --token");
        return Err(failure(format!(
            "cannot print the new token {}: {e}; {undo}",
            t.id
        )));
    }
    eprintln!(
        "{}: a new token of account {account_id}, valid now. It is shown only this once: \
         put it in the managed.token_file of the account's hubs.",
        t.id
    );
    Ok(())
}

async fn list(store: &SqliteStore, account_id: Option<&str>) -> Result<(), ExitError> {
    let rows = store
        .account_tokens(account_id)
        .await
        .map_err(store_failure)?;
    let text = match (rows.is_empty(), account_id) {
        (true, None) => {
            "no account tokens yet: issue one with `hubkeeper-control account add ACCOUNT_ID`\n"
                .to_owned()
        }
        (true, Some(a)) => format!(
            "account {a} has no tokens: issue one with `hubkeeper-control account add {a}`\n"
        ),
        (false, _) => render(&rows),
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(|e| failure(format!("cannot print the list: {e}")))
}

/// One heading per account with its live count, then its tokens, oldest first.
fn render(rows: &[AccountTokenRow]) -> String {
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        if i == 0 || rows[i - 1].account_id != r.account_id {
            let live = rows[i..]
                .iter()
                .take_while(|o| o.account_id == r.account_id)
                .filter(|o| o.revoked_at.is_none())
                .count();
            let plural = if live == 1 { "" } else { "s" };
            out.push_str(&format!("{}: {live} live token{plural}\n", r.account_id));
        }
        out.push_str(&format!("  {}  created {}", r.token_id, r.created_at));
        if let Some(at) = &r.revoked_at {
            out.push_str(&format!("  revoked {at}"));
        }
        out.push('\n');
    }
    out
}

async fn revoke(
    store: &SqliteStore,
    account_id: &str,
    token: Option<&str>,
) -> Result<(), ExitError> {
    names::check_account_id(account_id).map_err(failure)?;
    let token = token
        .map(accounts::parse_token_id)
        .transpose()
        .map_err(failure)?;
    let known = store
        .account_tokens(Some(account_id))
        .await
        .map_err(store_failure)?;
    if known.is_empty() {
        return Err(failure(format!(
            "account {account_id} has no tokens: `hubkeeper-control account list` shows the accounts that have"
        )));
    }
    if let Some(t) = &token
        && !known.iter().any(|k| &k.token_id == t)
    {
        return Err(failure(format!(
            "account {account_id} has no token {t}: `hubkeeper-control account list {account_id}` shows its tokens"
        )));
    }
    let n = store
        .revoke_account_tokens(account_id, token.as_deref())
        .await
        .map_err(store_failure)?;
    let what = match (&token, n) {
        (_, 0) => "nothing to revoke: already revoked".to_owned(),
        (Some(t), _) => format!("revoked token {t} of account {account_id}"),
        (None, 1) => format!("revoked 1 token of account {account_id}"),
        (None, n) => format!("revoked {n} tokens of account {account_id}"),
    };
    let tail = match n {
        0 => "",
        1 => ": requests with it are refused (401) from now on",
        _ => ": requests with them are refused (401) from now on",
    };
    println!("{what}{tail}");
    Ok(())
}

/// The account commands write as whoever runs them, and SQLite creates its `-wal` and
/// `-shm` files beside the database as their first opener: run as root on a stopped
/// service, they could leave files the service's user cannot open. So the command must
/// run as the owner of the database (or, before it exists, of its directory).
fn check_owner(db: &Path) -> Result<(), ExitError> {
    let Some((existing, meta)) = db
        .ancestors()
        .find_map(|p| std::fs::metadata(p).ok().map(|m| (p, m)))
    else {
        return Ok(());
    };
    let me = nix::unistd::geteuid();
    if meta.uid() == me.as_raw() {
        return Ok(());
    }
    let name = |uid: u32| {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map_or_else(|| format!("uid {uid}"), |u| u.name)
    };
    let owner = name(meta.uid());
    Err(failure(format!(
        "{} belongs to {owner}, but this runs as {}: run it as {owner} (e.g. `sudo -u {owner} hubkeeper-control account ...`), so that the files SQLite creates beside the database stay the service's",
        existing.display(),
        name(me.as_raw()),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(account: &str, id: &str, revoked: bool) -> AccountTokenRow {
        AccountTokenRow {
            token_id: id.into(),
            account_id: account.into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            revoked_at: revoked.then(|| "2026-01-02T00:00:00Z".into()),
        }
    }

    #[test]
    fn the_list_counts_live_tokens_per_account() {
        let text = render(&[
            row("a", "hka_00000001", false),
            row("a", "hka_00000002", true),
            row("b", "hka_00000003", true),
        ]);
        assert_eq!(
            text,
            "a: 1 live token\n  hka_00000001  created 2026-01-01T00:00:00Z\n  \
             hka_00000002  created 2026-01-01T00:00:00Z  revoked 2026-01-02T00:00:00Z\n\
             b: 0 live tokens\n  hka_00000003  created 2026-01-01T00:00:00Z  revoked 2026-01-02T00:00:00Z\n"
        );
    }
}
