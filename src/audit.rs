//! `tessera audit`: the audit trail, printed; and the events the other commands record.
//!
//! Every command that changes something records a `change` event with actor `cli` once the
//! change is made; one that ends tokens records a `token_revoked` event with its cause too,
//! so that every revocation is found under one kind. A failure to record is reported on
//! standard error and does not fail the command: the change is made, and an exit status
//! saying otherwise would invite a script to make it twice.

use anyhow::Result;
use clap::Args;
use tessera_core::audit::{Actor, AuditEvent, AuditFilter, RevocationCause};
use tessera_core::clock::{Clock, UnixTime};
use tessera_store::Store;

#[derive(Args)]
pub(crate) struct AuditArgs {
    /// Only events at or after this moment: an RFC 3339 time (2026-12-06T01:40:00Z) or a
    /// time ago, a number with s, m, h or d (90m, 7d).
    #[arg(long, value_parser = parse_since)]
    since: Option<Since>,
    /// Only events concerning this username.
    #[arg(long)]
    user: Option<String>,
    /// Only events concerning this client id.
    #[arg(long, allow_hyphen_values = true)]
    client: Option<String>,
    /// At most this many events, oldest first: --since starts later, --after reads on.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    limit: u32,
    /// Only events after this id: the last id of the page before, to read on.
    #[arg(long, default_value_t = 0)]
    after: u64,
    /// Print exactly one JSON array of events {"id", "at", "time", "kind", "actor", "user",
    /// "client_id", "address", "detail"}.
    #[arg(long)]
    json: bool,
}

/// Where `--since` starts: a moment, or seconds before now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Since {
    At(UnixTime),
    Ago(i64),
}

fn parse_since(text: &str) -> Result<Since, String> {
    if let Some(at) = UnixTime::parse_rfc3339(text) {
        return Ok(Since::At(at));
    }
    let unit = match text.chars().last() {
        Some('s') => 1,
        Some('m') => 60,
        Some('h') => 3600,
        Some('d') => 86_400,
        _ => 0,
    };
    let number = text
        .get(..text.len().saturating_sub(1))
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse::<i64>().ok());
    match number {
        Some(n) if unit > 0 => Ok(Since::Ago(n.saturating_mul(unit))),
        _ => Err(
            "expected an RFC 3339 time (2026-12-06T01:40:00Z) or a number with s, m, h \
                  or d (90m, 7d)"
                .into(),
        ),
    }
}

pub(crate) async fn audit(store: &dyn Store, args: AuditArgs) -> Result<()> {
    let since = args.since.map(|since| match since {
        Since::At(at) => at,
        Since::Ago(seconds) => Clock::system().now().saturating_add(-seconds),
    });
    let filter = AuditFilter {
        after: args.after,
        since,
        user: args.user,
        client_id: args.client,
        limit: args.limit,
    };
    let records = store.audit_events(&filter).await?;
    if args.json {
        let mut list = Vec::with_capacity(records.len());
        for record in &records {
            let mut value = serde_json::to_value(record)?;
            if let Some(object) = value.as_object_mut() {
                object.insert("time".into(), record.event.at.rfc3339().into());
            }
            list.push(value);
        }
        println!("{}", serde_json::Value::Array(list));
        return Ok(());
    }
    for record in &records {
        let event = &record.event;
        let or_dash = |v: Option<&str>| v.unwrap_or("-").to_owned();
        println!(
            "{}\t{}\t{}\t{}\tuser={}\tclient={}\taddress={}\t{}",
            event.at.rfc3339(),
            record.id,
            event.kind,
            event.actor,
            or_dash(event.user.as_deref()),
            or_dash(event.client_id.as_deref()),
            event.address.map_or("-".to_owned(), |a| a.to_string()),
            event.detail_text(),
        );
    }
    Ok(())
}

/// A `change` event of the command line: `command` is what was run, such as `user delete`.
pub(crate) fn change(command: &str) -> AuditEvent {
    AuditEvent::change(Clock::system().now(), Actor::Cli, command)
}

/// A `token_revoked` event of the command line, with its cause.
pub(crate) fn revoked(cause: RevocationCause) -> AuditEvent {
    AuditEvent::revoked(Clock::system().now(), Actor::Cli, cause)
}

/// Records `events`, in order; see the module's comment for a failure.
pub(crate) async fn record(store: &dyn Store, events: impl IntoIterator<Item = AuditEvent>) {
    for event in events {
        if let Err(e) = store.append_audit_event(&event).await {
            eprintln!(
                "warning: done, but not recorded in the audit trail ({} {}): {e}",
                event.kind,
                event.detail_text()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_a_moment_or_a_time_ago() {
        assert_eq!(
            parse_since("2026-12-06T01:40:00Z"),
            Ok(Since::At(UnixTime::from_secs(1_796_521_200)))
        );
        assert_eq!(parse_since("90s"), Ok(Since::Ago(90)));
        assert_eq!(parse_since("90m"), Ok(Since::Ago(5400)));
        assert_eq!(parse_since("1h"), Ok(Since::Ago(3600)));
        assert_eq!(parse_since("7d"), Ok(Since::Ago(604_800)));
        for bad in ["", "d", "7", "7w", "-7d", "1.5h", "7 d", "2026-12-06"] {
            assert!(parse_since(bad).is_err(), "{bad}");
        }
    }
}
