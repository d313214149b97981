//! Bearer authentication: the shared secret compared in constant time, so response
//! timing does not reveal how much of a guess was right.

use hubkeeper_proto::Secret;
use hyper::HeaderMap;
use hyper::header::AUTHORIZATION;
use subtle::ConstantTimeEq;

/// True if the request carries `Authorization: Bearer <token>` with our token. The
/// scheme is case-insensitive (RFC 9110 §11.1). Only the token's length can leak
/// through timing (`ct_eq` returns early on a length mismatch).
pub fn authorized(headers: &HeaderMap, token: &Secret) -> bool {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return false;
    };
    let value = value.as_bytes();
    let Some(space) = value.iter().position(|b| *b == b' ') else {
        return false;
    };
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return false;
    }
    let presented = rest.trim_ascii();
    presented.ct_eq(token.expose().as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn with(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn only_the_exact_token_passes() {
        let t = Secret::new("s3cret-token");
        assert!(authorized(&with("Bearer s3cret-token"), &t));
        assert!(authorized(&with("bearer  s3cret-token"), &t));
        assert!(!authorized(&with("Bearer s3cret-toke"), &t));
        assert!(!authorized(&with("Bearer s3cret-token2"), &t));
        assert!(!authorized(&with("Basic s3cret-token"), &t));
        assert!(!authorized(&with("s3cret-token"), &t));
        assert!(!authorized(&with("Bearer "), &t));
        assert!(!authorized(&HeaderMap::new(), &t));
    }
}
