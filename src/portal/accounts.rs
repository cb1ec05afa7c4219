//! `/v1/accounts`: the partner → client tree.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sqlx::{AnyConnection, Row};

use super::auth::{Principal, authorize};
use super::json::{JsonBody, PageQuery, Params};
use super::problem::{ApiError, ApiResult, ProblemType};
use super::store::NewEvent;
use super::{AppState, db_error};
use crate::api::EventType;
use crate::api::time::format_millis;
pub use crate::api::{AccountView, CreateAccount, Page, Patch, UpdateAccount};
use crate::domain::{Account, AccountKind, AccountTree, Permission};

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    pub id: String,
    pub parent_id: Option<String>,
    pub kind: AccountKind,
    pub display_name: String,
    pub tenant_id: Option<String>,
    pub sub_contract: bool,
    pub external_id: Option<String>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, parent_id, kind, display_name, tenant_id, sub_contract, external_id, version, created_at, updated_at";

impl AccountRow {
    fn from_row(row: &sqlx::any::AnyRow) -> AccountRow {
        let kind: String = row.get("kind");
        AccountRow {
            id: row.get("id"),
            parent_id: row.get("parent_id"),
            kind: if kind == "Partner" {
                AccountKind::Partner
            } else {
                AccountKind::Client
            },
            display_name: row.get("display_name"),
            tenant_id: row.get("tenant_id"),
            sub_contract: row.get::<i64, _>("sub_contract") != 0,
            external_id: row.get("external_id"),
            version: row.get("version"),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
        }
    }

    pub fn to_domain(&self) -> Account {
        Account {
            id: self.id.as_str().into(),
            parent: self.parent_id.as_deref().map(Into::into),
            kind: self.kind,
            sub_contract: self.sub_contract,
            tenant_id: self.tenant_id.clone(),
        }
    }

    pub fn etag(&self) -> HeaderValue {
        HeaderValue::from_str(&format!("\"{}\"", self.version)).expect("digits are a valid header")
    }

    fn view(&self) -> AccountView {
        AccountView {
            id: self.id.clone(),
            parent_id: self.parent_id.clone(),
            account_type: self.kind,
            display_name: self.display_name.clone(),
            tenant_id: self.tenant_id.clone(),
            sub_contract: self.sub_contract,
            external_id: self.external_id.clone(),
            version: self.version,
            created_at: format_millis(self.created_at),
            updated_at: format_millis(self.updated_at),
        }
    }
}

/// The account and its ancestors, nearest first. Empty when the account does not exist.
pub async fn load_chain(
    connection: &mut AnyConnection,
    account_id: &str,
) -> ApiResult<Vec<AccountRow>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH RECURSIVE chain (id) AS ( \
             SELECT id FROM accounts WHERE id = $1 \
             UNION ALL SELECT a.parent_id FROM accounts a JOIN chain c ON a.id = c.id WHERE a.parent_id IS NOT NULL) \
         SELECT {COLUMNS} FROM accounts WHERE id IN (SELECT id FROM chain)"
    )))
    .bind(account_id)
    .fetch_all(&mut *connection)
    .await
    .map_err(|e| ApiError::internal("read the account tree", e))?;
    Ok(rows.iter().map(AccountRow::from_row).collect())
}

/// The account, its ancestors and all its descendants.
pub async fn load_subtree(
    connection: &mut AnyConnection,
    account_id: &str,
) -> ApiResult<Vec<AccountRow>> {
    let mut rows = load_chain(connection, account_id).await?;
    rows.extend(load_descendants(connection, account_id).await?);
    Ok(rows)
}

/// Every account below `account_id`.
pub async fn load_descendants(
    connection: &mut AnyConnection,
    account_id: &str,
) -> ApiResult<Vec<AccountRow>> {
    let mut rows = Vec::new();
    let below = sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH RECURSIVE below (id) AS ( \
             SELECT id FROM accounts WHERE parent_id = $1 \
             UNION ALL SELECT a.id FROM accounts a JOIN below b ON a.parent_id = b.id) \
         SELECT {COLUMNS} FROM accounts WHERE id IN (SELECT id FROM below)"
    )))
    .bind(account_id)
    .fetch_all(&mut *connection)
    .await
    .map_err(|e| ApiError::internal("read the account tree", e))?;
    rows.extend(below.iter().map(AccountRow::from_row));
    Ok(rows)
}

pub async fn find_account(
    connection: &mut AnyConnection,
    account_id: &str,
) -> ApiResult<Option<AccountRow>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM accounts WHERE id = $1"
    )))
    .bind(account_id)
    .fetch_optional(&mut *connection)
    .await
    .map_err(|e| ApiError::internal("read the account", e))?;
    Ok(row.as_ref().map(AccountRow::from_row))
}

fn check_display_name(name: &str) -> ApiResult<String> {
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed.chars().count() > 200 {
        return Err(ApiError::invalid(
            "/displayName",
            "displayName must hold 1 to 200 characters",
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "/displayName",
            "displayName may not hold control characters",
        ));
    }
    Ok(trimmed.to_owned())
}

/// A Microsoft 365 tenant id is a GUID.
fn check_tenant_id(tenant: &str) -> ApiResult<String> {
    uuid::Uuid::parse_str(tenant.trim())
        .map(|id| id.hyphenated().to_string())
        .map_err(|_| {
            ApiError::invalid(
                "/tenantId",
                format!("tenantId {tenant:?} is not a Microsoft 365 tenant id; it must be a GUID such as 72f988bf-86f1-41af-91ab-2d7cd011db47"),
            )
        })
}

fn check_external_id(external_id: &str) -> ApiResult<String> {
    if external_id.is_empty()
        || external_id.len() > 253
        || external_id.chars().any(char::is_control)
    {
        return Err(ApiError::invalid(
            "/externalId",
            "externalId must hold 1 to 253 printable characters",
        ));
    }
    Ok(external_id.to_owned())
}

pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(body): JsonBody<CreateAccount>,
) -> ApiResult<Response> {
    let display_name = check_display_name(&body.display_name)?;
    let tenant_id = body.tenant_id.as_deref().map(check_tenant_id).transpose()?;
    let external_id = body
        .external_id
        .as_deref()
        .map(check_external_id)
        .transpose()?;
    let now = state.now();
    let mut tx = state.begin().await?;
    let tree = match &body.parent_id {
        None => {
            if !principal.is_platform() {
                return Err(ApiError::forbidden(
                    "only the platform principal may create top-level accounts; give a parentId",
                ));
            }
            AccountTree::default()
        }
        Some(parent) => {
            authorize(&mut tx.tx, &principal, parent, Permission::AccountsCreate)
                .await?
                .tree
        }
    };
    let id = uuid::Uuid::now_v7().to_string();
    let row = AccountRow {
        id: id.clone(),
        parent_id: body.parent_id.clone(),
        kind: body.account_type,
        display_name,
        tenant_id,
        sub_contract: body.sub_contract,
        external_id,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    tree.check_insert(&row.to_domain())?;
    if let Some(external_id) = &row.external_id {
        ensure_external_id_free(&mut tx.tx, external_id, None).await?;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO accounts ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    )))
    .bind(&row.id)
    .bind(&row.parent_id)
    .bind(row.kind.to_string())
    .bind(&row.display_name)
    .bind(&row.tenant_id)
    .bind(i64::from(row.sub_contract))
    .bind(&row.external_id)
    .bind(row.version)
    .bind(row.created_at)
    .bind(row.updated_at)
    .execute(&mut *tx.tx)
    .await
    .map_err(db_error("create the account"))?;
    tx.emit(account_event(EventType::AccountCreated, &row), now);
    tx.commit_response(account_response(StatusCode::CREATED, &row))
        .await
}

fn account_event<'a>(event_type: EventType, row: &'a AccountRow) -> NewEvent<'a> {
    NewEvent {
        event_type,
        object_kind: "Account",
        object_id: &row.id,
        account_id: Some(&row.id),
        external_ref: row.external_id.as_deref(),
        data: serde_json::json!({ "displayName": row.display_name, "parentId": row.parent_id }),
    }
}

async fn ensure_external_id_free(
    connection: &mut AnyConnection,
    external_id: &str,
    except: Option<&str>,
) -> ApiResult<()> {
    let taken = sqlx::query("SELECT id FROM accounts WHERE external_id = $1")
        .bind(external_id)
        .fetch_optional(&mut *connection)
        .await
        .map_err(|e| ApiError::internal("check the external id", e))?
        .map(|row| row.get::<String, _>(0));
    match taken {
        Some(id) if Some(id.as_str()) != except => Err(ApiError::new(
            ProblemType::ExternalIdConflict,
            format!("externalId {external_id:?} already belongs to another account"),
        )
        .at("/externalId")),
        _ => Ok(()),
    }
}

fn account_response(status: StatusCode, row: &AccountRow) -> Response {
    let mut response = (status, Json(row.view())).into_response();
    response.headers_mut().insert(header::ETAG, row.etag());
    response
}

pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let mut connection = state.connection().await?;
    let access = authorize(&mut connection, &principal, &id, Permission::AccountsRead).await?;
    Ok(account_response(StatusCode::OK, &access.account))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListQuery {
    /// List this account's children.
    #[serde(default)]
    pub parent_id: Option<String>,
    /// Find the account with this external id.
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(flatten)]
    pub page: PageQuery,
}

/// `?externalId=` finds one account; `?parentId=` lists its children; neither lists the
/// caller's top-level accounts (for an admin, the accounts it holds grants on).
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Params(query): Params<ListQuery>,
) -> ApiResult<Json<Page<AccountView>>> {
    let limit = query.page.limit()?;
    let after = query.page.after()?;
    let mut connection = state.connection().await?;
    if let Some(external_id) = &query.external_id {
        let found = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM accounts WHERE external_id = $1"
        )))
        .bind(external_id)
        .fetch_optional(&mut *connection)
        .await
        .map_err(|e| ApiError::internal("find the account", e))?
        .map(|row| AccountRow::from_row(&row));
        let visible = match found {
            Some(row) => authorize(
                &mut connection,
                &principal,
                &row.id,
                Permission::AccountsRead,
            )
            .await
            .ok()
            .map(|access| access.account.view()),
            None => None,
        };
        return Ok(Json(Page::new(visible.into_iter().collect(), limit, |a| {
            a.id.clone()
        })));
    }
    let rows = match &query.parent_id {
        Some(parent) => {
            authorize(&mut connection, &principal, parent, Permission::AccountsRead).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM accounts WHERE parent_id = $1 AND id > $2 ORDER BY id LIMIT $3"
            )))
            .bind(parent)
            .bind(&after)
            .bind(limit + 1)
            .fetch_all(&mut *connection)
            .await
        }
        None if principal.is_platform() => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM accounts WHERE parent_id IS NULL AND id > $1 ORDER BY id LIMIT $2"
            )))
            .bind(&after)
            .bind(limit + 1)
            .fetch_all(&mut *connection)
            .await
        }
        None => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM accounts WHERE id IN (SELECT account_id FROM grants WHERE principal_id = $1) \
                 AND id > $2 ORDER BY id LIMIT $3"
            )))
            .bind(&principal.id)
            .bind(&after)
            .bind(limit + 1)
            .fetch_all(&mut *connection)
            .await
        }
    }
    .map_err(|e| ApiError::internal("list accounts", e))?;
    let views = rows
        .iter()
        .map(|row| AccountRow::from_row(row).view())
        .collect();
    Ok(Json(Page::new(views, limit, |a| a.id.clone())))
}

/// Merge-patch of the mutable fields, guarded by `If-Match`. Changing `subContract` is a
/// contractual change: it needs `accounts.write` on the parent account, not on the account.
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<UpdateAccount>,
) -> ApiResult<Response> {
    let expected = if_match(&headers)?;
    let now = state.now();
    let mut tx = state.begin().await?;
    let access = authorize(&mut tx.tx, &principal, &id, Permission::AccountsWrite).await?;
    let mut row = access.account.clone();
    let read_version = row.version;
    expected.check("account", &id, row.version)?;
    if let Some(name) = &body.display_name {
        row.display_name = check_display_name(name)?;
    }
    match &body.tenant_id {
        Patch::Absent => {}
        Patch::Null => row.tenant_id = None,
        Patch::Value(tenant) => row.tenant_id = Some(check_tenant_id(tenant)?),
    }
    match &body.external_id {
        Patch::Absent => {}
        Patch::Null => row.external_id = None,
        Patch::Value(external_id) => {
            let external_id = check_external_id(external_id)?;
            ensure_external_id_free(&mut tx.tx, &external_id, Some(&id)).await?;
            row.external_id = Some(external_id);
        }
    }
    if let Some(sub_contract) = body.sub_contract
        && sub_contract != row.sub_contract
    {
        let allowed = match (&row.parent_id, principal.is_platform()) {
            (_, true) => true,
            (None, false) => false,
            (Some(parent), false) => {
                authorize(&mut tx.tx, &principal, parent, Permission::AccountsWrite)
                    .await
                    .is_ok()
            }
        };
        if !allowed {
            return Err(ApiError::forbidden(
                "subContract is a contractual change: it needs accounts.write on the parent account",
            )
            .at("/subContract"));
        }
        row.sub_contract = sub_contract;
    }
    if row == access.account {
        return Ok(account_response(StatusCode::OK, &row));
    }
    row.version += 1;
    row.updated_at = now;
    sqlx::query(
        "UPDATE accounts SET display_name = $1, tenant_id = $2, sub_contract = $3, external_id = $4, version = $5, \
         updated_at = $6 WHERE id = $7 AND version = $8",
    )
    .bind(&row.display_name)
    .bind(&row.tenant_id)
    .bind(i64::from(row.sub_contract))
    .bind(&row.external_id)
    .bind(row.version)
    .bind(row.updated_at)
    .bind(&id)
    .bind(read_version)
    .execute(&mut *tx.tx)
    .await
    .map_err(db_error("update the account"))?;
    tx.emit(account_event(EventType::AccountUpdated, &row), now);
    tx.commit().await.map_err(db_error("commit"))?;
    Ok(account_response(StatusCode::OK, &row))
}

/// What an `If-Match` header admits (RFC 9110 §13.1.1): `*` (any current version), or a list
/// of ETags (`"3"`, `W/"3"`, `"3", "4"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    Any,
    Versions(Vec<i64>),
}

impl IfMatch {
    pub fn admits(&self, version: i64) -> bool {
        match self {
            IfMatch::Any => true,
            IfMatch::Versions(versions) => versions.contains(&version),
        }
    }

    /// Refuses (412) an update of `what` `id`, now at `version`, that this header does not admit.
    pub fn check(&self, what: &str, id: &str, version: i64) -> ApiResult<()> {
        if self.admits(version) {
            return Ok(());
        }
        Err(ApiError::new(
            ProblemType::PreconditionFailed,
            format!(
                "{what} {id} is at version {version} but If-Match named {self}; read it again and retry"
            ),
        ))
    }
}

impl std::fmt::Display for IfMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IfMatch::Any => f.write_str("*"),
            IfMatch::Versions(versions) => f.write_str(
                &versions
                    .iter()
                    .map(|v| format!("\"{v}\""))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        }
    }
}

/// The `If-Match` header of an update (required: updates are conditional).
pub fn if_match(headers: &HeaderMap) -> ApiResult<IfMatch> {
    let value = headers.get(header::IF_MATCH).ok_or_else(|| {
        ApiError::new(
            ProblemType::PreconditionRequired,
            "updates need an If-Match header with the ETag of the version you read",
        )
    })?;
    parse_if_match(value.to_str().unwrap_or_default()).ok_or_else(|| {
        ApiError::new(
            ProblemType::PreconditionFailed,
            "If-Match must be * or ETags such as \"3\"",
        )
    })
}

/// `If-Match` where it may be left out (SCIM, RFC 7644 §3.14): absent admits any version.
pub fn optional_if_match(headers: &HeaderMap) -> ApiResult<IfMatch> {
    match headers.get(header::IF_MATCH) {
        None => Ok(IfMatch::Any),
        Some(_) => if_match(headers),
    }
}

fn parse_if_match(text: &str) -> Option<IfMatch> {
    if text.trim() == "*" {
        return Some(IfMatch::Any);
    }
    text.split(',')
        .map(|tag| {
            tag.trim()
                .trim_start_matches("W/")
                .strip_prefix('"')?
                .strip_suffix('"')?
                .parse()
                .ok()
        })
        .collect::<Option<Vec<i64>>>()
        .filter(|versions| !versions.is_empty())
        .map(IfMatch::Versions)
}

#[cfg(test)]
mod if_match_tests {
    use super::*;

    #[test]
    fn if_match_reads_a_star_and_lists_of_strong_or_weak_etags() {
        assert_eq!(parse_if_match("*"), Some(IfMatch::Any));
        assert_eq!(parse_if_match("\"3\""), Some(IfMatch::Versions(vec![3])));
        assert_eq!(
            parse_if_match("W/\"3\", \"4\""),
            Some(IfMatch::Versions(vec![3, 4]))
        );
        assert_eq!(parse_if_match("3"), None, "an ETag is quoted");
        assert_eq!(parse_if_match(""), None);
        assert!(IfMatch::Any.admits(17));
        assert!(!IfMatch::Versions(vec![3, 4]).admits(5));
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteQuery {
    /// Also delete child accounts, grants and invitations.
    #[serde(default)]
    pub cascade: bool,
    /// Remove the account's grants and invitations with it, but refuse while it has child
    /// accounts (what an operator's `deletionPolicy: Delete` means).
    #[serde(default)]
    pub remove_admins: bool,
}

/// Deletes an account. Needs `accounts.write` on its parent (the platform for a top-level
/// account). Refused while it has child accounts or admins, unless `?cascade=true`, which
/// removes the whole subtree with its grants and invitations; `?removeAdmins=true` removes the
/// account's own grants and invitations but still refuses while it has child accounts.
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Params(query): Params<DeleteQuery>,
) -> ApiResult<StatusCode> {
    let now = state.now();
    let mut tx = state.begin().await?;
    let access = authorize(&mut tx.tx, &principal, &id, Permission::AccountsRead).await?;
    match (&access.account.parent_id, principal.is_platform()) {
        (_, true) => {}
        (None, false) => {
            return Err(ApiError::forbidden(
                "only the platform principal may delete top-level accounts",
            ));
        }
        (Some(parent), false) => {
            authorize(&mut tx.tx, &principal, parent, Permission::AccountsWrite)
                .await
                .map_err(|_| {
                    ApiError::forbidden(format!(
                        "deleting account {id} needs accounts.write on its parent {parent}"
                    ))
                })?;
        }
    }
    let subtree = load_subtree(&mut tx.tx, &id).await?;
    let tree = AccountTree::new(subtree.iter().map(AccountRow::to_domain))
        .map_err(|e| ApiError::internal("load the account tree", e))?;
    let below: Vec<String> = tree
        .descendants(&id.as_str().into())
        .iter()
        .map(|a| a.id.to_string())
        .collect();
    let admins: i64 = sqlx::query("SELECT COUNT(*) FROM grants WHERE account_id = $1")
        .bind(&id)
        .fetch_one(&mut *tx.tx)
        .await
        .map_err(db_error("count admins"))?
        .get(0);
    let users: i64 = sqlx::query("SELECT COUNT(*) FROM service_users WHERE account_id = $1")
        .bind(&id)
        .fetch_one(&mut *tx.tx)
        .await
        .map_err(db_error("count users"))?
        .get(0);
    if !query.cascade && users > 0 {
        return Err(ApiError::new(
            ProblemType::AccountNotEmpty,
            format!(
                "account {id} still has {users} service user(s); deleting a user cannot be undone, so delete them first or delete the account with ?cascade=true"
            ),
        ));
    }
    if !query.cascade && query.remove_admins && !below.is_empty() {
        return Err(ApiError::new(
            ProblemType::AccountNotEmpty,
            format!(
                "account {id} still has {} child account(s); delete them first",
                below.len()
            ),
        ));
    }
    if !query.cascade && !query.remove_admins && (!below.is_empty() || admins > 0) {
        return Err(ApiError::new(
            ProblemType::AccountNotEmpty,
            format!(
                "account {id} still has {} child account(s) and {admins} role grant(s); remove them first or delete with ?cascade=true",
                below.len()
            ),
        ));
    }
    // Children first, so no foreign key ever points at a deleted row.
    for account_id in below.iter().rev().chain(std::iter::once(&id)) {
        for statement in [
            "DELETE FROM grants WHERE account_id = $1",
            "DELETE FROM invitations WHERE account_id = $1",
            "DELETE FROM account_managers WHERE account_id = $1",
            "DELETE FROM user_role_holders WHERE role_id IN (SELECT id FROM user_roles WHERE account_id = $1)",
            "DELETE FROM team_members WHERE team_id IN (SELECT id FROM teams WHERE account_id = $1)",
            "DELETE FROM team_roles WHERE team_id IN (SELECT id FROM teams WHERE account_id = $1)",
            "DELETE FROM user_roles WHERE account_id = $1",
            "DELETE FROM teams WHERE account_id = $1",
            "DELETE FROM service_users WHERE account_id = $1",
            "DELETE FROM subscriptions WHERE account_id = $1",
            // Its SCIM tokens go with it.
            "DELETE FROM api_keys WHERE scim_account_id = $1",
            "DELETE FROM accounts WHERE id = $1",
        ] {
            sqlx::query(statement)
                .bind(account_id)
                .execute(&mut *tx.tx)
                .await
                .map_err(db_error("delete the account"))?;
        }
    }
    tx.emit(
        account_event(EventType::AccountDeleted, &access.account),
        now,
    );
    tx.commit().await.map_err(db_error("commit"))?;
    Ok(StatusCode::NO_CONTENT)
}
