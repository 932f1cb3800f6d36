//! `/admin/v1/audit`: the audit trail, oldest first, in pages.

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tessera_core::audit::AuditRecord;
use tessera_flow::admin::{AuditQuery, Operator, Page, PageRequest};
use utoipa::{IntoParams, ToSchema};

use crate::admin::api::{AdminQuery, page};
use crate::error::{NoStoreJson, WebError};
use crate::state::AppState;

/// Which events, and which page of them.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only events at or after this RFC 3339 time (`2026-12-06T01:40:00Z`).
    pub since: Option<String>,
    /// Only events concerning this username.
    pub user: Option<String>,
    /// Only events concerning this client id.
    pub client_id: Option<String>,
    /// Events in the page (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next` cursor of the page before; absent for the first page.
    pub after: Option<String>,
}

/// One event of the audit trail. No event holds a token, code, secret or password.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditEventView {
    /// Grows in the order events were recorded; never reused.
    pub id: u64,
    /// Unix seconds.
    pub at: i64,
    /// The same moment, RFC 3339.
    pub time: String,
    /// `sign_in`, `sign_in_failed`, `consent`, `token_revoked`, `client_registered`,
    /// `registration_updated`, `registration_deleted` or `change`.
    pub kind: String,
    /// Who: `cli`, `admin:<admin token id>`, `user:<username>`, `client:<client id>` or
    /// `anonymous`.
    pub actor: String,
    pub user: Option<String>,
    pub client_id: Option<String>,
    /// The caller's address, where the request had one.
    pub address: Option<String>,
    /// The rest: a revocation's `cause` and `count`, a change's `command`, a consent's `scope`.
    #[schema(value_type = Object)]
    pub detail: serde_json::Map<String, serde_json::Value>,
}

impl From<AuditRecord> for AuditEventView {
    fn from(record: AuditRecord) -> Self {
        let event = record.event;
        Self {
            id: record.id,
            at: event.at.as_secs(),
            time: event.at.rfc3339(),
            kind: event.kind.as_str().to_owned(),
            actor: event.actor.to_string(),
            user: event.user,
            client_id: event.client_id,
            address: event.address.map(|a| a.to_string()),
            detail: event.detail,
        }
    }
}

page! {
    /// A page of audit events, oldest first.
    AuditPage of AuditEventView;
}

#[utoipa::path(get,
    operation_id = "list_audit_events", path = "/admin/v1/audit", tag = "audit", params(AuditParams),
    responses((status = 200, description = "A page of audit events, oldest first", body = AuditPage)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    AdminQuery(params): AdminQuery<AuditParams>,
) -> Result<Response, WebError> {
    let query = AuditQuery {
        since: params.since,
        user: params.user,
        client_id: params.client_id,
        page: PageRequest {
            limit: params.limit,
            after: params.after,
        },
    };
    let page = state.flows.admin(&operator).audit_events(&query).await?;
    Ok(NoStoreJson(AuditPage::from(page)).into_response())
}
