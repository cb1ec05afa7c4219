//! `/v1/api-keys`: keys act as the principal they belong to. The key itself is shown once.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use sqlx::Row;

use super::auth::{Principal, authorize, grants_of, new_api_key};
use super::json::JsonBody;
use super::problem::{ApiError, ApiResult};
use super::{AppState, SecretResponse, db_error};
use crate::api::ProblemType;
use crate::api::keys::CreateScimToken;
use crate::api::time::format_millis;
pub use crate::api::{CreateKey, KeyView, Page};
use crate::domain::{AccountTree, Permission};

pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(body): JsonBody<CreateKey>,
) -> ApiResult<Response> {
    let name = check_key_name(&body.name)?;
    let now = state.now();
    let mut tx = state.begin().await?;
    let owner = match (&body.admin_id, principal.is_platform()) {
        (None, _) => principal.id.clone(),
        (Some(admin), true) => {
            let exists = sqlx::query("SELECT id FROM principals WHERE id = $1 AND kind = 'admin'")
                .bind(admin)
                .fetch_optional(&mut *tx.tx)
                .await
                .map_err(db_error("find the admin"))?;
            if exists.is_none() {
                return Err(ApiError::not_found("admin", admin).at("/adminId"));
            }
            admin.clone()
        }
        (Some(_), false) => {
            return Err(ApiError::forbidden(
                "only the platform principal may issue keys for other admins",
            )
            .at("/adminId"));
        }
    };
    if !principal.is_platform() {
        // A key is as strong as its holder; issuing one needs api_keys.write on some account.
        let grants = grants_of(&mut tx.tx, &principal.id).await?;
        let mut allowed = false;
        for grant in &grants {
            let chain = super::accounts::load_chain(&mut tx.tx, grant.account.as_str()).await?;
            let tree = AccountTree::new(chain.iter().map(super::accounts::AccountRow::to_domain))
                .map_err(|e| ApiError::internal("load the account tree", e))?;
            if crate::domain::effective_access(&grants, &tree, &principal.subject(), &grant.account)
                .is_ok_and(|access| access.has_permission(Permission::ApiKeysWrite))
            {
                allowed = true;
                break;
            }
        }
        if !allowed {
            return Err(ApiError::forbidden(
                "issuing an API key needs api_keys.write on at least one account",
            ));
        }
    }
    let key = new_api_key();
    sqlx::query("INSERT INTO api_keys (id, principal_id, name, secret_hash, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(&key.id)
        .bind(&owner)
        .bind(name)
        .bind(&key.secret_hash)
        .bind(now)
        .execute(&mut *tx.tx)
        .await
        .map_err(db_error("create the API key"))?;
    let view = KeyView {
        id: key.id,
        name: name.to_owned(),
        principal_id: owner,
        created_at: format_millis(now),
        scim_account_id: None,
        key: Some(key.key),
        key_redacted: None,
    };
    let mut response = (StatusCode::CREATED, Json(view)).into_response();
    response.extensions_mut().insert(SecretResponse);
    tx.commit_response(response).await
}

pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<Json<Page<KeyView>>> {
    let mut connection = state.connection().await?;
    let rows = sqlx::query(
        "SELECT id, name, principal_id, created_at, scim_account_id FROM api_keys WHERE principal_id = $1 AND revoked_at IS NULL ORDER BY id",
    )
    .bind(&principal.id)
    .fetch_all(&mut *connection)
    .await
    .map_err(|e| ApiError::internal("list API keys", e))?;
    let items = rows
        .iter()
        .map(|row| KeyView {
            id: row.get(0),
            name: row.get(1),
            principal_id: row.get(2),
            created_at: format_millis(row.get(3)),
            scim_account_id: row.get(4),
            key: None,
            key_redacted: None,
        })
        .collect();
    Ok(Json(Page {
        items,
        next_cursor: None,
    }))
}

pub async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let now = state.now();
    let mut tx = state.begin().await?;
    // The platform principal must keep a key: without one every request is 401, for good.
    // Touching its row first serialises concurrent revocations of its keys.
    let owner = sqlx::query_scalar::<_, String>(
        "SELECT k.principal_id FROM api_keys k JOIN principals p ON p.id = k.principal_id \
         WHERE k.id = $1 AND k.revoked_at IS NULL AND p.kind = 'platform'",
    )
    .bind(&id)
    .fetch_optional(&mut *tx.tx)
    .await
    .map_err(db_error("read the API key"))?;
    if let Some(platform) = owner {
        sqlx::query("UPDATE principals SET kind = kind WHERE id = $1")
            .bind(&platform)
            .execute(&mut *tx.tx)
            .await
            .map_err(db_error("lock the platform principal"))?;
        let active: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM api_keys WHERE principal_id = $1 AND revoked_at IS NULL",
        )
        .bind(&platform)
        .fetch_one(&mut *tx.tx)
        .await
        .map_err(db_error("count the platform's API keys"))?;
        if active <= 1 {
            return Err(ApiError::new(
                ProblemType::LastPlatformKey,
                "this is the platform principal's last API key; issue another first (POST /v1/api-keys), then revoke this one. A portal locked out already is recovered on its server with `portal-operator portal reset-platform-key`",
            ));
        }
    }
    let updated = sqlx::query(
        "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL AND (principal_id = $3 OR $4 = 1)",
    )
    .bind(now)
    .bind(&id)
    .bind(&principal.id)
    .bind(i64::from(principal.is_platform()))
    .execute(&mut *tx.tx)
    .await
    .map_err(db_error("revoke the API key"))?
    .rows_affected();
    if updated == 0 {
        return Err(ApiError::not_found("API key", &id));
    }
    tx.commit().await.map_err(db_error("commit"))?;
    Ok(StatusCode::NO_CONTENT)
}

fn check_key_name(name: &str) -> ApiResult<&str> {
    let name = name.trim();
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "/name",
            "name must hold 1 to 100 printable characters",
        ));
    }
    Ok(name)
}

/// Mints a SCIM token for the account: an API key of the caller's that acts only at
/// `/scim/v2`, only on this account, and only while the caller may write its users.
pub async fn create_scim_token(
    State(state): State<AppState>,
    principal: Principal,
    Path(account_id): Path<String>,
    JsonBody(body): JsonBody<CreateScimToken>,
) -> ApiResult<Response> {
    let name = check_key_name(&body.name)?;
    let now = state.now();
    let mut tx = state.begin().await?;
    authorize(
        &mut tx.tx,
        &principal,
        &account_id,
        Permission::ServiceUsersWrite,
    )
    .await?;
    let key = new_api_key();
    sqlx::query("INSERT INTO api_keys (id, principal_id, name, secret_hash, created_at, scim_account_id) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&key.id)
        .bind(&principal.id)
        .bind(name)
        .bind(&key.secret_hash)
        .bind(now)
        .bind(&account_id)
        .execute(&mut *tx.tx)
        .await
        .map_err(db_error("create the SCIM token"))?;
    let view = KeyView {
        id: key.id,
        name: name.to_owned(),
        principal_id: principal.id.clone(),
        created_at: format_millis(now),
        scim_account_id: Some(account_id),
        key: Some(key.key),
        key_redacted: None,
    };
    let mut response = (StatusCode::CREATED, Json(view)).into_response();
    response.extensions_mut().insert(SecretResponse);
    tx.commit_response(response).await
}

/// The account's SCIM tokens (never their secrets).
pub async fn list_scim_tokens(
    State(state): State<AppState>,
    principal: Principal,
    Path(account_id): Path<String>,
) -> ApiResult<Json<Page<KeyView>>> {
    let mut connection = state.connection().await?;
    authorize(
        &mut connection,
        &principal,
        &account_id,
        Permission::ServiceUsersWrite,
    )
    .await?;
    let rows = sqlx::query(
        "SELECT id, name, principal_id, created_at FROM api_keys WHERE scim_account_id = $1 AND revoked_at IS NULL ORDER BY id",
    )
    .bind(&account_id)
    .fetch_all(&mut *connection)
    .await
    .map_err(db_error("list SCIM tokens"))?;
    let items = rows
        .iter()
        .map(|row| KeyView {
            id: row.get(0),
            name: row.get(1),
            principal_id: row.get(2),
            created_at: format_millis(row.get(3)),
            scim_account_id: Some(account_id.clone()),
            key: None,
            key_redacted: None,
        })
        .collect();
    Ok(Json(Page {
        items,
        next_cursor: None,
    }))
}

/// Revokes one of the account's SCIM tokens (whoever minted it).
pub async fn revoke_scim_token(
    State(state): State<AppState>,
    principal: Principal,
    Path((account_id, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let now = state.now();
    let mut tx = state.begin().await?;
    authorize(
        &mut tx.tx,
        &principal,
        &account_id,
        Permission::ServiceUsersWrite,
    )
    .await?;
    let updated = sqlx::query(
        "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND scim_account_id = $3 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(&id)
    .bind(&account_id)
    .execute(&mut *tx.tx)
    .await
    .map_err(db_error("revoke the SCIM token"))?
    .rows_affected();
    if updated == 0 {
        return Err(ApiError::not_found("SCIM token", &id));
    }
    tx.commit().await.map_err(db_error("commit"))?;
    Ok(StatusCode::NO_CONTENT)
}
