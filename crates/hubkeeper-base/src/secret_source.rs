//! Where secrets come from: a file named in the config, or a systemd credential
//! (`$CREDENTIALS_DIRECTORY/<name>`, from `LoadCredential=`). Never inline.

use crate::Secret;
use crate::config::{ReadError, read_regular_file};
use std::io;
use std::path::{Path, PathBuf};

/// Why a secret could not be had. Messages name the file, never the value.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "not set, and no systemd credential \"{credential}\" was found ({where_}): set this key to a file holding the secret, or add LoadCredential={credential}:/path/to/file to the unit"
    )]
    Missing {
        credential: &'static str,
        where_: String,
    },
    #[error(
        "cannot read {}: {source}; make it readable by the user {} runs as",
        path.display(),
        program()
    )]
    Unreadable { path: PathBuf, source: io::Error },
    #[error(
        "cannot read {}: {problem}: put the secret in a regular file (or a systemd credential)",
        path.display()
    )]
    NotAFile { path: PathBuf, problem: ReadError },
    #[error("{} is empty: put the secret in it", path.display())]
    Empty { path: PathBuf },
}

/// This program's name ("hubkeeper", "hubkeeper-control"), for messages that tell an
/// admin whose access to fix.
fn program() -> String {
    std::env::args_os()
        .next()
        .as_deref()
        .map(Path::new)
        .and_then(Path::file_name)
        .map_or_else(
            || "this program".into(),
            |n| n.to_string_lossy().into_owned(),
        )
}

/// Reads the secret from `file` if given, else from the credential `credential` in
/// `credentials_dir` (the value of `$CREDENTIALS_DIRECTORY`).
pub fn read_secret(
    file: Option<&Path>,
    credential: &'static str,
    credentials_dir: Option<&Path>,
) -> Result<Secret, SourceError> {
    let path = match (file, credentials_dir) {
        (Some(f), _) => f.to_path_buf(),
        (None, Some(dir)) => {
            let p = dir.join(credential);
            if !p.exists() {
                return Err(SourceError::Missing {
                    credential,
                    where_: format!("no file {}", p.display()),
                });
            }
            p
        }
        (None, None) => {
            return Err(SourceError::Missing {
                credential,
                where_: "$CREDENTIALS_DIRECTORY is not set".into(),
            });
        }
    };
    read_secret_file(&path)
}

/// The most a secret file may hold; tokens and keys are well under 1 KiB.
const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// Blocking, but bounded: only a regular file of at most 64 KiB is read, and nothing
/// at the path (a FIFO with no writer) can make the open wait.
pub fn read_secret_file(path: &Path) -> Result<Secret, SourceError> {
    let raw = read_regular_file(path, MAX_SECRET_BYTES).map_err(|e| match e {
        ReadError::Io(source) => SourceError::Unreadable {
            path: path.to_path_buf(),
            source,
        },
        problem => SourceError::NotAFile {
            path: path.to_path_buf(),
            problem,
        },
    })?;
    // A secret that is not UTF-8 is unusable in any header or file we write; say so
    // without echoing bytes.
    let text = String::from_utf8(raw).map_err(|_| SourceError::Unreadable {
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidData, "the file is not UTF-8 text"),
    })?;
    let secret = Secret::from_file_contents(text);
    if secret.expose().trim().is_empty() {
        return Err(SourceError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_wins_over_credential() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), "from-file\n").unwrap();
        std::fs::write(d.path().join("control-token"), "from-cred").unwrap();
        let s = read_secret(Some(&d.path().join("f")), "control-token", Some(d.path())).unwrap();
        assert_eq!(s.expose(), "from-file");
        let s = read_secret(None, "control-token", Some(d.path())).unwrap();
        assert_eq!(s.expose(), "from-cred");
    }

    #[test]
    fn missing_and_empty_are_explained_without_values() {
        let d = tempfile::tempdir().unwrap();
        let e = read_secret(None, "control-token", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("LoadCredential=control-token"), "{e}");
        std::fs::write(d.path().join("empty"), "\n").unwrap();
        let e = read_secret_file(&d.path().join("empty"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is empty"), "{e}");
        let e = read_secret_file(&d.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read") && e.contains("nope"), "{e}");
    }
}
