//! The admin API's flows (issue 28): what an operator does to clients, resources, users and
//! their tokens, over the same core rules and store methods as the command line.
//!
//! Every change goes through the function the CLI uses: `client::register` for a client's
//! rules and redirect URIs, `user::register` and `new_password_hash` for passwords (Argon2id,
//! on the hashing threads), `Store::revoke_user_tokens`, `revoke_client_tokens`,
//! `delete_user`, `delete_client` and `set_password`, which append the revocation events.
//!
//! Every change is recorded in the audit trail with actor `admin:<token id>`, the
//! [`Operator`] that authentication returns; an [`Admin`] exists only for one.
//!
//! Layout:
//! - this module: [`AdminError`], admin-token authentication, [`PageRequest`] and [`Page`].
//! - `clients`, `resources`, `users`: the operations on each, as methods of [`Admin`].
//! - `audit`: the audit trail, read in pages.

mod audit;
mod clients;
mod resources;
mod users;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tessera_core::audit::{Actor, AuditEvent, RevocationCause};
use tessera_core::registration::bearer_token;
use tessera_core::token::AdminToken;
use tessera_store::{FamilyOwner, StoreError, TokenFamily};

pub use audit::AuditQuery;
pub use clients::ClientChange;
pub use resources::ResourceChange;
pub use users::{NewUser, ProfileChange};

use crate::Flows;
use crate::hashing::Busy;

/// Items in a page unless the caller asks for fewer or more.
pub const DEFAULT_PAGE: u32 = 50;
/// Items in a page at most.
pub const MAX_PAGE: u32 = 200;
/// The longest cursor accepted (a cursor is a key of at most 2 KiB, encoded).
const MAX_CURSOR_CHARS: usize = 4096;

/// Why an admin operation failed, each kind its own HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No admin token, or one that is unknown, expired or revoked.
    #[error("a valid admin token is required")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    /// The name or identifier is taken, or the record cannot change that way.
    #[error("{0}")]
    Conflict(String),
    /// The request is well formed but breaks a rule (a redirect URI, a short password).
    #[error("{0}")]
    Invalid(String),
    /// The password-hashing queue is full: retry shortly.
    #[error(transparent)]
    Busy(#[from] Busy),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something that should not happen (no randomness).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Which page of a list: at most `limit` items after the cursor `after`.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub limit: Option<u32>,
    pub after: Option<String>,
}

impl PageRequest {
    /// The page size (1 to [`MAX_PAGE`], [`DEFAULT_PAGE`] if not given) and the key the page
    /// starts after ("" for the first page).
    fn parse(&self) -> Result<(u32, String), AdminError> {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(AdminError::Invalid(format!(
                "limit must be between 1 and {MAX_PAGE}"
            )));
        }
        let after = match self.after.as_deref() {
            None | Some("") => String::new(),
            Some(cursor) => decode_cursor(cursor)
                .ok_or_else(|| AdminError::Invalid("after is not a cursor this API gave".into()))?,
        };
        Ok((limit, after))
    }
}

fn decode_cursor(cursor: &str) -> Option<String> {
    if cursor.len() > MAX_CURSOR_CHARS {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    String::from_utf8(bytes).ok().filter(|key| !key.is_empty())
}

/// One page of a list, and the cursor of the next if there may be one.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

impl<T> Page<T> {
    /// The page of `limit` asked for, out of `limit + 1` items read: a further item means a
    /// next page, which starts after the key of this page's last item.
    fn of(mut items: Vec<T>, limit: u32, key: impl Fn(&T) -> &str) -> Self {
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next = if more {
            items.last().map(|last| URL_SAFE_NO_PAD.encode(key(last)))
        } else {
            None
        };
        Self { items, next }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next: self.next,
        }
    }
}

/// Who an admin request acts for: the id of its live admin token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator(String);

impl Operator {
    pub fn token_id(&self) -> &str {
        &self.0
    }
}

/// The admin operations of a node, done by one operator: `flows.admin(&operator)`.
pub struct Admin<'a> {
    flows: &'a Flows,
    actor: Actor,
}

impl Flows {
    pub fn admin(&self, operator: &Operator) -> Admin<'_> {
        Admin {
            flows: self,
            actor: Actor::Admin(operator.0.clone()),
        }
    }

    /// Admits the holder of a live admin token in `authorization` (`Bearer tsm_...`).
    pub async fn admin_operator(
        &self,
        authorization: Option<&[u8]>,
    ) -> Result<Operator, AdminError> {
        let Some(token) = bearer_token(authorization).map(AdminToken::new) else {
            return Err(AdminError::Unauthorized);
        };
        match self.store.find_admin_token(&token.key()).await? {
            Some(record) if record.is_live(self.now()) => Ok(Operator(record.id)),
            _ => Err(AdminError::Unauthorized),
        }
    }
}

impl Admin<'_> {
    /// A `change` event of this operator: `command` names it as the CLI's would be.
    fn change(&self, command: &str) -> AuditEvent {
        AuditEvent::change(self.flows.now(), self.actor.clone(), command)
    }

    /// A `token_revoked` event of this operator, with its cause.
    fn revoked(&self, cause: RevocationCause) -> AuditEvent {
        AuditEvent::revoked(self.flows.now(), self.actor.clone(), cause)
    }

    /// Records what was done, after it was done (see `crate::audit`).
    async fn record(&self, events: impl IntoIterator<Item = AuditEvent>) {
        for event in events {
            crate::audit::record(self.flows.store.as_ref(), event).await;
        }
    }

    /// A page of the families with active tokens of a user or a client that exists.
    async fn families(
        &self,
        owner: FamilyOwner,
        page: &PageRequest,
    ) -> Result<Page<TokenFamily>, AdminError> {
        let (limit, after) = page.parse()?;
        let found = self
            .flows
            .store
            .active_families(&owner, self.flows.now(), &after, limit + 1)
            .await?;
        Ok(Page::of(found, limit, |f| f.family_id.as_str()))
    }
}

/// The most characters a name, an email address or another short text may have.
pub const MAX_TEXT_CHARS: usize = 200;

/// Refuses a short text (a name, an email address) longer than [`MAX_TEXT_CHARS`].
fn check_length(field: &str, value: &str) -> Result<(), AdminError> {
    if value.chars().count() > MAX_TEXT_CHARS {
        return Err(AdminError::Invalid(format!(
            "{field} must have at most {MAX_TEXT_CHARS} characters"
        )));
    }
    Ok(())
}

fn not_found(what: &str) -> AdminError {
    AdminError::NotFound(format!("no such {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_carry_a_cursor_only_when_more_may_follow() {
        let page = Page::of(vec!["a", "b", "c"], 2, |s| s);
        assert_eq!(page.items, ["a", "b"]);
        let next = page.next.unwrap();
        assert_eq!(decode_cursor(&next).as_deref(), Some("b"));
        let last = Page::of(vec!["a", "b"], 2, |s| s);
        assert_eq!(last.next, None);
    }

    #[test]
    fn limits_and_cursors_are_checked() {
        let page = |limit, after: Option<&str>| PageRequest {
            limit,
            after: after.map(str::to_owned),
        };
        assert_eq!(page(None, None).parse().unwrap(), (50, String::new()));
        assert_eq!(page(Some(200), Some("")).parse().unwrap().0, 200);
        for bad in [
            page(Some(0), None),
            page(Some(201), None),
            page(None, Some("*")),
        ] {
            assert!(matches!(bad.parse(), Err(AdminError::Invalid(_))));
        }
        let cursor = URL_SAFE_NO_PAD.encode("client-7");
        assert_eq!(page(None, Some(&cursor)).parse().unwrap().1, "client-7");
    }
}
