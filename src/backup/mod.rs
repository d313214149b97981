//! Backups with rustic (spec §6, §9): the profile and password, one run, and the
//! scheduler that owns them.

pub mod profile;
pub mod run;
mod scheduler;

pub use scheduler::{BackupTargets, BackupView, Backups, RunNow};
