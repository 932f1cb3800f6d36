//! Opaque tokens: a kind prefix, the millisecond of issue, 256 random bits; SHA-256 at rest.
//!
//! A token means nothing by itself: its meaning is whatever the store says under its key, and
//! a revocation takes effect on the next lookup. Plain SHA-256 is enough at rest: the input
//! has 256 bits of entropy, so a leaked hash cannot be reversed by guessing, unlike a password.
//!
//! The store key of a token begins with its millisecond of issue (6 bytes, as in a UUIDv7),
//! followed by 26 bytes of the token's SHA-256. The time is there for the store's B-trees:
//! keys that grow with time make every new token an append at the end of the key index
//! instead of a write to a random page of it, and put the tokens in use (the recent ones)
//! side by side. It reveals when the token was issued, which its holder knows anyway; the
//! 256 random bits are what make it unguessable.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use std::fmt;

use crate::clock::UnixTime;
use crate::ids::{ClientId, FamilyId, UserId};
use crate::random::random_b64;
use crate::resource::Audience;
use crate::scope::Scope;

/// What a token is for, shown by its prefix so people and secret scanners can tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    Access,
    Refresh,
    AuthorizationCode,
}

impl TokenKind {
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Access => "tsa_",
            Self::Refresh => "tsr_",
            Self::AuthorizationCode => "tsc_",
        }
    }

    /// The kind a presented token claims by its prefix; the store decides whether it is real.
    pub fn of(token: &str) -> Option<Self> {
        [Self::Access, Self::Refresh, Self::AuthorizationCode]
            .into_iter()
            .find(|k| token.starts_with(k.prefix()))
    }
}

/// A token in clear. It exists only in memory and in the response that hands it out.
#[derive(Clone, PartialEq, Eq)]
pub struct RawToken(String);

impl RawToken {
    /// A fresh token of `kind`: the current millisecond, then 256 bits from the OS CSPRNG.
    pub fn generate(kind: TokenKind) -> Result<Self, getrandom::Error> {
        // The wall clock only orders keys: a clock that steps back costs some appends, never
        // correctness, since uniqueness comes from the random part.
        let [_, _, millis @ ..] = crate::clock::system_millis().to_be_bytes();
        let mut body = [0u8; TIME_BYTES + SECRET_BYTES];
        let (time, secret) = body.split_at_mut(TIME_BYTES);
        time.copy_from_slice(&millis);
        getrandom::fill(secret)?;
        Ok(Self(format!(
            "{}{}",
            kind.prefix(),
            URL_SAFE_NO_PAD.encode(body)
        )))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn key(&self) -> TokenKey {
        TokenKey::of(&self.0)
    }
}

impl fmt::Debug for RawToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RawToken([redacted])")
    }
}

const TIME_BYTES: usize = 6;
const SECRET_BYTES: usize = 32;
/// Base64url characters of a generated token after its prefix (38 bytes, no padding).
const BODY_CHARS: usize = ((TIME_BYTES + SECRET_BYTES) * 4).div_ceil(3);

/// The issue time a generated token carries, if `presented` has the exact shape of one.
fn issue_time_of(presented: &str) -> Option<[u8; TIME_BYTES]> {
    let kind = TokenKind::of(presented)?;
    let body = presented.get(kind.prefix().len()..)?;
    if body.len() != BODY_CHARS {
        return None;
    }
    // Room for the decoder's estimate; exactly 38 bytes must come out.
    let mut decoded = [0u8; TIME_BYTES + SECRET_BYTES + 2];
    match URL_SAFE_NO_PAD.decode_slice(body, &mut decoded) {
        Ok(n) if n == TIME_BYTES + SECRET_BYTES => decoded.first_chunk().copied(),
        _ => None,
    }
}

/// The store's key for a token, derived from its full text: the only form in which the
/// store knows a token. For a token as [`RawToken::generate`] makes it: its 6 bytes of issue
/// time, then the first 26 bytes of the SHA-256 of its text. For anything else (session ids,
/// tokens issued before the time prefix, garbage): the SHA-256 of the text.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenKey(pub [u8; 32]);

impl TokenKey {
    pub fn of(presented: &str) -> Self {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let Some(time) = issue_time_of(presented) else {
            return Self(digest);
        };
        // 208 bits of the digest stay: a guess matches a stored key with probability
        // 2^-208 per token issued in the same millisecond, far below RFC 6749 §10.10's 2^-160.
        let mut key = [0u8; 32];
        let (head, tail) = key.split_at_mut(TIME_BYTES);
        head.copy_from_slice(&time);
        if let Some(digest_head) = digest.first_chunk::<{ 32 - TIME_BYTES }>() {
            tail.copy_from_slice(digest_head);
        }
        Self(key)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }

    /// The key as resource servers are told it: its 32 bytes in base64url without padding
    /// (43 characters).
    pub fn to_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A short fingerprint is enough to correlate log lines and reveals nothing usable.
        let head: String = self.0.iter().take(4).map(|b| format!("{b:02x}")).collect();
        write!(f, "TokenKey({head}..)")
    }
}

/// Token text that a party presents or receives: a bearer secret, so `Debug` never prints it.
macro_rules! secret_text {
    ($(#[$doc:meta] $name:ident;)*) => {$(
        #[$doc]
        #[derive(Clone, PartialEq, Eq, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(text: impl Into<String>) -> Self {
                Self(text.into())
            }

            pub fn expose(&self) -> &str {
                &self.0
            }

            /// The store's key for this text.
            pub fn key(&self) -> TokenKey {
                TokenKey::of(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }

        impl From<RawToken> for $name {
            fn from(raw: RawToken) -> Self {
                Self(raw.0)
            }
        }
    )*};
}

secret_text! {
    /// An access token's text, as handed out or presented.
    AccessToken;
    /// A refresh token's text, as handed out or presented.
    RefreshToken;
    /// An authorization code's text, as handed out or presented.
    AuthorizationCode;
    /// A browser session's id, the value of its cookie.
    SessionId;
    /// An RFC 7592 registration access token: manages one self-registered client.
    RegistrationAccessToken;
    /// An RFC 7591 initial access token: lets its holder register clients.
    InitialAccessToken;
    /// A bearer token of the admin API (`tsm_`).
    AdminToken;
}

/// What the store knows about one token, under its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub hash: TokenKey,
    pub kind: TokenKind,
    pub client_id: ClientId,
    /// The resource owner; `None` for client_credentials tokens.
    pub subject: Option<UserId>,
    pub scope: Scope,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
    /// When a refresh token was exchanged for a new one. A rotated token is dead, and
    /// presenting it again is the sign of theft that revokes its family (RFC 9700 §4.14.2).
    pub rotated_at: Option<UnixTime>,
    /// Every token descended from one grant of a person shares a family; revoking a refresh
    /// token or detecting its reuse (or a code's replay) revokes the whole family at once.
    /// `None` for client_credentials tokens: nothing descends from them (no refresh token,
    /// RFC 6749 §4.4.3), so a family would be one token, and its index entry pure cost.
    pub family_id: Option<FamilyId>,
    /// The resource servers the token is for (RFC 8707); only they, and the client it was
    /// issued to, learn through introspection that it is active.
    pub audience: Audience,
    /// The subject's username, read from the user on lookup (not stored with the token).
    pub username: Option<String>,
}

impl TokenRecord {
    /// Active means: not revoked, not rotated, and not yet expired at `now` (expiry is
    /// exclusive).
    pub fn is_active(&self, now: UnixTime) -> bool {
        self.revoked_at.is_none() && self.rotated_at.is_none() && now < self.expires_at
    }

    /// Whether a resource server may accept this token at `now` (see [`Standing`]).
    pub fn is_active_access_token(&self, now: UnixTime) -> bool {
        self.standing().is_active_access_token(now)
    }

    /// What this record says about the token, in the terms a resource server decides on.
    pub fn standing(&self) -> Standing {
        Standing {
            token_use: match self.kind {
                TokenKind::Access => TokenUse::Access,
                TokenKind::Refresh | TokenKind::AuthorizationCode => TokenUse::Other,
            },
            live: self.revoked_at.is_none() && self.rotated_at.is_none(),
            expires_at: Some(self.expires_at),
            not_before: None,
        }
    }
}

/// What a token is for, as far as whoever describes it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    Access,
    /// A refresh token or a code: never a bearer credential at a resource server.
    Other,
    /// Not said (an introspection answer of a server that does not report it).
    Unstated,
}

/// A token's standing, from the store's record or from an introspection answer: the facts
/// the one rule for "active access token" reads, so that introspection, the guard and the
/// local validator cannot disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub token_use: TokenUse,
    /// Neither revoked nor rotated (for an introspection answer: `active`).
    pub live: bool,
    pub expires_at: Option<UnixTime>,
    pub not_before: Option<UnixTime>,
}

impl Standing {
    /// The one rule for "a resource server may accept this token": live, not known to be
    /// anything but an access token, and inside its validity window at `now` (expiry is
    /// exclusive).
    pub fn is_active_access_token(&self, now: UnixTime) -> bool {
        self.live
            && self.token_use != TokenUse::Other
            && self.expires_at.is_none_or(|exp| now < exp)
            && self.not_before.is_none_or(|nbf| nbf <= now)
    }
}

/// A new grant's family identifier: the millisecond it starts (12 hex digits) and 96 random
/// bits. It is never shown to anyone; the time prefix only keeps the store's family index
/// growing at its end. Not whole seconds: the many families begun within one second would
/// take random places among each other, a random page of the index written per token.
pub fn new_family_id() -> Result<FamilyId, getrandom::Error> {
    Ok(FamilyId::new(format!(
        "{:012x}{}",
        crate::clock::system_millis(),
        random_b64::<12>()?
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_long_and_distinct() {
        let a = RawToken::generate(TokenKind::Access).unwrap();
        let b = RawToken::generate(TokenKind::Access).unwrap();
        assert!(a.expose().starts_with("tsa_"));
        assert_eq!(a.expose().len(), 4 + 51);
        assert_ne!(a, b);
        assert_eq!(TokenKind::of(a.expose()), Some(TokenKind::Access));
        assert_eq!(format!("{a:?}"), "RawToken([redacted])");
    }

    #[test]
    fn only_a_live_access_token_inside_its_window_is_an_active_access_token() {
        let live = Standing {
            token_use: TokenUse::Access,
            live: true,
            expires_at: Some(UnixTime::from_secs(200)),
            not_before: Some(UnixTime::from_secs(100)),
        };
        assert!(live.is_active_access_token(UnixTime::from_secs(100)));
        assert!(live.is_active_access_token(UnixTime::from_secs(199)));
        assert!(
            !live.is_active_access_token(UnixTime::from_secs(200)),
            "expiry is exclusive"
        );
        assert!(
            !live.is_active_access_token(UnixTime::from_secs(99)),
            "not yet valid"
        );
        let unstated = Standing {
            token_use: TokenUse::Unstated,
            expires_at: None,
            not_before: None,
            ..live
        };
        assert!(unstated.is_active_access_token(UnixTime::from_secs(i64::MAX)));
        for dead in [
            Standing {
                live: false,
                ..live
            },
            Standing {
                token_use: TokenUse::Other,
                ..live
            },
        ] {
            assert!(
                !dead.is_active_access_token(UnixTime::from_secs(150)),
                "{dead:?}"
            );
        }
    }

    #[test]
    fn token_texts_redact_in_debug_and_serialize_in_clear() {
        let raw = RawToken::generate(TokenKind::Access).unwrap();
        let text = raw.expose().to_owned();
        let access = AccessToken::from(raw);
        let refresh = RefreshToken::new(text.clone());
        let code = AuthorizationCode::new(text.clone());
        let session = SessionId::new(text.clone());
        for debug in [
            format!("{session:?}"),
            format!("{access:?}"),
            format!("{refresh:?}"),
            format!("{code:?}"),
            format!("{:?}", Some(&access)),
        ] {
            assert!(!debug.contains(&text), "{debug}");
            assert!(debug.contains("[redacted]"), "{debug}");
        }
        assert_eq!(
            serde_json::to_string(&access).unwrap(),
            format!("\"{text}\"")
        );
        assert_eq!(refresh.key(), TokenKey::of(&text));
    }

    #[test]
    fn a_prefix_of_a_token_hashes_differently() {
        let t = RawToken::generate(TokenKind::Refresh).unwrap();
        let full = t.expose();
        let prefix = full.get(..full.len() - 1).unwrap();
        assert_ne!(TokenKey::of(prefix), t.key());
        assert_eq!(TokenKey::of(full), t.key());
    }

    #[test]
    fn a_generated_token_is_keyed_by_its_issue_time_then_its_digest() {
        let before = now_millis_be();
        let t = RawToken::generate(TokenKind::Access).unwrap();
        let after = now_millis_be();
        let key = t.key().0;
        let time = key.first_chunk::<TIME_BYTES>().unwrap();
        assert!(
            before <= *time && *time <= after,
            "{time:?} not in {before:?}..={after:?}"
        );
        let digest: [u8; 32] = Sha256::digest(t.expose().as_bytes()).into();
        assert_eq!(key.get(TIME_BYTES..), digest.get(..32 - TIME_BYTES));
    }

    #[test]
    fn later_tokens_have_larger_keys() {
        let first = RawToken::generate(TokenKind::Access).unwrap().key();
        wait_for_the_next_millisecond();
        let second = RawToken::generate(TokenKind::Refresh).unwrap().key();
        assert!(first.0 < second.0);
    }

    #[test]
    fn families_begun_later_sort_later() {
        let first = new_family_id().unwrap();
        wait_for_the_next_millisecond();
        let second = new_family_id().unwrap();
        assert!(first < second, "{first} >= {second}");
        assert_eq!(first.len(), 12 + 16);
    }

    #[test]
    fn other_texts_are_keyed_by_their_plain_digest() {
        let t = RawToken::generate(TokenKind::Access).unwrap();
        let body = t.expose().strip_prefix("tsa_").unwrap();
        // A token issued before the time prefix (43 characters), a session id, a body with a
        // wrong prefix, a body one character short, and one whose last character sets bits
        // past the 38th byte (not canonical base64url): none has the generated shape.
        let legacy = format!("tsa_{}", "A".repeat(43));
        let short = format!("tsa_{}", body.get(1..).unwrap());
        let mut noncanonical = t.expose().to_owned();
        noncanonical.pop();
        noncanonical.push('B');
        for text in [
            legacy.as_str(),
            "a-session-id",
            &format!("xyz_{body}"),
            &short,
            &noncanonical,
        ] {
            let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
            assert_eq!(TokenKey::of(text).0, digest, "{text}");
        }
    }

    fn wait_for_the_next_millisecond() {
        let now = crate::clock::system_millis();
        while crate::clock::system_millis() == now {
            std::hint::spin_loop();
        }
    }

    fn now_millis_be() -> [u8; TIME_BYTES] {
        let bytes = crate::clock::system_millis().to_be_bytes();
        *bytes.last_chunk::<TIME_BYTES>().unwrap()
    }
}
