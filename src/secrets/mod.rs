//! Secrets on the hub: the store that owns `secrets_dir`, beside the redacting value
//! type (from the wire types) and the secret sources (files, systemd credentials).

pub mod store;

pub use hubkeeper_base::secret_source as source;
pub use hubkeeper_proto::{Secret, exposed};
pub use store::{SecretsStore, StoreError};
