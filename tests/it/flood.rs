//! Issue 24's flood of wrong client secrets, against `tessera serve` as a separate process:
//! 600 connections from 60 loopback addresses, while a person signs in and a new client asks
//! for its first token. Neither may wait behind the flood, and the server's memory stays
//! bounded.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::both_backends;
use crate::cli::{Node, create_client, tessera};
use crate::helpers::{Backend, fresh_database};
use crate::person::Person;

both_backends!(issue_24_wrong_secrets_from_many_addresses_starve_no_one);

const ADDRESSES: u8 = 60;
const CONNECTIONS_PER_ADDRESS: usize = 10;
const FLOOD: Duration = Duration::from_secs(8);

fn http_from(address: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(address)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The largest resident size the process has had, in MB.
fn peak_rss_mb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb / 1024
}

async fn issue_24_wrong_secrets_from_many_addresses_starve_no_one(backend: Backend) {
    let _alone = crate::machine::load_alone().await;
    let Some(url) = fresh_database(backend).await else {
        return;
    };
    let migrated = tessera(&url, &["migrate"]).await;
    assert!(migrated.status.success());
    let victim = create_client(&url, "resource server").await.id;
    let newcomer = create_client(&url, "new client").await;
    let mut create = tokio::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["user", "create", "alice", "--password-stdin"])
        .env("TESSERA_DATABASE_URL", &url)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = create.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, b"correct horse battery\n")
        .await
        .unwrap();
    drop(stdin);
    assert!(create.wait().await.unwrap().success());

    let node = Node::start(&url).await;
    let pid = node.child.id().unwrap();
    let token_url = format!("{}/token", node.base);
    let stop_at = Instant::now() + FLOOD;
    let mut flood = tokio::task::JoinSet::new();
    for a in 1..=ADDRESSES {
        let http = http_from(IpAddr::from([127, 0, 1, a]));
        for c in 0..CONNECTIONS_PER_ADDRESS {
            let (http, token_url, victim) = (http.clone(), token_url.clone(), victim.clone());
            flood.spawn(async move {
                let mut answered = Vec::new();
                let mut n = 0u32;
                while Instant::now() < stop_at && n < 10_000 {
                    n += 1;
                    let sent = http
                        .post(&token_url)
                        .basic_auth(&victim, Some(format!("tss_wrong-{a}-{c}-{n}")))
                        .form(&[("grant_type", "client_credentials")])
                        .send()
                        .await;
                    match sent {
                        Ok(r) => answered.push(r.status().as_u16()),
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
                answered
            });
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A person signs in, from an address of their own.
    let person = Person::at(&node.base);
    let started = Instant::now();
    let page = person.get("/login").await;
    let signed_in = person.log_in(&page, "alice", "correct horse battery").await;
    let sign_in_took = started.elapsed();
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);

    // A client that never authenticated before asks for its first token.
    let started = Instant::now();
    let first = http_from(IpAddr::from([127, 0, 2, 1]))
        .post(&token_url)
        .basic_auth(&newcomer.id, newcomer.secret.as_deref())
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    let first_took = started.elapsed();
    let first_status = first.status().as_u16();

    let statuses: Vec<u16> = flood.join_all().await.into_iter().flatten().collect();
    let peak = peak_rss_mb(pid);
    assert!(
        sign_in_took < Duration::from_secs(2),
        "sign-in took {sign_in_took:?}"
    );
    assert!(
        [200, 429, 503].contains(&first_status) && first_took < Duration::from_secs(2),
        "the first token request: {first_status} after {first_took:?}"
    );
    assert!(
        statuses.len() > 600,
        "the flood sent {} requests",
        statuses.len()
    );
    assert!(
        statuses.iter().all(|s| [401, 429, 503].contains(s)),
        "unexpected answers: {:?}",
        statuses
            .iter()
            .filter(|s| ![401, 429, 503].contains(*s))
            .collect::<Vec<_>>()
    );
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert!(
        checked <= 60,
        "{checked} wrong secrets were hashed; the throttle allows 30"
    );
    assert!(peak < 150, "the server's peak RSS was {peak} MB");
}
