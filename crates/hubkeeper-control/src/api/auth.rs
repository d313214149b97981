//! Bearer authentication at the edge: the bearer a request presents, and whether it is
//! the operator's token, compared in constant time so that response timing does not
//! reveal how much of a guess was right. An account's token is found by its hash
//! (`Service::account_caller`); `routes` turns either into the request's `Caller`.

use hubkeeper_proto::Secret;
use hyper::HeaderMap;
use hyper::header::AUTHORIZATION;
use subtle::ConstantTimeEq;

/// The token of `Authorization: Bearer <token>`, if the request carries one. The
/// scheme is case-insensitive (RFC 9110 §11.1).
pub fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(AUTHORIZATION)?.as_bytes();
    let space = value.iter().position(|b| *b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let presented = rest.trim_ascii();
    (!presented.is_empty()).then_some(presented)
}

/// True if `presented` is the operator's token. Only the token's length can leak
/// through timing (`ct_eq` returns early on a length mismatch).
pub fn is_operator(presented: &[u8], token: &Secret) -> bool {
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

    fn operator(h: &HeaderMap, t: &Secret) -> bool {
        bearer(h).is_some_and(|p| is_operator(p, t))
    }

    #[test]
    fn only_the_exact_token_passes() {
        let t = Secret::new("s3cret-token");
        assert!(operator(&with("Bearer s3cret-token"), &t));
        assert!(operator(&with("bearer  s3cret-token"), &t));
        assert!(!operator(&with("Bearer s3cret-toke"), &t));
        assert!(!operator(&with("Bearer s3cret-token2"), &t));
        assert!(!operator(&with("Basic s3cret-token"), &t));
        assert!(!operator(&with("s3cret-token"), &t));
        assert!(!operator(&with("Bearer "), &t));
        assert!(!operator(&HeaderMap::new(), &t));
        assert_eq!(bearer(&with("Bearer  hka_x ")), Some(&b"hka_x"[..]));
    }
}
