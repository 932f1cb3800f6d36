//! Writing the audit trail from the flows.
//!
//! The flows record after the action succeeded, in a statement of its own: the session
//! exists, the tokens are revoked, the client is registered. A failure to record is then
//! logged at ERROR with the whole event and counted, and the request goes on as it would
//! have. Failing it instead would not undo what was done, and would tell the person or the
//! client that it failed when it did not (a sign-in that worked, a revocation that took).
//! The log lines are limited to a few a second, so an outage during a flood of failed
//! sign-ins cannot flood the log; each says how many were left out before it.

use tessera_core::audit::AuditEvent;
use tessera_store::Store;

use crate::logged::{Quota, loggable};

static UNRECORDED: Quota = Quota::new();

/// Appends `event` to the audit trail; a failure is logged, never returned (see above).
pub async fn record(store: &dyn Store, event: AuditEvent) {
    let Err(error) = store.append_audit_event(&event).await else {
        return;
    };
    crate::measure::audit_unrecorded();
    if let Some(left_out) = UNRECORDED.admit() {
        tracing::error!(
            %error,
            at = event.at.as_secs(),
            kind = event.kind.as_str(),
            actor = %loggable(&event.actor.to_string()),
            user = ?event.user.as_deref().map(loggable),
            client_id = ?event.client_id.as_deref().map(loggable),
            address = ?event.address,
            detail = %event.detail_text(),
            left_out,
            "audit event not recorded"
        );
    }
}
