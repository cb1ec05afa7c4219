//! Verifying the ID token an invitee signs in with: OpenID Connect discovery, the issuer's JWKS,
//! RS/ES/PS signatures, issuer, audience and expiry.
//!
//! Keys are fetched on first use and again when a token names a key id the cache lacks (the
//! issuer rotated its keys), at most once every ten seconds. Expiry is checked against the
//! portal's own clock, the same clock that decides when invitations expire.

use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use tokio::sync::RwLock;

/// The identity an ID token proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    /// The Microsoft 365 tenant (`tid` claim).
    pub tenant_id: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
}

impl Identity {
    /// A stable key for this identity across sign-ins.
    pub fn key(&self) -> String {
        format!("{}|{}", self.issuer, self.subject)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("fetch the OpenID configuration of {issuer}")]
    Discovery {
        issuer: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "the OpenID configuration at {url} names issuer {found:?}, not the configured {expected:?}"
    )]
    IssuerMismatch {
        url: String,
        expected: String,
        found: String,
    },
    #[error("fetch the signing keys from {url}")]
    Jwks {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the ID token is not a well-formed JWT: {0}")]
    Malformed(String),
    #[error("the ID token was signed with key {0:?}, which the issuer does not publish")]
    UnknownKey(String),
    #[error("the ID token is not valid: {0}")]
    Invalid(String),
    #[error("the ID token expired; sign in again")]
    Expired,
}

impl OidcError {
    /// Whether the fault is the identity provider's (unreachable, misconfigured) rather than the
    /// token's.
    pub fn is_provider_fault(&self) -> bool {
        matches!(
            self,
            OidcError::Discovery { .. } | OidcError::IssuerMismatch { .. } | OidcError::Jwks { .. }
        )
    }
}

#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

#[derive(Debug, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    exp: i64,
    #[serde(default)]
    tid: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    preferred_username: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

struct CachedKeys {
    keys: JwkSet,
    fetched_at: Instant,
}

pub struct OidcVerifier {
    issuer: String,
    audience: String,
    http: reqwest::Client,
    keys: RwLock<Option<CachedKeys>>,
}

const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(10);
const CLOCK_SKEW_SECONDS: i64 = 60;

impl OidcVerifier {
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        OidcVerifier {
            issuer: issuer.into(),
            audience: audience.into(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("a default HTTP client builds"),
            keys: RwLock::new(None),
        }
    }

    /// Verifies `id_token` and returns who it proves, checking expiry against `now_millis`.
    pub async fn verify(&self, id_token: &str, now_millis: i64) -> Result<Identity, OidcError> {
        let header = decode_header(id_token).map_err(|e| OidcError::Malformed(e.to_string()))?;
        if !matches!(
            header.alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
                | Algorithm::ES256
                | Algorithm::ES384
        ) {
            return Err(OidcError::Invalid(format!(
                "signature algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let kid = header.kid.clone().unwrap_or_default();
        let jwk = self.key(&kid).await?;
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|e| OidcError::Invalid(format!("the issuer's key {kid:?}: {e}")))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["iss", "aud", "sub", "exp"]);
        // Expiry is checked below against the portal's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let claims = decode::<Claims>(id_token, &key, &validation)
            .map_err(|e| OidcError::Invalid(e.to_string()))?
            .claims;
        if claims.exp + CLOCK_SKEW_SECONDS < now_millis / 1000 {
            return Err(OidcError::Expired);
        }
        Ok(Identity {
            issuer: claims.iss,
            subject: claims.sub,
            tenant_id: claims.tid,
            email: claims.email.or(claims.preferred_username),
            name: claims.name,
        })
    }

    async fn key(&self, kid: &str) -> Result<Jwk, OidcError> {
        if let Some(cached) = self.keys.read().await.as_ref()
            && let Some(jwk) = find_key(&cached.keys, kid)
        {
            return Ok(jwk);
        }
        let mut cache = self.keys.write().await;
        let stale = cache
            .as_ref()
            .is_none_or(|c| c.fetched_at.elapsed() >= REFETCH_AT_MOST_EVERY);
        if stale {
            let keys = self.fetch_keys().await?;
            *cache = Some(CachedKeys {
                keys,
                fetched_at: Instant::now(),
            });
        }
        cache
            .as_ref()
            .and_then(|c| find_key(&c.keys, kid))
            .ok_or_else(|| OidcError::UnknownKey(kid.to_owned()))
    }

    async fn fetch_keys(&self) -> Result<JwkSet, OidcError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let discovery: Discovery = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|source| OidcError::Discovery {
                issuer: self.issuer.clone(),
                source,
            })?
            .json()
            .await
            .map_err(|source| OidcError::Discovery {
                issuer: self.issuer.clone(),
                source,
            })?;
        if discovery.issuer.trim_end_matches('/') != self.issuer.trim_end_matches('/') {
            return Err(OidcError::IssuerMismatch {
                url,
                expected: self.issuer.clone(),
                found: discovery.issuer,
            });
        }
        self.http
            .get(&discovery.jwks_uri)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|source| OidcError::Jwks {
                url: discovery.jwks_uri.clone(),
                source,
            })?
            .json()
            .await
            .map_err(|source| OidcError::Jwks {
                url: discovery.jwks_uri,
                source,
            })
    }
}

fn find_key(keys: &JwkSet, kid: &str) -> Option<Jwk> {
    match kid {
        // A token without a key id is accepted only when the issuer publishes a single key.
        "" if keys.keys.len() == 1 => keys.keys.first().cloned(),
        "" => None,
        kid => keys.find(kid).cloned(),
    }
}
