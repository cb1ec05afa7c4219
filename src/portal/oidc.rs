//! Signing invitees in with OpenID Connect: discovery, the authorization code flow with PKCE,
//! and verifying the ID token (signature against the issuer's JWKS, issuer, audience, expiry,
//! nonce).
//!
//! The issuer may be a Microsoft Entra ID multi-tenant template such as
//! `https://login.microsoftonline.com/{tenantid}/v2.0`. Then each account's invitees are sent to
//! the authority of the account's own tenant (so they sign in with the right tenant instead of
//! finding out afterwards), accounts without a tenant use `organizations`, and a token's `iss`
//! must be the template with the token's own `tid` — the check Entra's multi-tenant apps must
//! make, since the shared discovery document names the template, not a tenant.
//!
//! This is written on `jsonwebtoken` and `reqwest` rather than the `openidconnect` crate: that
//! crate's discovery insists the document's issuer equals the URL it was fetched from, which the
//! Entra template above never does, and it would bring a second reqwest.
//!
//! Each authority's configuration and keys are fetched on first use; keys again when a token
//! names a key id the cache lacks (rotation), at most once every ten seconds. Expiry is checked
//! against the portal's own clock, the one that decides when invitations expire.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use sha2::{Digest, Sha256};
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

/// A client secret: never printed, not even by `Debug`.
#[derive(Clone)]
pub struct ClientSecret(String);

impl ClientSecret {
    pub fn new(secret: impl Into<String>) -> Self {
        ClientSecret(secret.into())
    }
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

/// The configured issuer, possibly an Entra multi-tenant template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer(String);

impl Issuer {
    const TENANT: &'static str = "{tenantid}";
    /// The Entra authority for work and school accounts of any tenant.
    const ANY_ORGANIZATION: &'static str = "organizations";

    pub fn new(issuer: impl Into<String>) -> Self {
        Issuer(issuer.into().trim_end_matches('/').to_owned())
    }

    pub fn is_multi_tenant(&self) -> bool {
        self.0.contains(Self::TENANT)
    }

    /// Where an invitee of an account with `tenant` signs in.
    pub fn authority(&self, tenant: Option<&str>) -> String {
        if self.is_multi_tenant() {
            self.0
                .replace(Self::TENANT, tenant.unwrap_or(Self::ANY_ORGANIZATION))
        } else {
            self.0.clone()
        }
    }

    /// Whether a token's `iss` (with its `tid`) is this issuer's.
    pub fn accepts(&self, iss: &str, tenant: Option<&str>) -> bool {
        let iss = iss.trim_end_matches('/');
        match (self.is_multi_tenant(), tenant) {
            (false, _) => iss == self.0,
            (true, Some(tenant)) => iss == self.0.replace(Self::TENANT, tenant),
            (true, None) => false,
        }
    }

    /// Whether a discovery document fetched from `authority` may name `found` as its issuer:
    /// the authority itself, or (multi-tenant) the template.
    fn discovered(&self, authority: &str, found: &str) -> bool {
        let found = found.trim_end_matches('/');
        found == authority || (self.is_multi_tenant() && found == self.0)
    }

    /// `scheme://host[:port]` of the issuer, for the pages' `form-action` policy.
    pub fn origin(&self) -> String {
        let (scheme, rest) = self.0.split_once("://").unwrap_or(("https", &self.0));
        let host = rest.split('/').next().unwrap_or_default();
        format!("{scheme}://{host}")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("fetch the OpenID configuration of {authority}")]
    Discovery {
        authority: String,
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
    #[error("reach the token endpoint {url}")]
    TokenEndpoint {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the identity provider refused the sign-in code ({error}); sign in again")]
    CodeRefused { error: String },
    #[error("the identity provider's answer carried no ID token")]
    NoIdToken,
    #[error("the ID token is not a well-formed JWT: {0}")]
    Malformed(String),
    #[error("the ID token was signed with key {0:?}, which the issuer does not publish")]
    UnknownKey(String),
    #[error("the ID token is not valid: {0}")]
    Invalid(String),
    #[error("the ID token was issued by {0:?}, which is not the configured issuer")]
    WrongIssuer(String),
    #[error("the ID token was not issued for this sign-in (nonce mismatch); sign in again")]
    NonceMismatch,
    #[error("the ID token expired; sign in again")]
    Expired,
}

impl OidcError {
    /// Whether the fault is the identity provider's (unreachable, misconfigured) rather than the
    /// token's or the sign-in's.
    pub fn is_provider_fault(&self) -> bool {
        matches!(
            self,
            OidcError::Discovery { .. }
                | OidcError::IssuerMismatch { .. }
                | OidcError::Jwks { .. }
                | OidcError::TokenEndpoint { .. }
                | OidcError::NoIdToken
        )
    }
}

/// What discovery says about one authority.
#[derive(Debug, Clone, Deserialize)]
pub struct Endpoints {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
}

#[derive(Debug, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    exp: i64,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    tid: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    preferred_username: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

struct Cached {
    endpoints: Arc<Endpoints>,
    keys: JwkSet,
    keys_fetched_at: Instant,
}

/// The portal's OpenID Connect client: one per configured issuer.
pub struct OidcClient {
    issuer: Issuer,
    client_id: String,
    client_secret: Option<ClientSecret>,
    http: reqwest::Client,
    authorities: RwLock<HashMap<String, Cached>>,
}

const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(10);
const CLOCK_SKEW_SECONDS: i64 = 60;

/// A fresh random value for `state`, `nonce` or a PKCE verifier: 256 bits, base64url.
pub fn random_value() -> String {
    super::auth::random_token(32)
}

/// The PKCE S256 challenge of `verifier` (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// What one sign-in sends to the authorization endpoint.
pub struct AuthorizationRequest<'a> {
    pub redirect_uri: &'a str,
    pub state: &'a str,
    pub nonce: &'a str,
    pub code_verifier: &'a str,
}

impl OidcClient {
    pub fn new(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: Option<ClientSecret>,
    ) -> Self {
        OidcClient {
            issuer: Issuer::new(issuer),
            client_id: client_id.into(),
            client_secret,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a default HTTP client builds"),
            authorities: RwLock::new(HashMap::new()),
        }
    }

    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }

    /// The authority's endpoints, from discovery (cached).
    pub async fn endpoints(&self, authority: &str) -> Result<Arc<Endpoints>, OidcError> {
        if let Some(cached) = self.authorities.read().await.get(authority) {
            return Ok(cached.endpoints.clone());
        }
        let endpoints = Arc::new(self.discover(authority).await?);
        let keys = self.fetch_keys(&endpoints.jwks_uri).await?;
        self.authorities.write().await.insert(
            authority.to_owned(),
            Cached {
                endpoints: endpoints.clone(),
                keys,
                keys_fetched_at: Instant::now(),
            },
        );
        Ok(endpoints)
    }

    /// The URL to send the browser to: code flow, PKCE S256, and `prompt=select_account` so a
    /// person signed in to several Microsoft accounts picks the right one (seed 002).
    pub fn authorization_url(
        &self,
        endpoints: &Endpoints,
        request: &AuthorizationRequest<'_>,
    ) -> String {
        let challenge = pkce_challenge(request.code_verifier);
        let query = [
            ("response_type", "code"),
            ("client_id", self.client_id.as_str()),
            ("redirect_uri", request.redirect_uri),
            ("scope", "openid email profile"),
            ("state", request.state),
            ("nonce", request.nonce),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("prompt", "select_account"),
        ];
        let encoded = query
            .iter()
            .map(|(name, value)| format!("{name}={}", form_encode(value)))
            .collect::<Vec<_>>()
            .join("&");
        let separator = if endpoints.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{}{separator}{encoded}", endpoints.authorization_endpoint)
    }

    /// Trades an authorization code for an ID token and verifies it; returns who signed in.
    pub async fn exchange(
        &self,
        authority: &str,
        code: &str,
        code_verifier: &str,
        redirect_uri: &str,
        nonce: &str,
        now_millis: i64,
    ) -> Result<Identity, OidcError> {
        #[derive(Deserialize)]
        struct TokenAnswer {
            #[serde(default)]
            id_token: Option<String>,
            #[serde(default)]
            error: Option<String>,
        }
        let endpoints = self.endpoints(authority).await?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", code_verifier),
            ("client_id", self.client_id.as_str()),
        ];
        if let Some(secret) = &self.client_secret {
            form.push(("client_secret", secret.0.as_str()));
        }
        let token_error = |source| OidcError::TokenEndpoint {
            url: endpoints.token_endpoint.clone(),
            source,
        };
        let response = self
            .http
            .post(&endpoints.token_endpoint)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(token_error)?;
        let status = response.status();
        let answer: TokenAnswer = response.json().await.map_err(token_error)?;
        if !status.is_success() || answer.error.is_some() {
            return Err(OidcError::CodeRefused {
                error: answer.error.unwrap_or_else(|| status.to_string()),
            });
        }
        let id_token = answer.id_token.ok_or(OidcError::NoIdToken)?;
        self.verify(&id_token, authority, Some(nonce), now_millis)
            .await
    }

    /// Verifies `id_token` from `authority` and returns who it proves, checking the nonce when
    /// the sign-in made one and expiry against `now_millis`.
    pub async fn verify(
        &self,
        id_token: &str,
        authority: &str,
        nonce: Option<&str>,
        now_millis: i64,
    ) -> Result<Identity, OidcError> {
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
        let jwk = self.key(authority, &kid).await?;
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|e| OidcError::Invalid(format!("the issuer's key {kid:?}: {e}")))?;
        let mut validation = Validation::new(header.alg);
        // The issuer is checked below, with the token's tenant for a multi-tenant template.
        validation.iss = None;
        validation.set_audience(&[&self.client_id]);
        validation.set_required_spec_claims(&["iss", "aud", "sub", "exp"]);
        // Expiry is checked below against the portal's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let claims = decode::<Claims>(id_token, &key, &validation)
            .map_err(|e| OidcError::Invalid(e.to_string()))?
            .claims;
        if !self.issuer.accepts(&claims.iss, claims.tid.as_deref()) {
            return Err(OidcError::WrongIssuer(claims.iss));
        }
        if let Some(expected) = nonce {
            let matches = claims.nonce.as_deref().is_some_and(|found| {
                subtle::ConstantTimeEq::ct_eq(found.as_bytes(), expected.as_bytes()).into()
            });
            if !matches {
                return Err(OidcError::NonceMismatch);
            }
        }
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

    async fn key(&self, authority: &str, kid: &str) -> Result<Jwk, OidcError> {
        self.endpoints(authority).await?;
        if let Some(cached) = self.authorities.read().await.get(authority)
            && let Some(jwk) = find_key(&cached.keys, kid)
        {
            return Ok(jwk);
        }
        let mut authorities = self.authorities.write().await;
        let Some(cached) = authorities.get_mut(authority) else {
            return Err(OidcError::UnknownKey(kid.to_owned()));
        };
        if cached.keys_fetched_at.elapsed() >= REFETCH_AT_MOST_EVERY {
            cached.keys = self.fetch_keys(&cached.endpoints.jwks_uri).await?;
            cached.keys_fetched_at = Instant::now();
        }
        find_key(&cached.keys, kid).ok_or_else(|| OidcError::UnknownKey(kid.to_owned()))
    }

    async fn discover(&self, authority: &str) -> Result<Endpoints, OidcError> {
        let url = format!("{authority}/.well-known/openid-configuration");
        let discovery_error = |source| OidcError::Discovery {
            authority: authority.to_owned(),
            source,
        };
        let endpoints: Endpoints = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(discovery_error)?
            .json()
            .await
            .map_err(discovery_error)?;
        if !self.issuer.discovered(authority, &endpoints.issuer) {
            return Err(OidcError::IssuerMismatch {
                url,
                expected: authority.to_owned(),
                found: endpoints.issuer,
            });
        }
        Ok(endpoints)
    }

    async fn fetch_keys(&self, url: &str) -> Result<JwkSet, OidcError> {
        let keys_error = |source| OidcError::Jwks {
            url: url.to_owned(),
            source,
        };
        self.http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(keys_error)?
            .json()
            .await
            .map_err(keys_error)
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

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Why the identity provider sent the invitee back without a code, as the reason recorded on
/// the invitation and what the person should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRefusal {
    pub reason: &'static str,
    pub title: &'static str,
    pub remedy: String,
    /// Whether signing in again (perhaps with another account) can help.
    pub retry_helps: bool,
}

/// The seeds' remedy for AADSTS50105.
pub const NOT_ASSIGNED_REMEDY: &str = "The user is not assigned to the portal's enterprise application in Microsoft \
     Entra ID (AADSTS50105). An administrator of the tenant must add the user to the application's Users and groups, \
     or allow users to access the application without being assigned to it.";

/// Maps the error callback (`error`, `error_description`) to a refusal. Entra puts its
/// `AADSTSnnnnn` code at the start of the description; a caller with only one text (the API's
/// `idpError`) passes it as `error`, and the code is found there too.
pub fn provider_refusal(error: &str, description: Option<&str>) -> ProviderRefusal {
    let description = description.unwrap_or_default();
    let code = |aadsts: &str| description.contains(aadsts) || error.contains(aadsts);
    if code("AADSTS50105") {
        return ProviderRefusal {
            reason: "NotAssignedToApplication",
            title: "Your administrator has not given you access to the portal's app",
            remedy: NOT_ASSIGNED_REMEDY.to_owned(),
            retry_helps: true,
        };
    }
    if code("AADSTS50020") || code("AADSTS50034") {
        return ProviderRefusal {
            reason: "WrongTenant",
            title: "That account does not belong to the invited organisation",
            remedy: "You signed in with an account that is not a user of the tenant you were invited to. \
                     Sign out of all Microsoft accounts, or open the invitation link in a private browsing window, \
                     then sign in with a user of that tenant."
                .to_owned(),
            retry_helps: true,
        };
    }
    if code("AADSTS700016") || code("AADSTS650052") {
        return ProviderRefusal {
            reason: "ApplicationNotInTenant",
            title: "The portal's app is not available in your organisation",
            remedy: "Your tenant does not have the portal's application yet. A Global Administrator of the \
                     tenant must sign in once and grant consent for the organisation, then try the invitation again."
                .to_owned(),
            retry_helps: false,
        };
    }
    if code("AADSTS65004") || (error == "access_denied" && description.is_empty()) {
        return ProviderRefusal {
            reason: "SignInCancelled",
            title: "The sign-in was cancelled",
            remedy: "You declined or cancelled the sign-in. Sign in again and accept to continue."
                .to_owned(),
            retry_helps: true,
        };
    }
    ProviderRefusal {
        reason: "IdentityProviderError",
        title: "The identity provider did not sign you in",
        remedy: format!(
            "Sign-in failed at the identity provider ({}{}). Try again; if it keeps failing, send this message to your administrator.",
            printable(error, 300),
            if description.is_empty() {
                String::new()
            } else {
                format!(": {}", printable(description, 300))
            }
        ),
        retry_helps: true,
    }
}

/// Text from outside, cut to `max` characters with control characters removed.
fn printable(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_challenge_is_rfc_7636_s256() {
        // RFC 7636, appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn random_values_are_long_and_different() {
        let (a, b) = (random_value(), random_value());
        assert_ne!(a, b);
        assert!(a.len() >= 43, "256 bits in base64url: {a}");
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[test]
    fn a_multi_tenant_issuer_sends_each_account_to_its_tenant() {
        let entra = Issuer::new("https://login.microsoftonline.com/{tenantid}/v2.0");
        assert!(entra.is_multi_tenant());
        assert_eq!(
            entra.authority(Some("72f988bf-86f1-41af-91ab-2d7cd011db47")),
            "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0"
        );
        assert_eq!(
            entra.authority(None),
            "https://login.microsoftonline.com/organizations/v2.0"
        );
        assert_eq!(entra.origin(), "https://login.microsoftonline.com");
    }

    #[test]
    fn a_multi_tenant_issuer_accepts_only_the_tokens_own_tenant() {
        let entra = Issuer::new("https://login.microsoftonline.com/{tenantid}/v2.0");
        let tid = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        let iss = format!("https://login.microsoftonline.com/{tid}/v2.0");
        assert!(entra.accepts(&iss, Some(tid)));
        assert!(!entra.accepts(&iss, Some("00000000-0000-0000-0000-000000000001")));
        assert!(!entra.accepts(&iss, None), "a token without tid is refused");
        assert!(!entra.accepts(
            "https://login.microsoftonline.com/{tenantid}/v2.0",
            Some(tid)
        ));
        assert!(!entra.accepts("https://evil.example/72f988bf/v2.0", Some(tid)));
    }

    #[test]
    fn a_single_issuer_accepts_itself_only() {
        let issuer = Issuer::new("http://127.0.0.1:4000/");
        assert!(!issuer.is_multi_tenant());
        assert_eq!(issuer.authority(Some("t")), "http://127.0.0.1:4000");
        assert!(issuer.accepts("http://127.0.0.1:4000", Some("t")));
        assert!(issuer.accepts("http://127.0.0.1:4000/", None));
        assert!(!issuer.accepts("http://127.0.0.1:4001", None));
        assert_eq!(issuer.origin(), "http://127.0.0.1:4000");
    }

    #[test]
    fn discovery_may_name_the_template_for_a_shared_authority() {
        let entra = Issuer::new("https://login.microsoftonline.com/{tenantid}/v2.0");
        let organizations = entra.authority(None);
        assert!(entra.discovered(
            &organizations,
            "https://login.microsoftonline.com/{tenantid}/v2.0"
        ));
        let contoso = entra.authority(Some("abc"));
        assert!(entra.discovered(&contoso, &contoso));
        assert!(!entra.discovered(&contoso, "https://login.microsoftonline.com/other/v2.0"));
        let single = Issuer::new("http://127.0.0.1:4000");
        assert!(!single.discovered("http://127.0.0.1:4000", "http://127.0.0.1:4001"));
    }

    #[test]
    fn the_authorization_url_carries_pkce_state_nonce_and_select_account() {
        let client = OidcClient::new("http://127.0.0.1:4000", "portal app", None);
        let endpoints = Endpoints {
            issuer: "http://127.0.0.1:4000".into(),
            authorization_endpoint: "http://127.0.0.1:4000/auth".into(),
            token_endpoint: "http://127.0.0.1:4000/token".into(),
            jwks_uri: "http://127.0.0.1:4000/jwks".into(),
        };
        let url = client.authorization_url(
            &endpoints,
            &AuthorizationRequest {
                redirect_uri: "https://portal.example/oidc/callback",
                state: "the-state",
                nonce: "the-nonce",
                code_verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            },
        );
        let (base, query) = url.split_once('?').unwrap();
        assert_eq!(base, "http://127.0.0.1:4000/auth");
        let pairs: HashMap<&str, &str> = query
            .split('&')
            .map(|pair| pair.split_once('=').unwrap())
            .collect();
        assert_eq!(pairs["response_type"], "code");
        assert_eq!(pairs["client_id"], "portal%20app");
        assert_eq!(
            pairs["redirect_uri"],
            "https%3A%2F%2Fportal.example%2Foidc%2Fcallback"
        );
        assert_eq!(pairs["scope"], "openid%20email%20profile");
        assert_eq!(pairs["state"], "the-state");
        assert_eq!(pairs["nonce"], "the-nonce");
        assert_eq!(
            pairs["code_challenge"],
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(pairs["code_challenge_method"], "S256");
        assert_eq!(pairs["prompt"], "select_account");
        assert!(!query.contains("dBjftJeZ"), "the verifier never leaves");
    }

    #[test]
    fn error_callbacks_map_to_the_seeds_remedies() {
        let table: &[(&str, Option<&str>, &str, bool)] = &[
            (
                "access_denied",
                Some(
                    "AADSTS50105: Your administrator has configured the application ... to block users",
                ),
                "NotAssignedToApplication",
                true,
            ),
            (
                "invalid_request",
                Some("AADSTS50020: User account from identity provider does not exist in tenant"),
                "WrongTenant",
                true,
            ),
            (
                "unauthorized_client",
                Some(
                    "AADSTS700016: Application with identifier 'x' was not found in the directory",
                ),
                "ApplicationNotInTenant",
                false,
            ),
            ("access_denied", None, "SignInCancelled", true),
            (
                "access_denied",
                Some("AADSTS65004: User declined to consent"),
                "SignInCancelled",
                true,
            ),
            ("server_error", Some("boom"), "IdentityProviderError", true),
            (
                "access_denied: AADSTS50105: not assigned",
                None,
                "NotAssignedToApplication",
                true,
            ),
        ];
        for (error, description, reason, retry) in table {
            let refusal = provider_refusal(error, *description);
            assert_eq!(refusal.reason, *reason, "{error} {description:?}");
            assert_eq!(refusal.retry_helps, *retry, "{error} {description:?}");
            assert!(!refusal.remedy.is_empty());
        }
        assert!(
            provider_refusal("access_denied", Some("AADSTS50105: …"))
                .remedy
                .contains("Users and groups")
        );
        let odd = provider_refusal("server\nerror", Some("line\u{0}one\nline two"));
        assert!(
            !odd.remedy.contains('\n') && !odd.remedy.contains('\u{0}'),
            "{}",
            odd.remedy
        );
    }

    #[test]
    fn the_client_secret_is_never_printed() {
        let secret = ClientSecret::new("hunter2-very-secret");
        assert!(!format!("{secret:?}").contains("hunter2"));
    }
}
