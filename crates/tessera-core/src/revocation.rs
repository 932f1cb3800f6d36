//! What revoking a token reaches (RFC 7009 §2.1), and how resource servers hear of it.
//!
//! A refresh token takes its whole family along: the access tokens minted with it and every
//! successor, since the grant itself is withdrawn. An access token goes alone, so a resource
//! server's logout does not end the user's other sessions of the same grant.
//!
//! Each revocation of a live access token is an event, numbered in one order across nodes.
//! A registered resource server follows the events for the tokens of its audience at
//! [`REVOCATION_STREAM_PATH`] (Server-Sent Events, a Tessera extension), so it can cache
//! introspection answers and still refuse a revoked token at once:
//! - `event: revoked`, `id:` the event's number, `data:` [`RevokedData`] as JSON: the
//!   token's [`TokenKey`], which a holder of the token computes with `TokenKey::of`;
//! - `event: reset`, `id:` the last number: events may have been missed (a resume from
//!   before the events kept, or from an unknown number), so the whole cache must go;
//! - an `id:` alone now and then: the number read up to, though nothing was for this
//!   resource, so that a resume does not start from before the events kept.
//!
//! A stream resumes after its `Last-Event-ID`; without one it starts at the present.

use serde::Serialize;

use crate::ids::FamilyId;
use crate::token::{TokenKey, TokenKind, TokenRecord};

/// Where resource servers follow revocations.
pub const REVOCATION_STREAM_PATH: &str = "/revocations";

/// The `data` of a `revoked` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevokedData {
    /// [`TokenKey::to_base64url`] of the revoked token's key.
    pub token_key: String,
}

impl RevokedData {
    pub fn of(key: &TokenKey) -> Self {
        Self {
            token_key: key.to_base64url(),
        }
    }
}

/// Where a revocation stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStart {
    /// After this event: nothing the resource server needs was missed.
    After(u64),
    /// Events may have been missed: a `reset`, then the events after this one.
    Reset(u64),
}

/// Where a stream asked to resume after `last_event_id` starts, when the events kept are
/// those after `horizon` up to `latest`.
pub fn stream_start(last_event_id: Option<&str>, horizon: u64, latest: u64) -> StreamStart {
    match last_event_id.map(str::trim) {
        None | Some("") => StreamStart::After(latest),
        Some(id) => match id.parse() {
            Ok(seen) if can_resume(seen, horizon, latest) => StreamStart::After(seen),
            _ => StreamStart::Reset(latest),
        },
    }
}

/// Whether a reader that has seen every event up to `seen` misses none by reading on after
/// it: none it has not seen was purged (they are those up to `horizon`), and `seen` is no
/// number from the future (another database, a reset one).
pub fn can_resume(seen: u64, horizon: u64, latest: u64) -> bool {
    horizon <= seen && seen <= latest
}

/// The tokens a revocation of one token reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach<'a> {
    /// Every token of this family.
    Family(&'a FamilyId),
    /// Only the token itself.
    Single,
}

/// What revoking `record` reaches. A refresh token stored without a family (none is minted
/// so) goes alone.
pub fn reach(record: &TokenRecord) -> Reach<'_> {
    match (&record.family_id, record.kind) {
        (Some(family), TokenKind::Refresh) => Reach::Family(family),
        _ => Reach::Single,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::Scope;
    use crate::token::TokenKey;

    fn record(kind: TokenKind, family: Option<&str>) -> TokenRecord {
        TokenRecord {
            hash: TokenKey::of("x"),
            kind,
            client_id: "c".into(),
            subject: None,
            scope: Scope::default(),
            issued_at: crate::clock::UnixTime::from_secs(0),
            expires_at: crate::clock::UnixTime::from_secs(1),
            revoked_at: None,
            rotated_at: None,
            family_id: family.map(FamilyId::from),
            audience: Default::default(),
            username: None,
        }
    }

    #[test]
    fn a_stream_resumes_inside_the_window_and_resets_outside_it() {
        use StreamStart::{After, Reset};
        let start = |id| stream_start(id, 10, 20);
        assert_eq!(start(None), After(20), "no history");
        assert_eq!(start(Some("")), After(20));
        assert_eq!(start(Some("10")), After(10));
        assert_eq!(start(Some(" 15 ")), After(15));
        assert_eq!(start(Some("20")), After(20));
        assert_eq!(start(Some("9")), Reset(20), "purged events may be missed");
        assert_eq!(start(Some("21")), Reset(20), "a number from elsewhere");
        assert_eq!(start(Some("x")), Reset(20));
        assert_eq!(start(Some("-1")), Reset(20));
        assert_eq!(stream_start(Some("0"), 0, 0), After(0));
    }

    #[test]
    fn a_key_is_sent_in_base64url() {
        let data = RevokedData::of(&TokenKey([0xff; 32]));
        assert_eq!(data.token_key.len(), 43);
        assert_eq!(data.token_key, "_".repeat(42) + "8");
        let json = serde_json::to_string(&data).unwrap();
        assert_eq!(json, format!(r#"{{"token_key":"{}"}}"#, data.token_key));
    }

    #[test]
    fn a_refresh_token_reaches_its_family_and_an_access_token_only_itself() {
        let refresh = record(TokenKind::Refresh, Some("f"));
        assert_eq!(reach(&refresh), Reach::Family(&"f".into()));
        assert_eq!(reach(&record(TokenKind::Access, Some("f"))), Reach::Single);
        assert_eq!(reach(&record(TokenKind::Refresh, None)), Reach::Single);
        assert_eq!(reach(&record(TokenKind::Access, None)), Reach::Single);
    }
}
