//! Role grants, admins and access: `/v1/accounts/{id}/grants`, `/v1/grants/{id}`,
//! `/v1/accounts/{id}/admins`, `/v1/access`, `/v1/roles`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sqlx::{AnyConnection, Row};

use super::auth::{Principal, authorize, authorize_for, grant_from_row, grants_of, subtree_for};
use super::json::{JsonBody, PageQuery, Params};
use super::problem::{ApiError, ApiResult, ProblemType};
use super::store::{NewEvent, WriteTx};
use super::{AppState, db_error};
use crate::api::EventType;
use crate::api::time::format_millis;
pub use crate::api::{
    AdminView, CreateAdmin, CreateGrants, GrantView, Page, RevokedGrants, Whoami,
};
use crate::domain::{
    AccountTree, CATALOG, EffectiveAccess, Email, Grant, GrantAction, GrantScope, Permission, Role,
    RoleSpec, check_grant, check_revoke, effective_access, functions_on, person_name,
};

/// The source recorded on grants made without one.
pub const MANUAL_SOURCE: &str = "manual";

pub async fn roles() -> Json<&'static [RoleSpec]> {
    Json(CATALOG)
}

pub async fn whoami(principal: Principal) -> Json<Whoami> {
    Json(Whoami {
        platform: principal.is_platform(),
        id: principal.id,
    })
}

const GRANT_COLUMNS: &str =
    "g.id, g.principal_id, p.email, g.account_id, g.role, g.scope, g.source, g.created_at";

fn grant_view(row: &sqlx::any::AnyRow) -> ApiResult<GrantView> {
    let principal_id: String = row.get("principal_id");
    let grant = grant_from_row(&principal_id, row)?;
    Ok(GrantView {
        id: row.get("id"),
        admin_id: principal_id,
        email: row.get("email"),
        account_id: row.get("account_id"),
        role: grant.role,
        scope: grant.scope,
        source: row.get("source"),
        created_at: format_millis(row.get("created_at")),
    })
}

/// The roles a request names, each once; at least one. (Unknown names were refused with
/// `unknown-role` when the body was read: see [`super::json::parse_json`].)
pub fn check_roles(roles: &[Role]) -> ApiResult<Vec<Role>> {
    if roles.is_empty() {
        return Err(ApiError::invalid("/roles", "name at least one role"));
    }
    let mut unique = Vec::with_capacity(roles.len());
    for role in roles {
        if !unique.contains(role) {
            unique.push(*role);
        }
    }
    Ok(unique)
}

pub fn check_source(source: Option<&str>) -> ApiResult<String> {
    match source {
        None => Ok(MANUAL_SOURCE.to_owned()),
        Some(source)
            if !source.is_empty()
                && source.len() <= 512
                && !source.chars().any(char::is_control) =>
        {
            Ok(source.to_owned())
        }
        Some(_) => Err(ApiError::invalid(
            "/source",
            "source must hold 1 to 512 printable characters",
        )),
    }
}

/// Finds an admin by id or email.
async fn find_admin(
    connection: &mut AnyConnection,
    admin_id: Option<&str>,
    email: Option<&str>,
) -> ApiResult<String> {
    let row = match (admin_id, email) {
        (Some(id), None) => {
            sqlx::query("SELECT id FROM principals WHERE id = $1 AND kind = 'admin'")
                .bind(id)
                .fetch_optional(&mut *connection)
                .await
        }
        (None, Some(email)) => {
            let email = Email::parse(email)?;
            sqlx::query("SELECT id FROM principals WHERE email_canonical = $1 AND kind = 'admin'")
                .bind(email.canonical())
                .fetch_optional(&mut *connection)
                .await
        }
        _ => {
            return Err(ApiError::invalid(
                "/adminId",
                "give exactly one of adminId and email",
            ));
        }
    }
    .map_err(|e| ApiError::internal("find the admin", e))?;
    row.map(|row| row.get(0)).ok_or_else(|| {
        ApiError::new(
            ProblemType::SubjectNotFound,
            format!(
                "there is no admin {}; an admin exists once an invitation has been accepted",
                admin_id.or(email).unwrap_or_default()
            ),
        )
    })
}

/// Checks that `principal` may give `roles` on `account_id` with `scope`, then inserts the
/// grants (an identical existing grant is kept, not duplicated) and emits `grant.created`.
#[allow(clippy::too_many_arguments)]
pub async fn insert_grants(
    tx: &mut WriteTx,
    principal: &Principal,
    action: GrantAction,
    account_id: &str,
    admin_id: &str,
    roles: &[Role],
    scope: GrantScope,
    source: &str,
    now: i64,
) -> ApiResult<Vec<GrantView>> {
    let tree = subtree_for(&mut tx.tx, account_id).await?;
    check_may_grant(
        &mut tx.tx, &tree, principal, action, account_id, roles, scope,
    )
    .await?;
    insert_grant_rows(
        tx,
        &principal.id,
        account_id,
        admin_id,
        roles,
        scope,
        source,
        now,
    )
    .await
}

/// Inserts grants with no checks (the caller made them), keeping an identical existing grant
/// rather than duplicating it, and emits `grant.created` for each new one.
#[allow(clippy::too_many_arguments)]
pub async fn insert_grant_rows(
    tx: &mut WriteTx,
    created_by: &str,
    account_id: &str,
    admin_id: &str,
    roles: &[Role],
    scope: GrantScope,
    source: &str,
    now: i64,
) -> ApiResult<Vec<GrantView>> {
    let mut created = Vec::new();
    for role in roles {
        let id = uuid::Uuid::now_v7().to_string();
        let inserted = sqlx::query(
            "INSERT INTO grants (id, principal_id, account_id, role, scope, source, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (principal_id, account_id, role, scope, source) DO NOTHING",
        )
        .bind(&id)
        .bind(admin_id)
        .bind(account_id)
        .bind(role.as_str())
        .bind(scope_str(scope))
        .bind(source)
        .bind(created_by)
        .bind(now)
        .execute(&mut *tx.tx)
        .await
        .map_err(db_error("create the grant"))?
        .rows_affected();
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {GRANT_COLUMNS} FROM grants g JOIN principals p ON p.id = g.principal_id \
             WHERE g.principal_id = $1 AND g.account_id = $2 AND g.role = $3 AND g.scope = $4 AND g.source = $5"
        )))
        .bind(admin_id)
        .bind(account_id)
        .bind(role.as_str())
        .bind(scope_str(scope))
        .bind(source)
        .fetch_one(&mut *tx.tx)
        .await
        .map_err(db_error("read the grant"))?;
        let view = grant_view(&row)?;
        if inserted > 0 {
            tx.emit(grant_event(EventType::GrantCreated, &view), now);
        }
        created.push(view);
    }
    Ok(created)
}

/// The escalation check, or for the platform principal only the "role functions here" check.
pub async fn check_may_grant(
    connection: &mut AnyConnection,
    tree: &AccountTree,
    principal: &Principal,
    action: GrantAction,
    account_id: &str,
    roles: &[Role],
    scope: GrantScope,
) -> ApiResult<()> {
    if principal.is_platform() {
        let account = tree
            .get(&account_id.into())
            .ok_or_else(|| ApiError::not_found("account", account_id))?;
        if let Some(role) = roles.iter().find(|role| !functions_on(**role, account)) {
            return Err(ApiError::new(
                ProblemType::RoleNotAssignable,
                format!("{role} cannot be assigned on account {account_id}: it functions only on partner accounts and on client accounts with a sub-contract"),
            )
            .at("/roles"));
        }
        return Ok(());
    }
    let granter_grants = grants_of(connection, &principal.id).await?;
    check_grant(
        &granter_grants,
        tree,
        &principal.subject(),
        action,
        &account_id.into(),
        roles,
        scope,
    )?;
    Ok(())
}

/// [`check_may_grant`] for an account the caller was just authorized on, reusing what
/// `authorize` loaded: the ancestor chain and the caller's grants. Only the accounts below are
/// read, and only when the escalation check needs them.
pub async fn check_may_grant_at(
    connection: &mut AnyConnection,
    access: &super::auth::AccountAccess,
    principal: &Principal,
    action: GrantAction,
    roles: &[Role],
    scope: GrantScope,
) -> ApiResult<()> {
    if principal.is_platform() {
        return check_may_grant(
            connection,
            &access.tree,
            principal,
            action,
            &access.account.id,
            roles,
            scope,
        )
        .await;
    }
    let tree = match scope {
        GrantScope::AccountOnly => access.tree.clone(),
        GrantScope::AccountAndDescendants => {
            let below = super::accounts::load_descendants(connection, &access.account.id).await?;
            AccountTree::new(
                access
                    .chain
                    .iter()
                    .chain(below.iter())
                    .map(super::accounts::AccountRow::to_domain),
            )
            .map_err(|e| ApiError::internal("load the account tree", e))?
        }
    };
    check_grant(
        &access.grants,
        &tree,
        &principal.subject(),
        action,
        &access.account.id.as_str().into(),
        roles,
        scope,
    )?;
    Ok(())
}

pub fn scope_str(scope: GrantScope) -> &'static str {
    match scope {
        GrantScope::AccountAndDescendants => "AccountAndDescendants",
        GrantScope::AccountOnly => "AccountOnly",
    }
}

fn grant_event<'a>(event_type: EventType, view: &'a GrantView) -> NewEvent<'a> {
    NewEvent {
        event_type,
        object_kind: "Grant",
        object_id: &view.id,
        account_id: Some(&view.account_id),
        external_ref: Some(&view.source),
        data: serde_json::json!({
            "adminId": view.admin_id, "email": view.email, "role": view.role, "scope": view.scope,
        }),
    }
}

pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Path(account_id): Path<String>,
    JsonBody(body): JsonBody<CreateGrants>,
) -> ApiResult<Response> {
    let roles = check_roles(&body.roles)?;
    let source = check_source(body.source.as_deref())?;
    let now = state.now();
    let mut tx = state.begin().await?;
    authorize(
        &mut tx.tx,
        &principal,
        &account_id,
        Permission::AdminUsersWrite,
    )
    .await?;
    let admin_id = find_admin(&mut tx.tx, body.admin_id.as_deref(), body.email.as_deref()).await?;
    let grants = insert_grants(
        &mut tx,
        &principal,
        GrantAction::Grant,
        &account_id,
        &admin_id,
        &roles,
        body.scope,
        &source,
        now,
    )
    .await?;
    let page = Page {
        items: grants,
        next_cursor: None,
    };
    tx.commit_response((StatusCode::CREATED, Json(page)).into_response())
        .await
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListGrantsQuery {
    /// Only grants made by this source.
    #[serde(default)]
    pub source: Option<String>,
    /// Only this admin's grants.
    #[serde(default)]
    pub admin_id: Option<String>,
    #[serde(flatten)]
    pub page: PageQuery,
}

pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path(account_id): Path<String>,
    Params(query): Params<ListGrantsQuery>,
) -> ApiResult<Json<Page<GrantView>>> {
    let limit = query.page.limit()?;
    let after = query.page.after()?;
    let mut connection = state.connection().await?;
    authorize(
        &mut connection,
        &principal,
        &account_id,
        Permission::AdminUsersRead,
    )
    .await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {GRANT_COLUMNS} FROM grants g JOIN principals p ON p.id = g.principal_id \
         WHERE g.account_id = $1 AND g.id > $2 AND ($3 IS NULL OR g.source = $3) AND ($4 IS NULL OR g.principal_id = $4) \
         ORDER BY g.id LIMIT $5"
    )))
    .bind(&account_id)
    .bind(&after)
    .bind(&query.source)
    .bind(&query.admin_id)
    .bind(limit + 1)
    .fetch_all(&mut *connection)
    .await
    .map_err(|e| ApiError::internal("list grants", e))?;
    let views = rows.iter().map(grant_view).collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(Page::new(views, limit, |g| g.id.clone())))
}

/// Every grant that can reach any account of `tree`, as the domain sees them.
async fn grants_in(
    connection: &mut AnyConnection,
    tree: &AccountTree,
) -> ApiResult<Vec<(String, Grant)>> {
    let ids: Vec<&str> = tree.accounts().map(|a| a.id.as_str()).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // One query for the whole subtree (it is small: an account's ancestors and descendants).
    let placeholders: Vec<String> = (1..=ids.len()).map(|n| format!("${n}")).collect();
    let sql = format!(
        "SELECT id, principal_id, account_id, role, scope, source FROM grants WHERE account_id IN ({})",
        placeholders.join(", ")
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for id in &ids {
        query = query.bind(*id);
    }
    let rows = query
        .fetch_all(&mut *connection)
        .await
        .map_err(|e| ApiError::internal("read grants", e))?;
    let mut all = Vec::with_capacity(rows.len());
    for row in &rows {
        let principal_id: String = row.get("principal_id");
        all.push((row.get("id"), grant_from_row(&principal_id, row)?));
    }
    Ok(all)
}

/// Deletes the grants on `account_id` that `selected` picks, after the last-owner check.
async fn revoke_where(
    tx: &mut WriteTx,
    account_id: &str,
    now: i64,
    selected: impl Fn(&str, &Grant) -> bool,
) -> ApiResult<usize> {
    let tree = subtree_for(&mut tx.tx, account_id).await?;
    let grants = grants_in(&mut tx.tx, &tree).await?;
    let removed: Vec<&String> = grants
        .iter()
        .filter(|(id, grant)| grant.account.as_str() == account_id && selected(id, grant))
        .map(|(id, _)| id)
        .collect();
    if removed.is_empty() {
        return Ok(0);
    }
    // (subject, account, role, scope, source) is unique, so a grant is identified by its value.
    let domain: Vec<Grant> = grants.iter().map(|(_, g)| g.clone()).collect();
    let removed_grants: Vec<&Grant> = grants
        .iter()
        .filter(|(id, _)| removed.contains(&id))
        .map(|(_, g)| g)
        .collect();
    check_revoke(&domain, &tree, |grant| removed_grants.contains(&grant))?;
    for id in &removed {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {GRANT_COLUMNS} FROM grants g JOIN principals p ON p.id = g.principal_id WHERE g.id = $1"
        )))
        .bind(*id)
        .fetch_one(&mut *tx.tx)
        .await
        .map_err(db_error("read the grant"))?;
        let view = grant_view(&row)?;
        sqlx::query("DELETE FROM grants WHERE id = $1")
            .bind(*id)
            .execute(&mut *tx.tx)
            .await
            .map_err(db_error("revoke the grant"))?;
        tx.emit(grant_event(EventType::GrantRevoked, &view), now);
    }
    Ok(removed.len())
}

pub async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    Path(grant_id): Path<String>,
) -> ApiResult<StatusCode> {
    let now = state.now();
    let mut tx = state.begin().await?;
    let account_id: String = sqlx::query("SELECT account_id FROM grants WHERE id = $1")
        .bind(&grant_id)
        .fetch_optional(&mut *tx.tx)
        .await
        .map_err(db_error("find the grant"))?
        .map(|row| row.get(0))
        .ok_or_else(|| ApiError::not_found("grant", &grant_id))?;
    authorize_for(
        &mut tx.tx,
        &principal,
        &account_id,
        Permission::AdminUsersWrite,
        "grant",
        &grant_id,
    )
    .await?;
    revoke_where(&mut tx, &account_id, now, |id, _| id == grant_id).await?;
    tx.commit().await.map_err(db_error("commit"))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RevokeBySourceQuery {
    /// The source whose grants to revoke.
    pub source: String,
    /// Only this admin's grants.
    #[serde(default)]
    pub admin_id: Option<String>,
}

/// Revokes exactly the grants one source made on the account (optionally for one admin).
pub async fn revoke_by_source(
    State(state): State<AppState>,
    principal: Principal,
    Path(account_id): Path<String>,
    Params(query): Params<RevokeBySourceQuery>,
) -> ApiResult<Json<RevokedGrants>> {
    let now = state.now();
    let mut tx = state.begin().await?;
    authorize(
        &mut tx.tx,
        &principal,
        &account_id,
        Permission::AdminUsersWrite,
    )
    .await?;
    let revoked = revoke_where(&mut tx, &account_id, now, |_, grant| {
        grant.source.as_deref() == Some(query.source.as_str())
            && query
                .admin_id
                .as_deref()
                .is_none_or(|admin| grant.subject.0 == admin)
    })
    .await?;
    tx.commit().await.map_err(db_error("commit"))?;
    Ok(Json(RevokedGrants {
        revoked: revoked as u64,
    }))
}

// --- admins ------------------------------------------------------------------------------

pub async fn list_admins(
    State(state): State<AppState>,
    principal: Principal,
    Path(account_id): Path<String>,
    Params(page): Params<PageQuery>,
) -> ApiResult<Json<Page<AdminView>>> {
    let limit = page.limit()?;
    let after = page.after()?;
    let mut connection = state.connection().await?;
    authorize(
        &mut connection,
        &principal,
        &account_id,
        Permission::AdminUsersRead,
    )
    .await?;
    let admins = sqlx::query(
        "SELECT id, email, first_name, last_name FROM principals WHERE id IN \
         (SELECT principal_id FROM grants WHERE account_id = $1) AND id > $2 ORDER BY id LIMIT $3",
    )
    .bind(&account_id)
    .bind(&after)
    .bind(limit + 1)
    .fetch_all(&mut *connection)
    .await
    .map_err(|e| ApiError::internal("list admins", e))?;
    let mut views = Vec::with_capacity(admins.len());
    for admin in &admins {
        let id: String = admin.get("id");
        let roles = sqlx::query(
            "SELECT DISTINCT role FROM grants WHERE account_id = $1 AND principal_id = $2",
        )
        .bind(&account_id)
        .bind(&id)
        .fetch_all(&mut *connection)
        .await
        .map_err(|e| ApiError::internal("list admin roles", e))?;
        let mut roles: Vec<Role> = roles
            .iter()
            .filter_map(|r| r.get::<String, _>(0).parse().ok())
            .collect();
        roles.sort();
        views.push(AdminView {
            id,
            email: admin.get("email"),
            first_name: admin.get("first_name"),
            last_name: admin.get("last_name"),
            roles,
        });
    }
    Ok(Json(Page::new(views, limit, |a| a.id.clone())))
}

/// Provisioning: the platform principal creates an admin directly (the seeds' "invites are sent
/// out when the account is created"). Everyone else invites.
pub async fn create_admin(
    State(state): State<AppState>,
    principal: Principal,
    Path(account_id): Path<String>,
    JsonBody(body): JsonBody<CreateAdmin>,
) -> ApiResult<Response> {
    if !principal.is_platform() {
        return Err(ApiError::forbidden(
            "only the platform principal creates admins directly; invite them with POST /v1/accounts/{id}/invitations",
        ));
    }
    let email = Email::parse(&body.email)?;
    let first_name = person_name("firstName", &body.first_name)?;
    let last_name = person_name("lastName", &body.last_name)?;
    let roles = check_roles(&body.roles)?;
    let source = check_source(body.source.as_deref())?;
    let now = state.now();
    let mut tx = state.begin().await?;
    authorize(
        &mut tx.tx,
        &principal,
        &account_id,
        Permission::AdminUsersWrite,
    )
    .await?;
    let admin_id = upsert_admin(&mut tx.tx, &email, &first_name, &last_name, now).await?;
    insert_grants(
        &mut tx,
        &principal,
        GrantAction::Grant,
        &account_id,
        &admin_id,
        &roles,
        body.scope,
        &source,
        now,
    )
    .await?;
    let mut roles = roles;
    roles.sort();
    let view = AdminView {
        id: admin_id,
        email: email.to_string(),
        first_name: Some(first_name),
        last_name: Some(last_name),
        roles,
    };
    tx.commit_response((StatusCode::CREATED, Json(view)).into_response())
        .await
}

/// The admin principal with this email, created if missing.
pub async fn upsert_admin(
    connection: &mut AnyConnection,
    email: &Email,
    first_name: &str,
    last_name: &str,
    now: i64,
) -> ApiResult<String> {
    if let Some(row) = sqlx::query("SELECT id, kind FROM principals WHERE email_canonical = $1")
        .bind(email.canonical())
        .fetch_optional(&mut *connection)
        .await
        .map_err(|e| ApiError::internal("find the admin", e))?
    {
        return Ok(row.get(0));
    }
    let id = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO principals (id, kind, email, email_canonical, first_name, last_name, created_at) \
         VALUES ($1, 'admin', $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(email.as_str())
    .bind(email.canonical())
    .bind(first_name)
    .bind(last_name)
    .bind(now)
    .execute(&mut *connection)
    .await
    .map_err(|e| ApiError::internal("create the admin", e))?;
    Ok(id)
}

/// Removes an admin from an account: every grant it holds there, after the last-owner check.
pub async fn remove_admin(
    State(state): State<AppState>,
    principal: Principal,
    Path((account_id, admin_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let now = state.now();
    let mut tx = state.begin().await?;
    authorize(
        &mut tx.tx,
        &principal,
        &account_id,
        Permission::AdminUsersWrite,
    )
    .await?;
    let removed = revoke_where(&mut tx, &account_id, now, |_, grant| {
        grant.subject.0 == admin_id
    })
    .await?;
    if removed == 0 {
        return Err(ApiError::not_found("admin", &admin_id));
    }
    tx.emit(
        NewEvent {
            event_type: EventType::AdminRemoved,
            object_kind: "Admin",
            object_id: &admin_id,
            account_id: Some(&account_id),
            external_ref: None,
            data: serde_json::json!({ "grantsRevoked": removed }),
        },
        now,
    );
    tx.commit().await.map_err(db_error("commit"))?;
    Ok(StatusCode::NO_CONTENT)
}

// --- access ------------------------------------------------------------------------------

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessQuery {
    /// An admin id or email.
    pub subject: String,
    /// An account id.
    pub account: String,
}

/// What `subject` may do on `account`, with the path that gives each permission. Anyone may ask
/// about themselves; asking about others needs `admin_users.read` on the account.
pub async fn access(
    State(state): State<AppState>,
    principal: Principal,
    Params(query): Params<AccessQuery>,
) -> ApiResult<Json<EffectiveAccess>> {
    let mut connection = state.connection().await?;
    let subject_id = if query.subject.contains('@') {
        find_admin(&mut connection, None, Some(&query.subject)).await?
    } else {
        query.subject.clone()
    };
    let permission = if subject_id == principal.id {
        Permission::AccountsRead
    } else {
        Permission::AdminUsersRead
    };
    let tree = authorize(&mut connection, &principal, &query.account, permission)
        .await?
        .tree;
    let grants = grants_of(&mut connection, &subject_id).await?;
    let access = effective_access(
        &grants,
        &tree,
        &subject_id.as_str().into(),
        &query.account.as_str().into(),
    )
    .map_err(|e| ApiError::internal("evaluate access", e))?;
    Ok(Json(access))
}
