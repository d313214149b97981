//! Secrets: the redacting value type, where secret inputs come from, and the store
//! that owns `secrets_dir`.

mod secret;
pub use secret::exposed;
pub mod source;
pub mod store;

pub use secret::Secret;
pub use store::{SecretsStore, StoreError};
