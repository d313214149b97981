//! S3 credentials from an account API token scoped to R2, as Cloudflare documents
//! them: access key id = the token's id, secret = lowercase hex SHA-256 of its value.

use aws_lc_rs::digest::{SHA256, digest};
use hubkeeper_proto::Secret;

#[derive(Debug, Clone)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

pub fn s3_credentials(token_id: &str, token_value: &Secret) -> S3Credentials {
    let hash = digest(&SHA256, token_value.expose().as_bytes());
    let mut hex = String::with_capacity(64);
    for b in hash.as_ref() {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    S3Credentials {
        access_key_id: token_id.to_owned(),
        secret_access_key: Secret::new(hex),
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_sha256_hex_of_the_value() {
        // FIPS 180-2 test vector: SHA-256("abc").
        let c = s3_credentials("tok-id", &Secret::new("abc"));
        assert_eq!(c.access_key_id, "tok-id");
        assert_eq!(
            c.secret_access_key.expose(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let empty = s3_credentials("x", &Secret::new(""));
        assert_eq!(
            empty.secret_access_key.expose(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
