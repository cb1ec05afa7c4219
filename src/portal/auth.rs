//! Who is calling (bearer API keys) and what they may do (the domain's `effective_access`).
//!
//! An API key is `pk_<key id>_<secret>`. Only SHA-256 of the secret is stored: the secret has
//! 256 bits of randomness, so a slow hash would add nothing. The stored and presented hashes are
//! compared in constant time. Accounts a caller has no access to answer 404, not 403, so a key
//! cannot probe for the existence of other tenants' accounts.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};
use subtle::ConstantTimeEq;

use super::AppState;
use super::accounts::{AccountRow, load_chain, load_subtree};
use super::problem::{ApiError, ApiResult, ProblemType};
use crate::domain::{
    AccountTree, EffectiveAccess, Grant, GrantScope, Permission, Role, SubjectId, effective_access,
};

/// The caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: String,
    pub kind: PrincipalKind,
    /// A SCIM token: the one account it provisions, at `/scim/v2` only.
    pub scim_account: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// The root of the account tree: may do anything, including creating partner accounts.
    Platform,
    Admin,
}

impl Principal {
    pub fn is_platform(&self) -> bool {
        self.kind == PrincipalKind::Platform
    }

    pub fn subject(&self) -> SubjectId {
        SubjectId::new(self.id.clone())
    }
}

/// Random bytes, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    URL_SAFE_NO_PAD.encode(buffer)
}

/// SHA-256, hex.
pub fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new API key: the id to store, the hash to store, and the full key to hand out once.
pub struct NewApiKey {
    pub id: String,
    pub secret_hash: String,
    pub key: String,
}

pub fn new_api_key() -> NewApiKey {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let secret = random_token(32);
    NewApiKey {
        secret_hash: hash_secret(&secret),
        key: format!("pk_{id}_{secret}"),
        id,
    }
}

/// Splits `pk_<id>_<secret>`.
fn parse_api_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("pk_")?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()) && !secret.is_empty())
        .then_some((id, secret))
}

/// Resolves a presented API key to its principal.
pub async fn authenticate(connection: &mut AnyConnection, key: &str) -> ApiResult<Principal> {
    let refuse = || {
        ApiError::new(
            ProblemType::Unauthenticated,
            "the API key is not valid or has been revoked",
        )
    };
    let (id, secret) = parse_api_key(key).ok_or_else(refuse)?;
    let row = sqlx::query(
        "SELECT k.secret_hash, p.id, p.kind, k.scim_account_id FROM api_keys k JOIN principals p ON p.id = k.principal_id \
         WHERE k.id = $1 AND k.revoked_at IS NULL",
    )
    .bind(id)
    .fetch_optional(&mut *connection)
    .await
    .map_err(|e| ApiError::internal("look up the API key", e))?;
    // Hash even when the key id is unknown, so timing does not tell known ids from unknown ones.
    let presented = hash_secret(secret);
    let Some(row) = row else {
        let _ = presented.as_bytes().ct_eq(presented.as_bytes());
        return Err(refuse());
    };
    let stored: String = row.get(0);
    if !bool::from(stored.as_bytes().ct_eq(presented.as_bytes())) {
        return Err(refuse());
    }
    let kind: String = row.get(2);
    Ok(Principal {
        id: row.get(1),
        kind: if kind == "platform" {
            PrincipalKind::Platform
        } else {
            PrincipalKind::Admin
        },
        scim_account: row.get(3),
    })
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(principal.clone());
        }
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| {
                ApiError::new(
                    ProblemType::Unauthenticated,
                    "send an API key as `Authorization: Bearer pk_…`",
                )
            })?;
        let key = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| {
                ApiError::new(
                    ProblemType::Unauthenticated,
                    "the Authorization header must be `Bearer pk_…`",
                )
            })?
            .trim();
        let mut connection = state
            .store
            .pool
            .acquire()
            .await
            .map_err(|e| ApiError::internal("open a database connection", e))?;
        let principal = authenticate(&mut connection, key).await?;
        if let Some(account) = &principal.scim_account {
            return Err(ApiError::new(
                ProblemType::Unauthenticated,
                format!(
                    "this key is a SCIM token for account {account}: it works only at /scim/v2; use an API key here"
                ),
            ));
        }
        parts.extensions.insert(principal.clone());
        Ok(principal)
    }
}

/// A principal's grants, as the domain sees them.
pub async fn grants_of(
    connection: &mut AnyConnection,
    principal_id: &str,
) -> ApiResult<Vec<Grant>> {
    let rows =
        sqlx::query("SELECT account_id, role, scope, source FROM grants WHERE principal_id = $1")
            .bind(principal_id)
            .fetch_all(&mut *connection)
            .await
            .map_err(|e| ApiError::internal("read grants", e))?;
    rows.iter()
        .map(|row| grant_from_row(principal_id, row))
        .collect()
}

pub fn grant_from_row(principal_id: &str, row: &sqlx::any::AnyRow) -> ApiResult<Grant> {
    let role: String = row.get("role");
    let scope: String = row.get("scope");
    let source: String = row.get("source");
    Ok(Grant {
        subject: SubjectId::new(principal_id),
        account: row.get::<String, _>("account_id").as_str().into(),
        role: role
            .parse::<Role>()
            .map_err(|e| ApiError::internal("read a stored grant", e))?,
        scope: if scope == "AccountOnly" {
            GrantScope::AccountOnly
        } else {
            GrantScope::AccountAndDescendants
        },
        source: Some(source),
    })
}

/// What the caller may do on one account, with the account's ancestor chain loaded.
pub struct AccountAccess {
    pub account: AccountRow,
    /// The account and its ancestors.
    pub chain: Vec<AccountRow>,
    pub tree: AccountTree,
    /// The caller's grants (empty for the platform principal).
    pub grants: Vec<Grant>,
}

/// Loads the account and checks the caller holds `permission` there. An account the caller has
/// no access to at all is reported as not found.
pub async fn authorize(
    connection: &mut AnyConnection,
    principal: &Principal,
    account_id: &str,
    permission: Permission,
) -> ApiResult<AccountAccess> {
    let chain = load_chain(connection, account_id).await?;
    let Some(account) = chain.iter().find(|a| a.id == account_id).cloned() else {
        return Err(ApiError::not_found("account", account_id));
    };
    let tree = AccountTree::new(chain.iter().map(AccountRow::to_domain))
        .map_err(|e| ApiError::internal("load the account tree", e))?;
    if principal.is_platform() {
        return Ok(AccountAccess {
            account,
            chain,
            tree,
            grants: Vec::new(),
        });
    }
    let grants = grants_of(connection, &principal.id).await?;
    let access = effective_access(&grants, &tree, &principal.subject(), &account_id.into())
        .map_err(|e| ApiError::internal("evaluate access", e))?;
    if access.is_empty() {
        return Err(ApiError::not_found("account", account_id));
    }
    if !access.has_permission(permission) {
        // A role held but not functioning here (SubscriptionContributor on a client without a
        // sub-contract) is the usual reason: say so.
        let inert: Vec<&str> = access.inert.iter().map(|i| i.reason.as_str()).collect();
        let inert = if inert.is_empty() {
            String::new()
        } else {
            format!("; {}", inert.join("; "))
        };
        return Err(ApiError::forbidden(format!(
            "you need {permission} on account {account_id}; your roles there are {}{inert}",
            describe_roles(&access)
        )));
    }
    Ok(AccountAccess {
        account,
        chain,
        tree,
        grants,
    })
}

/// [`authorize`] for an object that lives on an account (an invitation, a grant, an account
/// manager): when the caller cannot see the account, the object itself is reported as not
/// found, so its existence does not leak either.
pub async fn authorize_for(
    connection: &mut AnyConnection,
    principal: &Principal,
    account_id: &str,
    permission: Permission,
    what: &str,
    id: &str,
) -> ApiResult<AccountAccess> {
    authorize(connection, principal, account_id, permission)
        .await
        .map_err(|error| {
            if error.kind == ProblemType::NotFound {
                ApiError::not_found(what, id)
            } else {
                error
            }
        })
}

fn describe_roles(access: &EffectiveAccess) -> String {
    let roles: Vec<&str> = access.roles.keys().map(|r| r.as_str()).collect();
    roles.join(", ")
}

/// The tree an operation below `account_id` needs: its ancestors and all its descendants.
pub async fn subtree_for(
    connection: &mut AnyConnection,
    account_id: &str,
) -> ApiResult<AccountTree> {
    let rows = load_subtree(connection, account_id).await?;
    AccountTree::new(rows.iter().map(AccountRow::to_domain))
        .map_err(|e| ApiError::internal("load the account tree", e))
}
