//! The key-encryption key's settings and `tessera keys`: rotate, prune and list the ID-token
//! signing keys. The keys themselves are `tessera_flow::keys`' business.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use tessera_core::clock::Clock;
use tessera_core::oidc::KeyEncryptionKey;
use tessera_store::Store;

/// The environment variable that holds the key-encryption key itself. Deliberately not a
/// flag: a command line is visible to every local user.
const KEK_ENV: &str = "TESSERA_KEY_ENCRYPTION_KEY";

#[derive(Args, Clone)]
pub(crate) struct KekArgs {
    /// A file holding the key-encryption key (32 random bytes, base64url without padding),
    /// instead of TESSERA_KEY_ENCRYPTION_KEY.
    #[arg(long, env = "TESSERA_KEY_ENCRYPTION_KEY_FILE")]
    pub(crate) key_encryption_key_file: Option<PathBuf>,
}

impl KekArgs {
    /// The key-encryption key from the environment or the file, if either is set.
    pub(crate) fn load(&self) -> Result<Option<KeyEncryptionKey>> {
        let from_env = std::env::var(KEK_ENV).ok().filter(|v| !v.is_empty());
        match (from_env, &self.key_encryption_key_file) {
            (Some(_), Some(_)) => {
                bail!("set {KEK_ENV} or --key-encryption-key-file, not both")
            }
            (Some(text), None) => Ok(Some(
                KeyEncryptionKey::parse(&text).with_context(|| format!("reading {KEK_ENV}"))?,
            )),
            (None, Some(path)) => read_kek_file(path).map(Some),
            (None, None) => Ok(None),
        }
    }
}

pub(crate) fn read_kek_file(path: &Path) -> Result<KeyEncryptionKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the key-encryption key from {}", path.display()))?;
    KeyEncryptionKey::parse(&text)
        .with_context(|| format!("reading the key-encryption key from {}", path.display()))
}

/// The key-encryption key in `path`, made (mode 0600) if the file does not exist.
pub(crate) fn kek_file_or_new(path: &Path) -> Result<KeyEncryptionKey> {
    if path.exists() {
        return read_kek_file(path);
    }
    let (kek, text) = KeyEncryptionKey::generate().context("generating a key-encryption key")?;
    write_private(path, &text)
        .with_context(|| format!("writing the key-encryption key to {}", path.display()))?;
    Ok(kek)
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, format!("{text}\n"))
}

#[derive(Subcommand)]
pub(crate) enum KeysCommand {
    /// Add new ES256 and RS256 keys that sign from now on; the current ones stay published
    /// until the ID tokens they signed have expired.
    Rotate {
        #[command(flatten)]
        kek: KekArgs,
    },
    /// Delete the retired keys whose ID tokens have all expired (the janitor does it too).
    Prune,
    /// List the signing keys (never their private parts).
    List {
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn keys(store: &dyn Store, cmd: KeysCommand) -> Result<()> {
    let now = Clock::system().now();
    match cmd {
        KeysCommand::Rotate { kek } => {
            let Some(kek) = kek.load()? else {
                bail!(
                    "rotating needs the key-encryption key ({KEK_ENV} or --key-encryption-key-file)"
                )
            };
            let new = tessera_flow::keys::rotate(store, &kek, now).await?;
            let kids: Vec<_> = new.iter().map(|key| key.kid.clone()).collect();
            let change = crate::audit::change("keys rotate").with("added", kids);
            crate::audit::record(store, [change]).await;
            for key in new {
                eprintln!("added {} key {}", key.alg, key.kid);
            }
            Ok(())
        }
        KeysCommand::Prune => {
            let pruned = tessera_flow::keys::prune(store, now).await?;
            let change = crate::audit::change("keys prune").with("pruned", pruned);
            crate::audit::record(store, [change]).await;
            eprintln!("pruned {pruned} retired keys");
            Ok(())
        }
        KeysCommand::List { json } => {
            let keys = store.list_signing_keys().await?;
            if json {
                let list: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        serde_json::json!({
                            "kid": k.kid, "alg": k.alg,
                            "created_at": k.created_at.as_secs(),
                            "retired_at": k.retired_at.map(|t| t.as_secs()),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for k in keys {
                    let state = match k.retired_at {
                        Some(at) => format!("retired at {}", at.as_secs()),
                        None => "signing".to_owned(),
                    };
                    println!(
                        "{}\t{}\tcreated {}\t{state}",
                        k.kid,
                        k.alg,
                        k.created_at.as_secs()
                    );
                }
            }
            Ok(())
        }
    }
}
