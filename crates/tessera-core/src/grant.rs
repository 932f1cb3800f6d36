//! The token endpoint's grants (RFC 6749 §4 and §6), as sans-IO decisions.
//!
//! The server authenticates the client and loads records; the functions here decide what may
//! be issued. Grants are an enum so that adding one is a compile error everywhere it matters.

use serde::Serialize;

use crate::client::{Client, GrantType};
use crate::clock::UnixTime;
use crate::error::OAuthError;
use crate::form::FormParams;
use crate::ids::{ClientId, FamilyId, UserId};
use crate::pkce::{CodeChallenge, CodeVerifier};
use crate::resource::{Audience, requested_audience};
use crate::scope::Scope;
use crate::token::{
    AccessToken, AuthorizationCode, RawToken, RefreshToken, TokenKey, TokenKind, TokenRecord,
};

/// A parsed token request, one variant per supported `grant_type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRequest {
    ClientCredentials {
        scope: Option<Scope>,
        resources: Audience,
    },
    AuthorizationCode {
        code: AuthorizationCode,
        redirect_uri: Option<String>,
        code_verifier: Option<String>,
        resources: Audience,
    },
    RefreshToken {
        refresh_token: RefreshToken,
        scope: Option<Scope>,
        resources: Audience,
    },
}

impl TokenRequest {
    pub fn parse(form: &FormParams) -> Result<Self, OAuthError> {
        let grant_type = form
            .get("grant_type")
            .ok_or_else(|| OAuthError::invalid_request("missing grant_type"))?;
        let scope = match form.get("scope") {
            Some(s) => Some(
                Scope::parse(s)
                    .map_err(|e| OAuthError::InvalidScope(format!("malformed scope: {e}")))?,
            ),
            None => None,
        };
        let required = |name: &str| {
            form.get(name)
                .map(str::to_owned)
                .ok_or_else(|| OAuthError::invalid_request(format!("missing {name}")))
        };
        let grant = GrantType::parse(grant_type);
        let resources = match grant {
            Some(_) => requested_audience(form.get_all("resource"))?,
            None => Audience::default(),
        };
        match grant {
            Some(GrantType::ClientCredentials) => Ok(Self::ClientCredentials { scope, resources }),
            Some(GrantType::AuthorizationCode) => Ok(Self::AuthorizationCode {
                code: AuthorizationCode::new(required("code")?),
                redirect_uri: form.get("redirect_uri").map(str::to_owned),
                code_verifier: form.get("code_verifier").map(str::to_owned),
                resources,
            }),
            Some(GrantType::RefreshToken) => Ok(Self::RefreshToken {
                refresh_token: RefreshToken::new(required("refresh_token")?),
                scope,
                resources,
            }),
            None => Err(OAuthError::UnsupportedGrantType(format!(
                "grant_type `{grant_type}` is not supported"
            ))),
        }
    }

    pub fn grant_type(&self) -> GrantType {
        match self {
            Self::ClientCredentials { .. } => GrantType::ClientCredentials,
            Self::AuthorizationCode { .. } => GrantType::AuthorizationCode,
            Self::RefreshToken { .. } => GrantType::RefreshToken,
        }
    }
}

/// Checks that `client` may use `grant` at all (RFC 6749 §5.2 `unauthorized_client`).
pub fn ensure_grant_allowed(client: &Client, grant: GrantType) -> Result<(), OAuthError> {
    if client.allows_grant(grant) {
        Ok(())
    } else {
        Err(OAuthError::UnauthorizedClient(format!(
            "this client is not allowed to use the {grant} grant"
        )))
    }
}

/// The scope to grant: the requested one if the client may have all of it, else the client's
/// registered scope when nothing was requested (RFC 6749 §3.3 lets the server pick a default).
pub fn granted_scope(client: &Client, requested: Option<&Scope>) -> Result<Scope, OAuthError> {
    match requested {
        None => Ok(client.scope.clone()),
        Some(req) if req.is_subset(&client.scope) => Ok(req.clone()),
        Some(_) => Err(OAuthError::InvalidScope(
            "the requested scope exceeds what this client may request".into(),
        )),
    }
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TokenResponse {
    pub access_token: AccessToken,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<RefreshToken>,
    pub scope: String,
    /// OpenID Connect: the signed ID token of a code exchange whose scope has `openid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

/// Token lifetimes in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    pub access: i64,
    /// A grant's whole life, from sign-in: rotation never extends it.
    pub refresh: i64,
    /// How long after a rotation the same client may present the rotated refresh token
    /// again and get a fresh pair (a response lost on the way, two tabs); 0, the default,
    /// treats any second use as theft.
    pub refresh_grace: i64,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            access: 3600,
            refresh: 30 * 24 * 3600,
            refresh_grace: 0,
        }
    }
}

/// How long an authorization code may wait to be redeemed (RFC 6749 §4.1.2 recommends at
/// most ten minutes; a client redeems at once, so one minute leaves ample slack).
pub const CODE_LIFETIME: i64 = 60;

/// An authorization code as stored, under its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationCodeRecord {
    pub hash: TokenKey,
    pub client_id: ClientId,
    pub user_id: UserId,
    pub redirect_uri: String,
    pub redirect_uri_given: bool,
    pub scope: Scope,
    pub code_challenge: Option<String>,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
    /// Set once, when the code is exchanged; a second exchange is an attack.
    pub redeemed_at: Option<UnixTime>,
    /// The family of the tokens the code is exchanged for, so a replay can revoke them.
    pub family_id: FamilyId,
    /// The resources the grant is for, decided at the authorization request.
    pub audience: Audience,
    /// The authorization request's `nonce`, repeated in the ID token (OIDC Core §3.1.2.1).
    pub nonce: Option<String>,
    /// When the person signed in, for the ID token's `auth_time`.
    pub auth_time: Option<UnixTime>,
}

/// Checks a token request against the code it presents (RFC 6749 §4.1.3, RFC 7636 §4.6).
/// Whether the code was already redeemed is the store's atomic decision, not this one's.
pub fn check_code(
    code: &AuthorizationCodeRecord,
    client: &Client,
    redirect_uri: Option<&str>,
    code_verifier: Option<&str>,
    now: UnixTime,
) -> Result<(), OAuthError> {
    let invalid = |why: &str| Err(OAuthError::InvalidGrant(why.into()));
    // Another client's code is answered like an unknown one: the error must not tell a
    // client anything about codes that are not its own.
    if code.client_id != client.id {
        return invalid("unknown, expired or used authorization code");
    }
    if now >= code.expires_at {
        return invalid("the code has expired");
    }
    match redirect_uri {
        Some(uri) if uri != code.redirect_uri => {
            return invalid("redirect_uri differs from the authorization request");
        }
        None if code.redirect_uri_given => {
            return invalid("redirect_uri is required: the authorization request had one");
        }
        _ => {}
    }
    match (&code.code_challenge, code_verifier) {
        (Some(challenge), Some(verifier)) => {
            let verifier = CodeVerifier::parse(verifier)?;
            if !CodeChallenge::from_stored(challenge.clone()).is_satisfied_by(&verifier) {
                return invalid("code_verifier does not match the code_challenge");
            }
        }
        (Some(_), None) => return invalid("code_verifier is required"),
        // RFC 9700 §2.1.1: a verifier without a challenge is refused, or PKCE downgrade
        // attacks would pass unnoticed.
        (None, Some(_)) => return invalid("code_verifier sent but no code_challenge was"),
        (None, None) => {}
    }
    Ok(())
}

/// What to do with a presented refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshCheck {
    /// Rotate it: issue a new pair with this scope in the same family.
    Rotate { scope: Scope },
    /// It was rotated moments ago, within the grace period, and comes from its own client:
    /// issue a fresh pair with this scope; the family lives on.
    RotateAgain { scope: Scope },
    /// It was already rotated: someone replays it. Revoke the family and refuse.
    Reused,
}

/// Checks a refresh request (RFC 6749 §6) against the stored refresh token.
pub fn check_refresh(
    record: &TokenRecord,
    client: &Client,
    requested: Option<&Scope>,
    grace: i64,
    now: UnixTime,
) -> Result<RefreshCheck, OAuthError> {
    let invalid = |why: &str| Err(OAuthError::InvalidGrant(why.into()));
    if record.kind != TokenKind::Refresh || record.client_id != client.id {
        return invalid("unknown refresh token");
    }
    if record.revoked_at.is_some() || now >= record.expires_at {
        return invalid("the refresh token is no longer valid");
    }
    let within_grace = record
        .rotated_at
        .map(|at| grace > 0 && now.seconds_since(at) <= grace);
    if within_grace == Some(false) {
        return Ok(RefreshCheck::Reused);
    }
    let scope = match requested {
        None => record.scope.clone(),
        Some(s) if s.is_subset(&record.scope) => s.clone(),
        Some(_) => {
            return Err(OAuthError::InvalidScope(
                "a refresh may narrow the scope, never widen it".into(),
            ));
        }
    };
    Ok(match within_grace {
        Some(_) => RefreshCheck::RotateAgain { scope },
        None => RefreshCheck::Rotate { scope },
    })
}

/// Newly minted tokens: the response for the client and the records for the store.
#[derive(Debug)]
pub struct Minted {
    pub response: TokenResponse,
    pub records: Vec<TokenRecord>,
}

/// What the tokens of one grant are about.
#[derive(Debug, Clone)]
pub struct TokenSubject<'a> {
    pub client_id: &'a ClientId,
    /// The user, or `None` for the client itself.
    pub user_id: Option<&'a UserId>,
    pub scope: Scope,
    /// The grant's family (see [`TokenRecord::family_id`]); `None` for client_credentials.
    pub family_id: Option<&'a FamilyId>,
    /// When the grant ends, whatever the lifetimes say: a refresh rotates the pair, it does
    /// not extend the sign-in. `None` for a new grant (it ends a refresh lifetime from now).
    pub grant_ends_at: Option<UnixTime>,
    /// The access token's audience.
    pub audience: Audience,
    /// The refresh token's audience: the whole grant's, which a narrowed access token does
    /// not narrow (RFC 8707 §2.2).
    pub grant_audience: Audience,
}

/// Mints an access token, and a refresh token when `with_refresh`.
pub fn mint_tokens(
    subject: &TokenSubject<'_>,
    lifetimes: Lifetimes,
    with_refresh: bool,
    now: UnixTime,
) -> Result<Minted, getrandom::Error> {
    let ends_at = |ttl: i64| {
        let natural = now.saturating_add(ttl);
        subject
            .grant_ends_at
            .map_or(natural, |end| natural.min(end))
    };
    let record = |kind: TokenKind, token: &RawToken, ttl: i64, audience: &Audience| TokenRecord {
        hash: token.key(),
        kind,
        client_id: subject.client_id.clone(),
        subject: subject.user_id.cloned(),
        scope: subject.scope.clone(),
        issued_at: now,
        expires_at: ends_at(ttl),
        revoked_at: None,
        rotated_at: None,
        family_id: subject.family_id.cloned(),
        audience: audience.clone(),
        username: None,
    };
    let access = RawToken::generate(TokenKind::Access)?;
    let mut records = vec![record(
        TokenKind::Access,
        &access,
        lifetimes.access,
        &subject.audience,
    )];
    let refresh = if with_refresh {
        let refresh = RawToken::generate(TokenKind::Refresh)?;
        records.push(record(
            TokenKind::Refresh,
            &refresh,
            lifetimes.refresh,
            &subject.grant_audience,
        ));
        Some(RefreshToken::from(refresh))
    } else {
        None
    };
    Ok(Minted {
        response: TokenResponse {
            access_token: AccessToken::from(access),
            token_type: "Bearer",
            expires_in: ends_at(lifetimes.access).seconds_since(now),
            refresh_token: refresh,
            scope: subject.scope.to_string(),
            id_token: None,
        },
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ClientRegistration, register};

    fn client() -> Client {
        register(
            &ClientRegistration {
                name: "m2m".into(),
                scope: "api read".into(),
                ..Default::default()
            },
            UnixTime::from_secs(0),
        )
        .unwrap()
        .client
    }

    fn check(form: &[(&str, &str)], want: Result<Scope, &str>) {
        let c = client();
        let got =
            TokenRequest::parse(&FormParams::from_pairs(form.iter().copied())).and_then(|req| {
                ensure_grant_allowed(&c, req.grant_type())?;
                match req {
                    TokenRequest::ClientCredentials { scope, .. } => {
                        granted_scope(&c, scope.as_ref())
                    }
                    _ => Err(OAuthError::ServerError),
                }
            });
        assert_eq!(got.map_err(|e| e.code()), want, "{form:?}");
    }

    #[test]
    fn client_credentials_decisions() {
        let s = |x| Scope::parse(x).unwrap();
        check(&[("grant_type", "client_credentials")], Ok(s("api read")));
        check(
            &[("grant_type", "client_credentials"), ("scope", "api")],
            Ok(s("api")),
        );
        check(
            &[("grant_type", "client_credentials"), ("scope", "api admin")],
            Err("invalid_scope"),
        );
        check(
            &[("grant_type", "client_credentials"), ("scope", "a  b")],
            Err("invalid_scope"),
        );
        check(&[], Err("invalid_request"));
        check(&[("grant_type", "password")], Err("unsupported_grant_type"));
        check(&[("grant_type", "implicit")], Err("unsupported_grant_type"));
        check(
            &[("grant_type", "authorization_code")],
            Err("invalid_request"),
        );
        check(&[("grant_type", "refresh_token")], Err("invalid_request"));
        check(
            &[("grant_type", "authorization_code"), ("code", "x")],
            Err("unauthorized_client"),
        );
    }

    fn code_record(client: &Client) -> AuthorizationCodeRecord {
        AuthorizationCodeRecord {
            hash: TokenKey::of("tsc_x"),
            client_id: client.id.clone(),
            user_id: "u1".into(),
            redirect_uri: "https://app.example/cb".into(),
            redirect_uri_given: true,
            scope: Scope::parse("api").unwrap(),
            code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
            issued_at: UnixTime::from_secs(100),
            expires_at: UnixTime::from_secs(160),
            redeemed_at: None,
            family_id: "f".into(),
            audience: Audience::default(),
            nonce: None,
            auth_time: None,
        }
    }

    #[test]
    fn code_checks() {
        let c = client();
        let code = code_record(&c);
        let v = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let uri = "https://app.example/cb";
        assert_eq!(
            check_code(&code, &c, Some(uri), Some(v), UnixTime::from_secs(159)),
            Ok(())
        );
        let bad = |r: Result<(), OAuthError>| r.map_err(|e| e.code());
        assert_eq!(
            bad(check_code(
                &code,
                &c,
                Some(uri),
                Some(v),
                UnixTime::from_secs(160)
            )),
            Err("invalid_grant")
        );
        assert_eq!(
            bad(check_code(
                &code,
                &c,
                None,
                Some(v),
                UnixTime::from_secs(120)
            )),
            Err("invalid_grant")
        );
        assert_eq!(
            bad(check_code(
                &code,
                &c,
                Some("https://app.example/cb/"),
                Some(v),
                UnixTime::from_secs(120)
            )),
            Err("invalid_grant")
        );
        assert_eq!(
            bad(check_code(
                &code,
                &c,
                Some(uri),
                None,
                UnixTime::from_secs(120)
            )),
            Err("invalid_grant")
        );
        assert_eq!(
            bad(check_code(
                &code,
                &c,
                Some(uri),
                Some(&"a".repeat(43)),
                UnixTime::from_secs(120)
            )),
            Err("invalid_grant")
        );
        let other = Client {
            id: "other".into(),
            ..c.clone()
        };
        assert_eq!(
            bad(check_code(
                &code,
                &other,
                Some(uri),
                Some(v),
                UnixTime::from_secs(120)
            )),
            Err("invalid_grant")
        );
        let no_pkce = AuthorizationCodeRecord {
            code_challenge: None,
            redirect_uri_given: false,
            ..code
        };
        assert_eq!(
            check_code(&no_pkce, &c, None, None, UnixTime::from_secs(120)),
            Ok(())
        );
        assert_eq!(
            bad(check_code(
                &no_pkce,
                &c,
                None,
                Some(v),
                UnixTime::from_secs(120)
            )),
            Err("invalid_grant")
        );
    }

    #[test]
    fn token_requests_and_responses_redact_their_secrets_in_debug() {
        let c = client();
        let subject = TokenSubject {
            client_id: &c.id,
            user_id: Some(&"u1".into()),
            scope: Scope::parse("api").unwrap(),
            family_id: Some(&"f".into()),
            grant_ends_at: None,
            audience: Audience::default(),
            grant_audience: Audience::default(),
        };
        let minted = mint_tokens(
            &subject,
            Lifetimes::default(),
            true,
            UnixTime::from_secs(1000),
        )
        .unwrap();
        let access = minted.response.access_token.expose().to_owned();
        let refresh = minted.response.refresh_token.clone().unwrap();
        let debug = format!("{minted:?}");
        assert!(
            !debug.contains(&access) && !debug.contains(refresh.expose()),
            "{debug}"
        );
        let json = serde_json::to_value(&minted.response).unwrap();
        assert_eq!(json["access_token"], access.as_str());
        assert_eq!(json["refresh_token"], refresh.expose());

        let form = [
            ("grant_type", "authorization_code"),
            ("code", "tsc_secret-code"),
        ];
        let request = TokenRequest::parse(&FormParams::from_pairs(form)).unwrap();
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", "tsr_secret"),
        ];
        let refresh_request = TokenRequest::parse(&FormParams::from_pairs(form)).unwrap();
        for debug in [format!("{request:?}"), format!("{refresh_request:?}")] {
            assert!(!debug.contains("secret"), "{debug}");
        }
    }

    #[test]
    fn a_rotated_token_may_rotate_again_only_within_the_grace_period() {
        let c = client();
        let (user, family) = ("u1".into(), "f".into());
        let subject = TokenSubject {
            client_id: &c.id,
            user_id: Some(&user),
            scope: Scope::parse("api").unwrap(),
            family_id: Some(&family),
            grant_ends_at: None,
            audience: Audience::default(),
            grant_audience: Audience::default(),
        };
        let at = UnixTime::from_secs;
        let minted = mint_tokens(&subject, Lifetimes::default(), true, at(1000)).unwrap();
        let mut record = minted.records[1].clone();
        record.rotated_at = Some(at(1010));
        let api = Scope::parse("api").unwrap();
        let again = Ok(RefreshCheck::RotateAgain { scope: api });
        assert_eq!(check_refresh(&record, &c, None, 30, at(1040)), again);
        assert_eq!(
            check_refresh(&record, &c, None, 30, at(1041)),
            Ok(RefreshCheck::Reused)
        );
        assert_eq!(
            check_refresh(&record, &c, None, 0, at(1010)),
            Ok(RefreshCheck::Reused)
        );
        let other = Client {
            id: "other".into(),
            ..c.clone()
        };
        let refused = check_refresh(&record, &other, None, 30, at(1011));
        assert_eq!(refused.unwrap_err().code(), "invalid_grant");
    }

    #[test]
    fn tokens_of_a_grant_never_outlive_it() {
        let c = client();
        let (user, family) = ("u1".into(), "f".into());
        let subject = TokenSubject {
            client_id: &c.id,
            user_id: Some(&user),
            scope: Scope::parse("api").unwrap(),
            family_id: Some(&family),
            grant_ends_at: Some(UnixTime::from_secs(1_100)),
            audience: Audience::default(),
            grant_audience: Audience::default(),
        };
        let lifetimes = Lifetimes {
            access: 3600,
            refresh: 30 * 24 * 3600,
            refresh_grace: 0,
        };
        let now = UnixTime::from_secs(1_000);
        let minted = mint_tokens(&subject, lifetimes, true, now).unwrap();
        for record in &minted.records {
            assert_eq!(record.expires_at, UnixTime::from_secs(1_100), "{record:?}");
        }
        assert_eq!(minted.response.expires_in, 100);
        let unbounded = TokenSubject {
            grant_ends_at: None,
            audience: Audience::default(),
            grant_audience: Audience::default(),
            ..subject
        };
        let minted = mint_tokens(&unbounded, lifetimes, true, now).unwrap();
        assert_eq!(minted.records[0].expires_at, now + 3600);
        assert_eq!(minted.records[1].expires_at, now + 30 * 24 * 3600);
        assert_eq!(minted.response.expires_in, 3600);
    }

    #[test]
    fn refresh_checks() {
        let c = client();
        let token = RawToken::generate(TokenKind::Refresh).unwrap();
        let subject = TokenSubject {
            client_id: &c.id,
            user_id: Some(&"u1".into()),
            scope: Scope::parse("api read").unwrap(),
            family_id: Some(&"f".into()),
            grant_ends_at: None,
            audience: Audience::default(),
            grant_audience: Audience::default(),
        };
        let minted = mint_tokens(
            &subject,
            Lifetimes::default(),
            true,
            UnixTime::from_secs(1000),
        )
        .unwrap();
        assert_eq!(minted.records.len(), 2);
        assert!(minted.response.refresh_token.is_some());
        let mut record = minted.records[1].clone();
        assert_ne!(record.hash, token.key());
        let narrow = Scope::parse("api").unwrap();
        assert_eq!(
            check_refresh(&record, &c, Some(&narrow), 0, UnixTime::from_secs(1001)),
            Ok(RefreshCheck::Rotate {
                scope: narrow.clone()
            })
        );
        let wide = Scope::parse("api read admin").unwrap();
        assert_eq!(
            check_refresh(&record, &c, Some(&wide), 0, UnixTime::from_secs(1001))
                .unwrap_err()
                .code(),
            "invalid_scope"
        );
        record.rotated_at = Some(UnixTime::from_secs(1002));
        assert_eq!(
            check_refresh(&record, &c, None, 0, UnixTime::from_secs(1003)),
            Ok(RefreshCheck::Reused)
        );
        record.revoked_at = Some(UnixTime::from_secs(1004));
        assert_eq!(
            check_refresh(&record, &c, None, 0, UnixTime::from_secs(1005))
                .unwrap_err()
                .code(),
            "invalid_grant"
        );
        let access = &minted.records[0];
        assert_eq!(
            check_refresh(access, &c, None, 0, UnixTime::from_secs(1001))
                .unwrap_err()
                .code(),
            "invalid_grant"
        );
    }
}
