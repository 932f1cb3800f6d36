//! The audit trail: who did what, to whom, from where and when, kept for the operator.
//!
//! An [`AuditEvent`] records an action once (a revocation of a family of ten tokens is one
//! event with its cause), never a bearer secret: no token, code, client secret or password
//! has a field here, and `detail` holds only what its builder puts in (causes, counts,
//! scopes, command names). Issuance and introspection, the paths taken at every request,
//! record nothing; sign-ins, consents, revocations, registrations and operators' changes do.
//!
//! Kinds and actors are stored as stable strings ([`AuditKind::as_str`], [`Actor`]'s
//! `Display`), so a reader of an older or newer server reads the same words.

use std::fmt;
use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::clock::UnixTime;

/// What happened. Stored and printed as its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// A person signed in at the login page.
    SignIn,
    /// A username of a valid shape with a wrong password, or no such user. Throttled
    /// attempts are not checked and not recorded: the throttle bounds what this costs.
    SignInFailed,
    /// A person approved a client's request (`detail.scope`).
    Consent,
    /// Tokens were revoked or deleted; `detail.cause` says why (see [`RevocationCause`]).
    TokenRevoked,
    /// A client registered itself (RFC 7591), or was read from its metadata document.
    ClientRegistered,
    /// A self-registered client replaced its metadata (RFC 7592).
    RegistrationUpdated,
    /// A self-registered client deleted itself (RFC 7592).
    RegistrationDeleted,
    /// An operator's change (command line or admin API); `detail.command` says which.
    Change,
}

impl AuditKind {
    pub const ALL: [AuditKind; 8] = [
        AuditKind::SignIn,
        AuditKind::SignInFailed,
        AuditKind::Consent,
        AuditKind::TokenRevoked,
        AuditKind::ClientRegistered,
        AuditKind::RegistrationUpdated,
        AuditKind::RegistrationDeleted,
        AuditKind::Change,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            AuditKind::SignIn => "sign_in",
            AuditKind::SignInFailed => "sign_in_failed",
            AuditKind::Consent => "consent",
            AuditKind::TokenRevoked => "token_revoked",
            AuditKind::ClientRegistered => "client_registered",
            AuditKind::RegistrationUpdated => "registration_updated",
            AuditKind::RegistrationDeleted => "registration_deleted",
            AuditKind::Change => "change",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for AuditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why tokens were revoked: `detail.cause` of a [`AuditKind::TokenRevoked`] event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationCause {
    /// A client asked at `/revoke` (RFC 7009).
    RevocationEndpoint,
    /// An authorization code was exchanged twice: its grant is revoked.
    CodeReplayed,
    /// A rotated refresh token was presented again: its family is revoked.
    RefreshReused,
    PasswordChanged,
    UserDeleted,
    ClientDeleted,
    /// A self-registered client deleted itself (RFC 7592).
    RegistrationDeleted,
    ResourceDeleted,
    /// An operator revoked every token of a user.
    UserRevokeTokens,
    /// An operator revoked every token of a client.
    ClientRevokeTokens,
}

impl RevocationCause {
    pub const fn as_str(self) -> &'static str {
        match self {
            RevocationCause::RevocationEndpoint => "revocation_endpoint",
            RevocationCause::CodeReplayed => "code_replayed",
            RevocationCause::RefreshReused => "refresh_reused",
            RevocationCause::PasswordChanged => "password_changed",
            RevocationCause::UserDeleted => "user_deleted",
            RevocationCause::ClientDeleted => "client_deleted",
            RevocationCause::RegistrationDeleted => "registration_deleted",
            RevocationCause::ResourceDeleted => "resource_deleted",
            RevocationCause::UserRevokeTokens => "user_revoke_tokens",
            RevocationCause::ClientRevokeTokens => "client_revoke_tokens",
        }
    }
}

/// Who acted. Stored as text: `cli`, `admin:<admin token id>`, `user:<username>`,
/// `client:<client id>`, or `anonymous` (a caller not yet known: a failed sign-in, an open
/// registration). The prefix comes first, so an id may contain `:`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Actor {
    /// The `tessera` command line, run by whoever can reach the database.
    Cli,
    /// The admin API, under the id of the admin token presented.
    Admin(String),
    User(String),
    Client(String),
    Anonymous,
}

impl Actor {
    pub fn parse(s: &str) -> Option<Self> {
        match s.split_once(':') {
            Some(("admin", id)) => Some(Actor::Admin(id.to_owned())),
            Some(("user", name)) => Some(Actor::User(name.to_owned())),
            Some(("client", id)) => Some(Actor::Client(id.to_owned())),
            Some(_) => None,
            None => match s {
                "cli" => Some(Actor::Cli),
                "anonymous" => Some(Actor::Anonymous),
                _ => None,
            },
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Cli => f.write_str("cli"),
            Actor::Admin(id) => write!(f, "admin:{id}"),
            Actor::User(name) => write!(f, "user:{name}"),
            Actor::Client(id) => write!(f, "client:{id}"),
            Actor::Anonymous => f.write_str("anonymous"),
        }
    }
}

impl serde::Serialize for Actor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Actor {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Actor::parse(&text).ok_or_else(|| serde::de::Error::custom("unknown actor"))
    }
}

/// One entry of the audit trail, as recorded.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuditEvent {
    pub at: UnixTime,
    pub kind: AuditKind,
    pub actor: Actor,
    /// The username concerned, if any (not the user id: a deleted user's name stays readable).
    pub user: Option<String>,
    pub client_id: Option<String>,
    /// The caller's address, where the request had one.
    pub address: Option<IpAddr>,
    /// What else there is to say: a revocation's `cause` and `count`, a consent's `scope`, a
    /// change's `command`. A JSON object; never a secret.
    pub detail: Map<String, Value>,
}

impl AuditEvent {
    pub fn new(at: UnixTime, kind: AuditKind, actor: Actor) -> Self {
        Self {
            at,
            kind,
            actor,
            user: None,
            client_id: None,
            address: None,
            detail: Map::new(),
        }
    }

    /// A [`AuditKind::TokenRevoked`] event with its cause.
    pub fn revoked(at: UnixTime, actor: Actor, cause: RevocationCause) -> Self {
        Self::new(at, AuditKind::TokenRevoked, actor).with("cause", cause.as_str())
    }

    /// An operator's [`AuditKind::Change`]: `command` is what was done, such as
    /// `user delete` or `client create`.
    pub fn change(at: UnixTime, actor: Actor, command: &str) -> Self {
        Self::new(at, AuditKind::Change, actor).with("command", command)
    }

    pub fn user(mut self, username: impl Into<String>) -> Self {
        self.user = Some(username.into());
        self
    }

    pub fn client(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    pub fn address(mut self, address: Option<IpAddr>) -> Self {
        self.address = address;
        self
    }

    /// The detail as the store keeps it: JSON text.
    pub fn detail_text(&self) -> String {
        serde_json::to_string(&self.detail).unwrap_or_default()
    }

    /// A detail read back from its JSON text; `None` if it is not a JSON object.
    pub fn detail_from_text(text: &str) -> Option<Map<String, Value>> {
        match serde_json::from_str(text).ok()? {
            Value::Object(detail) => Some(detail),
            _ => None,
        }
    }

    /// Adds `key` to the detail.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.detail.insert(key.to_owned(), value.into());
        self
    }
}

/// An event as the store keeps it: with its id, which grows in the order events were
/// appended and is never reused, so it is a cursor for reading on.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    pub id: u64,
    #[serde(flatten)]
    pub event: AuditEvent,
}

/// Which events to read, oldest first: those with an id after `after`, at or after `since`,
/// of `user` and of `client_id` where given, at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFilter {
    /// The id of the last event already read (0: from the start).
    pub after: u64,
    pub since: Option<UnixTime>,
    pub user: Option<String>,
    pub client_id: Option<String>,
    pub limit: u32,
}

impl Default for AuditFilter {
    fn default() -> Self {
        Self {
            after: 0,
            since: None,
            user: None,
            client_id: None,
            limit: 100,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_actors_read_back_from_their_stored_words() {
        for kind in AuditKind::ALL {
            assert_eq!(AuditKind::parse(kind.as_str()), Some(kind));
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                Value::from(kind.as_str())
            );
        }
        assert_eq!(AuditKind::parse("signin"), None);
        for actor in [
            Actor::Cli,
            Actor::Anonymous,
            Actor::Admin("at_1".into()),
            Actor::User("alice".into()),
            Actor::Client("https://app.example/client:x".into()),
        ] {
            assert_eq!(Actor::parse(&actor.to_string()), Some(actor.clone()));
        }
        assert_eq!(Actor::parse("root"), None);
        assert_eq!(Actor::parse("robot:1"), None);
    }

    #[test]
    fn an_event_serializes_flat_with_its_id() {
        let event = AuditEvent::revoked(
            UnixTime::from_secs(100),
            Actor::Client("c1".into()),
            RevocationCause::RefreshReused,
        )
        .user("alice")
        .client("c1")
        .address(Some("192.0.2.1".parse().unwrap()))
        .with("count", 3);
        let record = AuditRecord { id: 7, event };
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": 7, "at": 100, "kind": "token_revoked", "actor": "client:c1",
                "user": "alice", "client_id": "c1", "address": "192.0.2.1",
                "detail": {"cause": "refresh_reused", "count": 3},
            })
        );
        let back: AuditRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, record);
    }
}
