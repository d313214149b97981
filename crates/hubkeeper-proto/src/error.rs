//! The one error body both APIs answer with (spec §7, §8):
//! `{"error":{"code":"snake_case","message":"..."}}`.

use serde::{Deserialize, Serialize};

/// Non-2xx bodies: `{"error":{"code":"...","message":"..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}
