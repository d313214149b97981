//! Where a config's text and its systemd credentials come from, and how any file an
//! admin names (config, token, key) is read: a regular file only, opened so that
//! nothing at the path can block the open, and never more than a cap.

use super::diagnostic::ConfigError;
use std::fs::{FileType, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The most a config file may hold; real ones are a few KiB.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Why a file named in a config could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("it is {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("it is larger than {0} bytes")]
    TooLarge(u64),
}

/// Reads the regular file at `path`, at most `limit` bytes of it. A FIFO, device,
/// socket or directory there is refused: O_NONBLOCK makes the open itself return at
/// once (opening a FIFO with no writer would wait forever), and the type is checked
/// on the opened descriptor, so a swap between check and read cannot slip past.
pub fn read_regular_file(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    let ft = meta.file_type();
    if !ft.is_file() {
        return Err(ReadError::NotRegular(describe(ft)));
    }
    if meta.len() > limit {
        return Err(ReadError::TooLarge(limit));
    }
    let mut buf = Vec::new();
    // A file that grows while read is cut at limit + 1, and then refused.
    Read::take(&file, limit + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(ReadError::TooLarge(limit));
    }
    Ok(buf)
}

fn describe(ft: FileType) -> &'static str {
    if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_dir() {
        "a directory"
    } else {
        "not a file"
    }
}

/// Where to look for systemd credentials: `$CREDENTIALS_DIRECTORY`.
pub fn credentials_dir_from_env() -> Option<PathBuf> {
    std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from)
}

/// The text of a config file; `if_missing` is appended to the error when there is no
/// such file, to say how to get one. Shared with the control service's `control.toml`.
/// Blocking, but bounded: only a regular file of at most [`MAX_CONFIG_BYTES`] is read.
pub fn read_config_file(path: &Path, if_missing: &str) -> Result<String, ConfigError> {
    let fail = |msg: String| ConfigError::single(path.to_path_buf(), msg);
    let raw = read_regular_file(path, MAX_CONFIG_BYTES).map_err(|e| {
        let hint = match &e {
            ReadError::Io(io) if io.kind() == io::ErrorKind::NotFound => if_missing,
            ReadError::Io(_) => "",
            ReadError::NotRegular(_) => ": put the config in a regular file",
            ReadError::TooLarge(_) => ": is this the right file?",
        };
        fail(format!("cannot read the config file: {e}{hint}"))
    })?;
    String::from_utf8(raw)
        .map_err(|_| fail("cannot read the config file: it is not UTF-8 text".into()))
}

/// The top-level keys of `text` that are among `foreign`: keys only the other
/// binary's config has. A config handed to the wrong program is then named as such,
/// before its unknown keys are listed one by one.
fn foreign_keys<'a>(text: &str, foreign: &[&'a str]) -> Vec<&'a str> {
    let Ok(table) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    foreign
        .iter()
        .copied()
        .filter(|k| table.contains_key(*k))
        .collect()
}

/// The first problem of a config that looks like the other program's (at least two of
/// its keys): which program it belongs to and how to run that one.
pub fn wrong_program(
    text: &str,
    foreign: &[&str],
    other_program: &str,
    other_command: &str,
) -> Option<super::Diagnostic> {
    let found = foreign_keys(text, foreign);
    (found.len() >= 2).then(|| {
        super::Diagnostic::new(
            None,
            format!(
                "this looks like a config for {other_program} (it has {}): run `{other_command}` with it, or pass this program its own config",
                found.join(", ")
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_cap_are_read() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, "abc").unwrap();
        assert_eq!(read_regular_file(&f, 3).unwrap(), b"abc");
        let e = read_regular_file(&f, 2).unwrap_err().to_string();
        assert_eq!(e, "it is larger than 2 bytes");
        let e = read_regular_file(d.path(), 10).unwrap_err().to_string();
        assert_eq!(e, "it is a directory, not a regular file");
        let e = read_regular_file(Path::new("/dev/zero"), 10)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "it is a character device, not a regular file");
        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = read_regular_file(&fifo, 10).unwrap_err().to_string();
        assert_eq!(e, "it is a FIFO, not a regular file");
    }

    #[test]
    fn a_config_with_two_foreign_keys_is_named() {
        let text = "listen = \"127.0.0.1:1\"\ndatabase = \"x\"\nenabled = true\n";
        let d = wrong_program(
            text,
            &["listen", "database", "zone"],
            "hubkeeper-control",
            "hubkeeper-control --config PATH",
        )
        .unwrap();
        assert!(d.message.contains("listen, database"), "{}", d.message);
        assert!(d.message.contains("`hubkeeper-control --config PATH`"));
        assert!(wrong_program("listen = 1\n", &["listen", "database"], "x", "x").is_none());
        assert!(wrong_program("not toml [", &["listen"], "x", "x").is_none());
    }
}
