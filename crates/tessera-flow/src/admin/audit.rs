//! The audit trail as an operator reads it: oldest first, in pages, filtered.

use tessera_core::audit::{AuditFilter, AuditRecord};
use tessera_core::clock::UnixTime;

use crate::admin::{Admin, AdminError, Page, PageRequest};

/// Which events: at or after `since` (RFC 3339), of `user` and `client_id` where given.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub since: Option<String>,
    pub user: Option<String>,
    pub client_id: Option<String>,
    pub page: PageRequest,
}

impl Admin<'_> {
    /// A page of the audit trail. Reading it is not a change, so it records nothing.
    pub async fn audit_events(&self, query: &AuditQuery) -> Result<Page<AuditRecord>, AdminError> {
        let (limit, after) = query.page.parse()?;
        let after = match after.as_str() {
            "" => 0,
            id => id
                .parse::<u64>()
                .map_err(|_| AdminError::Invalid("after is not a cursor this API gave".into()))?,
        };
        let since = match query.since.as_deref() {
            None | Some("") => None,
            Some(text) => Some(UnixTime::parse_rfc3339(text).ok_or_else(|| {
                AdminError::Invalid("since must be an RFC 3339 time (2026-12-06T01:40:00Z)".into())
            })?),
        };
        let given = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        let filter = AuditFilter {
            after,
            since,
            user: given(&query.user),
            client_id: given(&query.client_id),
            limit: limit + 1,
        };
        let found = self.flows.store.audit_events(&filter).await?;
        let keyed = found.into_iter().map(|r| (r.id.to_string(), r)).collect();
        Ok(Page::of(keyed, limit, |(id, _)| id.as_str()).map(|(_, record)| record))
    }
}
