//! `GET /revocations`: the revocation stream of a registered resource server, as
//! Server-Sent Events (a Tessera extension; the format is `tessera_core::revocation`'s).

use std::convert::Infallible;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tessera_core::revocation::RevokedData;
use tessera_flow::revocation_stream::StreamItem;

use crate::LongLived;
use crate::error::WebError;
use crate::extract::{AuthorizationHeader, LastEventId, PeerIp};
use crate::state::AppState;

pub async fn revocations(
    State(state): State<AppState>,
    PeerIp(ip): PeerIp,
    AuthorizationHeader(authorization): AuthorizationHeader,
    LastEventId(last_event_id): LastEventId,
) -> Result<Response, WebError> {
    let stream = state
        .flows
        .revocation_stream(authorization.as_deref(), last_event_id.as_deref(), ip)
        .await?;
    let events = futures_util::stream::unfold(stream, |mut stream| async move {
        let item = stream.next().await?;
        Some((Ok::<_, Infallible>(event(item)), stream))
    });
    let heartbeat = KeepAlive::new().interval(state.config.revocation_heartbeat);
    let mut response = Sse::new(events).keep_alive(heartbeat).into_response();
    // The connection serves this stream alone, and no request after it.
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response.extensions_mut().insert(LongLived);
    Ok(response)
}

fn event(item: StreamItem) -> Event {
    match item {
        StreamItem::Revoked { seq, token_key } => Event::default()
            .event("revoked")
            .id(seq.to_string())
            .json_data(RevokedData::of(&token_key))
            .unwrap_or_else(|e| {
                // The guard then forgets every token: safe, if costly.
                tracing::error!(error = %e, "revocation event not encoded; sending a reset");
                reset(seq)
            }),
        StreamItem::Reset { latest } => reset(latest),
        StreamItem::Progress { seq } => Event::default().id(seq.to_string()),
    }
}

/// An event must carry data to be delivered by an `EventSource`.
fn reset(latest: u64) -> Event {
    Event::default()
        .event("reset")
        .id(latest.to_string())
        .data("{}")
}
