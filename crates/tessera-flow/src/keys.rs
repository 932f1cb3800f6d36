//! ID-token signing keys: generated here, kept in the store encrypted under the operator's
//! key-encryption key (KEK), and read again by every node so that all sign with and publish
//! the same set.
//!
//! A private key leaves memory only sealed with ChaCha20-Poly1305 under the KEK, its `kid` as
//! associated data (a sealed key moved to another row does not open). The store never sees
//! the KEK. Without a KEK and without keys, OpenID Connect is off; keys without a KEK that
//! opens them stop the node at start, rather than serving tokens nobody can verify.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;
use tessera_core::clock::UnixTime;
use tessera_core::oidc::{ID_TOKEN_LIFETIME, KeyEncryptionKey, SigningAlg};
use tessera_core::random::{random_b64, random_bytes};
use tessera_store::{Store, StoreError, StoredSigningKey};

/// How long a node signs with the key set it read before reading it again, by default, so a
/// rotation reaches every node within this time.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the database holds ID-token signing keys but no key-encryption key was given \
         (TESSERA_KEY_ENCRYPTION_KEY or TESSERA_KEY_ENCRYPTION_KEY_FILE)"
    )]
    NoKeyEncryptionKey,
    #[error("signing key {0} does not open with the key-encryption key given")]
    WrongKeyEncryptionKey(String),
    #[error("signing key {0} is not a valid key")]
    Corrupt(String),
    #[error("could not generate a signing key")]
    Generate,
    #[error("could not sign the ID token")]
    Sign,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A private key ready to sign.
struct Signer {
    kid: String,
    key: EncodingKey,
}

/// The keys one node read: the newest live key per algorithm, and the published set.
#[derive(Default)]
pub struct KeySet {
    signers: HashMap<SigningAlg, Signer>,
    jwks: serde_json::Value,
    /// Every published key by `kid`, to check an ID token we signed (a logout's hint).
    verifiers: HashMap<String, (Algorithm, DecodingKey)>,
}

/// What a verified `id_token_hint` names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct HintClaims {
    pub sub: String,
    pub aud: String,
}

impl KeySet {
    /// Whether OpenID Connect is on: there is a key to sign with.
    pub fn enabled(&self) -> bool {
        !self.signers.is_empty()
    }

    /// The JWK Set document (RFC 7517 §5): every key not yet pruned, retired ones included.
    pub fn jwks(&self) -> &serde_json::Value {
        &self.jwks
    }

    /// Signs `claims` with the newest key of `alg`, or of ES256 if there is none.
    pub fn sign<T: Serialize>(&self, alg: SigningAlg, claims: &T) -> Result<String, KeyError> {
        let (alg, signer) = self
            .signers
            .get_key_value(&alg)
            .or_else(|| self.signers.get_key_value(&SigningAlg::Es256))
            .ok_or(KeyError::Sign)?;
        let mut header = Header::new(jws_alg(*alg));
        header.kid = Some(signer.kid.clone());
        jsonwebtoken::encode(&header, claims, &signer.key).map_err(|_| KeyError::Sign)
    }
}

impl KeySet {
    /// The claims of an ID token that one of these keys signed for `issuer`; its expiry is
    /// not checked (an expired hint still names its client, RP-Initiated Logout §2).
    pub fn verify_hint(&self, token: &str, issuer: &str) -> Option<HintClaims> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        let (alg, key) = self.verifiers.get(header.kid.as_deref()?)?;
        if header.alg != *alg {
            return None;
        }
        let mut validation = Validation::new(*alg);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["iss", "sub", "aud"]);
        validation.set_issuer(&[issuer]);
        jsonwebtoken::decode::<HintClaims>(token, key, &validation)
            .ok()
            .map(|data| data.claims)
    }
}

fn jws_alg(alg: SigningAlg) -> Algorithm {
    match alg {
        SigningAlg::Es256 => Algorithm::ES256,
        SigningAlg::Rs256 => Algorithm::RS256,
    }
}

/// A node's signing keys, read from the store again once they are `reload` old.
pub struct SigningKeys {
    store: Arc<dyn Store>,
    kek: Option<KeyEncryptionKey>,
    reload: Duration,
    current: RwLock<(Arc<KeySet>, Option<Instant>)>,
    reloading: tokio::sync::Mutex<()>,
}

impl SigningKeys {
    pub fn new(store: Arc<dyn Store>, kek: Option<KeyEncryptionKey>, reload: Duration) -> Self {
        Self {
            store,
            kek,
            reload,
            current: RwLock::new((Arc::new(KeySet::default()), None)),
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    /// At start: refuses keys that the KEK (or its absence) cannot open, and makes the first
    /// ES256 and RS256 keys when a KEK is given and there are none.
    pub async fn start(&self, now: UnixTime) -> Result<Arc<KeySet>, KeyError> {
        let stored = self.store.list_signing_keys().await?;
        if stored.is_empty()
            && let Some(kek) = &self.kek
        {
            for alg in SigningAlg::ALL {
                // Two nodes starting at once may both try; the loser's key is simply extra.
                self.store
                    .insert_signing_key(&generate(alg, kek, now)?)
                    .await?;
            }
            tracing::info!(
                event = "signing_keys_created",
                "ES256 and RS256 signing keys created"
            );
        }
        self.reload().await
    }

    /// The key set, read again if it is older than the reload interval.
    pub async fn current(&self) -> Result<Arc<KeySet>, KeyError> {
        {
            let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
            if current.1.is_some_and(|at| at.elapsed() < self.reload) {
                return Ok(current.0.clone());
            }
        }
        let _one_reader = self.reloading.lock().await;
        {
            let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
            if current.1.is_some_and(|at| at.elapsed() < self.reload) {
                return Ok(current.0.clone());
            }
        }
        self.reload().await
    }

    async fn reload(&self) -> Result<Arc<KeySet>, KeyError> {
        let stored = self.store.list_signing_keys().await?;
        let set = Arc::new(open_all(&stored, self.kek.as_ref())?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) =
            (set.clone(), Some(Instant::now()));
        Ok(set)
    }
}

/// Opens every stored key: the newest unretired key of each algorithm signs, all publish.
pub fn open_all(
    stored: &[StoredSigningKey],
    kek: Option<&KeyEncryptionKey>,
) -> Result<KeySet, KeyError> {
    let mut signers = HashMap::new();
    let mut verifiers = HashMap::new();
    let mut jwks = Vec::with_capacity(stored.len());
    for key in stored {
        let kek = kek.ok_or(KeyError::NoKeyEncryptionKey)?;
        let alg = SigningAlg::parse(&key.alg).ok_or_else(|| KeyError::Corrupt(key.kid.clone()))?;
        let private = open(kek, key)?;
        let encoding = match alg {
            SigningAlg::Es256 => {
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &private)
                    .map_err(|_| KeyError::Corrupt(key.kid.clone()))?;
                EncodingKey::from_ec_der(&private)
            }
            SigningAlg::Rs256 => {
                let pkcs1 =
                    pkcs1_of_pkcs8(&private).ok_or_else(|| KeyError::Corrupt(key.kid.clone()))?;
                EncodingKey::from_rsa_der(pkcs1)
            }
        };
        let jwk: serde_json::Value = serde_json::from_str(&key.public_jwk)
            .map_err(|_| KeyError::Corrupt(key.kid.clone()))?;
        let public = serde_json::from_value::<jsonwebtoken::jwk::Jwk>(jwk.clone())
            .ok()
            .and_then(|jwk| DecodingKey::from_jwk(&jwk).ok())
            .ok_or_else(|| KeyError::Corrupt(key.kid.clone()))?;
        verifiers.insert(key.kid.clone(), (jws_alg(alg), public));
        jwks.push(jwk);
        if key.retired_at.is_none() {
            // Stored oldest first: a later live key of the same algorithm takes over.
            signers.insert(
                alg,
                Signer {
                    kid: key.kid.clone(),
                    key: encoding,
                },
            );
        }
    }
    Ok(KeySet {
        signers,
        jwks: serde_json::json!({ "keys": jwks }),
        verifiers,
    })
}

/// A new key of `alg`, its private part sealed under `kek`.
pub fn generate(
    alg: SigningAlg,
    kek: &KeyEncryptionKey,
    now: UnixTime,
) -> Result<StoredSigningKey, KeyError> {
    let kid = random_b64::<12>().map_err(|_| KeyError::Generate)?;
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    let (private, public_jwk) = match alg {
        SigningAlg::Es256 => {
            let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .map_err(|_| KeyError::Generate)?;
            let private = pair.to_pkcs8v1().map_err(|_| KeyError::Generate)?;
            // The uncompressed point: 0x04, then x and y, 32 bytes each.
            let point = pair.public_key().as_ref();
            let (x, y) = (
                point.get(1..33).ok_or(KeyError::Generate)?,
                point.get(33..65).ok_or(KeyError::Generate)?,
            );
            let jwk = serde_json::json!({
                "kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y),
                "kid": kid, "use": "sig", "alg": alg.as_str(),
            });
            (private.as_ref().to_vec(), jwk)
        }
        SigningAlg::Rs256 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048)
                .map_err(|_| KeyError::Generate)?;
            let private = pair.as_der().map_err(|_| KeyError::Generate)?;
            let public = pair.public_key();
            let jwk = serde_json::json!({
                "kty": "RSA",
                "n": b64(public.modulus().big_endian_without_leading_zero()),
                "e": b64(public.exponent().big_endian_without_leading_zero()),
                "kid": kid, "use": "sig", "alg": alg.as_str(),
            });
            (private.as_ref().to_vec(), jwk)
        }
    };
    Ok(StoredSigningKey {
        encrypted_private_key: seal(kek, &kid, &private)?,
        public_jwk: jwk_text(&public_jwk),
        kid,
        alg: alg.as_str().to_owned(),
        created_at: now,
        retired_at: None,
    })
}

fn jwk_text(jwk: &serde_json::Value) -> String {
    jwk.to_string()
}

/// New keys, one per algorithm, that sign from now on; the current ones are retired and stay
/// published until the ID tokens they signed have expired.
pub async fn rotate(
    store: &dyn Store,
    kek: &KeyEncryptionKey,
    now: UnixTime,
) -> Result<Vec<StoredSigningKey>, KeyError> {
    // Refuse to rotate under a KEK that does not open the keys already there.
    open_all(&store.list_signing_keys().await?, Some(kek))?;
    let new = SigningAlg::ALL
        .into_iter()
        .map(|alg| generate(alg, kek, now))
        .collect::<Result<Vec<_>, _>>()?;
    store.rotate_signing_keys(&new, now).await?;
    Ok(new)
}

/// How long past the ID-token lifetime a retired key stays published: nodes that have not
/// read the rotation yet still sign with it, and clocks differ a little.
pub const PRUNE_MARGIN: i64 = 60;

/// Deletes the keys retired long enough that no ID token they signed is still valid.
pub async fn prune(store: &dyn Store, now: UnixTime) -> Result<u64, KeyError> {
    let retired_before = now.saturating_add(-ID_TOKEN_LIFETIME - PRUNE_MARGIN);
    Ok(store.prune_signing_keys(retired_before).await?)
}

fn cipher(kek: &KeyEncryptionKey) -> Result<LessSafeKey, KeyError> {
    UnboundKey::new(&CHACHA20_POLY1305, kek.expose())
        .map(LessSafeKey::new)
        .map_err(|_| KeyError::Generate)
}

/// The nonce, then the ciphertext and its tag.
fn seal(kek: &KeyEncryptionKey, kid: &str, private: &[u8]) -> Result<Vec<u8>, KeyError> {
    let nonce = random_bytes::<NONCE_LEN>().map_err(|_| KeyError::Generate)?;
    let mut sealed = private.to_vec();
    cipher(kek)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(kid.as_bytes()),
            &mut sealed,
        )
        .map_err(|_| KeyError::Generate)?;
    let mut out = nonce.to_vec();
    out.append(&mut sealed);
    Ok(out)
}

fn open(kek: &KeyEncryptionKey, key: &StoredSigningKey) -> Result<Vec<u8>, KeyError> {
    let wrong = || KeyError::WrongKeyEncryptionKey(key.kid.clone());
    let (nonce, sealed) = key
        .encrypted_private_key
        .split_at_checked(NONCE_LEN)
        .ok_or_else(wrong)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| wrong())?;
    let mut buffer = sealed.to_vec();
    let plain = cipher(kek)?
        .open_in_place(nonce, Aad::from(key.kid.as_bytes()), &mut buffer)
        .map_err(|_| wrong())?;
    Ok(plain.to_vec())
}

/// The RSAPrivateKey (PKCS #1) inside a PrivateKeyInfo (PKCS #8): the octet string after the
/// version and the algorithm identifier. jsonwebtoken's RSA signer takes PKCS #1 only.
fn pkcs1_of_pkcs8(der: &[u8]) -> Option<&[u8]> {
    let (tag, info, _) = der_element(der)?;
    if tag != 0x30 {
        return None;
    }
    let (_, _, rest) = der_element(info)?;
    let (_, _, rest) = der_element(rest)?;
    let (tag, private_key, _) = der_element(rest)?;
    (tag == 0x04).then_some(private_key)
}

/// One DER element: its tag, its content, and what follows it.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (bytes, rest) = rest.split_at_checked(count)?;
        let len = bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b));
        (len, rest)
    };
    let (content, rest) = rest.split_at_checked(len)?;
    Some((tag, content, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek() -> KeyEncryptionKey {
        KeyEncryptionKey::generate().unwrap().0
    }

    #[test]
    fn generated_keys_open_under_their_kek_only_and_sign() {
        let kek = kek();
        let now = UnixTime::from_secs(100);
        let keys: Vec<_> = SigningAlg::ALL
            .into_iter()
            .map(|alg| generate(alg, &kek, now).unwrap())
            .collect();
        let set = open_all(&keys, Some(&kek)).unwrap();
        assert!(set.enabled());
        assert_eq!(set.jwks()["keys"].as_array().unwrap().len(), 2);
        for alg in SigningAlg::ALL {
            let jwt = set.sign(alg, &serde_json::json!({"sub": "u"})).unwrap();
            let header: serde_json::Value = serde_json::from_slice(
                &URL_SAFE_NO_PAD
                    .decode(jwt.split('.').next().unwrap())
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(header["alg"], alg.as_str());
        }
        assert!(matches!(
            open_all(&keys, Some(&self::kek())),
            Err(KeyError::WrongKeyEncryptionKey(_))
        ));
        assert!(matches!(
            open_all(&keys, None),
            Err(KeyError::NoKeyEncryptionKey)
        ));
        // A sealed key moved under another kid does not open.
        let mut moved = keys.first().unwrap().clone();
        moved.kid = "other".into();
        assert!(open_all(&[moved], Some(&kek)).is_err());
    }

    #[test]
    fn the_newest_live_key_signs_and_retired_ones_are_published() {
        let kek = kek();
        let mut old = generate(SigningAlg::Es256, &kek, UnixTime::from_secs(1)).unwrap();
        old.retired_at = Some(UnixTime::from_secs(2));
        let new = generate(SigningAlg::Es256, &kek, UnixTime::from_secs(2)).unwrap();
        let set = open_all(&[old.clone(), new.clone()], Some(&kek)).unwrap();
        assert_eq!(set.jwks()["keys"].as_array().unwrap().len(), 2);
        // RS256 is asked for but absent: ES256 signs.
        let jwt = set.sign(SigningAlg::Rs256, &serde_json::json!({})).unwrap();
        let header: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(jwt.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["kid"], new.kid.as_str());
    }

    #[test]
    fn hints_verify_expired_or_not_but_only_ours_for_our_issuer() {
        let kek = kek();
        let keys: Vec<_> = SigningAlg::ALL
            .into_iter()
            .map(|alg| generate(alg, &kek, UnixTime::from_secs(1)).unwrap())
            .collect();
        let set = open_all(&keys, Some(&kek)).unwrap();
        let claims = serde_json::json!({"iss": "https://as", "sub": "u", "aud": "c", "exp": 2});
        for alg in SigningAlg::ALL {
            let token = set.sign(alg, &claims).unwrap();
            let hint = set.verify_hint(&token, "https://as").unwrap();
            assert_eq!((hint.sub.as_str(), hint.aud.as_str()), ("u", "c"));
            assert!(set.verify_hint(&token, "https://other").is_none());
        }
        let other = generate(SigningAlg::Es256, &kek, UnixTime::from_secs(1)).unwrap();
        let stranger = open_all(&[other], Some(&kek)).unwrap();
        let token = stranger.sign(SigningAlg::Es256, &claims).unwrap();
        assert!(set.verify_hint(&token, "https://as").is_none());
        assert!(set.verify_hint("not.a.token", "https://as").is_none());
    }

    #[test]
    fn no_keys_no_kek_is_off() {
        assert!(!open_all(&[], None).unwrap().enabled());
    }
}
