//! Admin invitations: `/v1/accounts/{id}/invitations`, `/v1/invitations/{id}`.
//!
//! An invitation's token is 256 random bits, shown once (in the create or resend response for
//! Link delivery, or in the email) and stored only as its SHA-256. Expiry is exact: a Pending
//! invitation past `expiresAt` reads as Expired at once, and the expiry sweeper records the
//! change and emits `invitation.expired` when that moment passes.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};

use super::accounts::if_match;
use super::auth::{Principal, authorize, hash_secret, random_token, subtree_for};
use super::grants::{check_may_grant, parse_roles};
use super::json::{JsonBody, Page, PageQuery};
use super::problem::{ApiError, ApiResult, ProblemKind};
use super::store::{NewEvent, Store, WriteTx};
use super::time::format_millis;
use super::{AppState, SecretResponse, db_error};
use crate::domain::{
    Email, GrantAction, GrantScope, InvitationLifetime, Permission, Role, person_name,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delivery {
    Email,
    Link,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InvitationState {
    Pending,
    Accepted,
    Expired,
    Revoked,
}

impl InvitationState {
    fn as_str(self) -> &'static str {
        match self {
            InvitationState::Pending => "Pending",
            InvitationState::Accepted => "Accepted",
            InvitationState::Expired => "Expired",
            InvitationState::Revoked => "Revoked",
        }
    }
}

/// An invitation as stored.
#[derive(Debug, Clone)]
pub struct InvitationRow {
    pub id: String,
    pub account_id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub roles: Vec<Role>,
    pub delivery: Delivery,
    pub stored_state: InvitationState,
    pub external_ref: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub accepted_at: Option<i64>,
    pub accepted_by: Option<String>,
    pub revoked_at: Option<i64>,
    pub sends: i64,
    pub version: i64,
}

const COLUMNS: &str = "id, account_id, email, first_name, last_name, roles, delivery, state, external_ref, created_at, \
                       expires_at, accepted_at, accepted_by, revoked_at, sends, version";

impl InvitationRow {
    fn from_row(row: &sqlx::any::AnyRow) -> ApiResult<InvitationRow> {
        let roles: String = row.get("roles");
        let state: String = row.get("state");
        let delivery: String = row.get("delivery");
        Ok(InvitationRow {
            id: row.get("id"),
            account_id: row.get("account_id"),
            email: row.get("email"),
            first_name: row.get("first_name"),
            last_name: row.get("last_name"),
            roles: roles
                .split(',')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .map_err(|e| ApiError::internal("read a stored invitation", e))?,
            delivery: if delivery == "Link" {
                Delivery::Link
            } else {
                Delivery::Email
            },
            stored_state: match state.as_str() {
                "Accepted" => InvitationState::Accepted,
                "Expired" => InvitationState::Expired,
                "Revoked" => InvitationState::Revoked,
                _ => InvitationState::Pending,
            },
            external_ref: row.get("external_ref"),
            created_at: row.get("created_at"),
            expires_at: row.get("expires_at"),
            accepted_at: row.get("accepted_at"),
            accepted_by: row.get("accepted_by"),
            revoked_at: row.get("revoked_at"),
            sends: row.get("sends"),
            version: row.get("version"),
        })
    }

    /// The state as of `now`: a Pending invitation past its expiry is Expired.
    pub fn state(&self, now: i64) -> InvitationState {
        match self.stored_state {
            InvitationState::Pending if now >= self.expires_at => InvitationState::Expired,
            state => state,
        }
    }

    pub fn view(&self, now: i64) -> InvitationView {
        InvitationView {
            id: self.id.clone(),
            account_id: self.account_id.clone(),
            email: self.email.clone(),
            first_name: self.first_name.clone(),
            last_name: self.last_name.clone(),
            roles: self.roles.clone(),
            delivery: self.delivery,
            state: self.state(now),
            external_ref: self.external_ref.clone(),
            created_at: format_millis(self.created_at),
            expires_at: format_millis(self.expires_at),
            accepted_at: self.accepted_at.map(format_millis),
            accepted_by: self.accepted_by.clone(),
            revoked_at: self.revoked_at.map(format_millis),
            sends: self.sends,
            version: self.version,
            link: None,
        }
    }
}

/// An invitation on the wire. `link` is present only in the response that issued its token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct InvitationView {
    pub id: String,
    pub account_id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub roles: Vec<Role>,
    pub delivery: Delivery,
    pub state: InvitationState,
    pub external_ref: Option<String>,
    pub created_at: String,
    pub expires_at: String,
    pub accepted_at: Option<String>,
    pub accepted_by: Option<String>,
    pub revoked_at: Option<String>,
    pub sends: i64,
    pub version: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

pub async fn find(connection: &mut AnyConnection, id: &str) -> ApiResult<Option<InvitationRow>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM invitations WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *connection)
    .await
    .map_err(|e| ApiError::internal("read the invitation", e))?
    .as_ref()
    .map(InvitationRow::from_row)
    .transpose()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateInvitation {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    #[serde(default)]
    pub delivery: Option<Delivery>,
    #[serde(default)]
    pub expires_after: Option<String>,
    #[serde(default)]
    pub external_ref: Option<String>,
}

fn roles_text(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Path(account_id): Path<String>,
    JsonBody(body): JsonBody<CreateInvitation>,
) -> ApiResult<Response> {
    let email = Email::parse(&body.email)?;
    let first_name = person_name("firstName", &body.first_name)?;
    let last_name = person_name("lastName", &body.last_name)?;
    let roles = match &body.roles {
        None => vec![Role::DEFAULT],
        Some(names) => parse_roles(names)?,
    };
    let lifetime = match &body.expires_after {
        None => InvitationLifetime::DEFAULT,
        Some(text) => InvitationLifetime::parse(text)?,
    };
    let external_ref = match &body.external_ref {
        Some(r) if r.is_empty() || r.len() > 512 || r.chars().any(char::is_control) => {
            return Err(ApiError::invalid(
                "/externalRef",
                "externalRef must hold 1 to 512 printable characters",
            ));
        }
        other => other.clone(),
    };
    let delivery = body.delivery.unwrap_or(Delivery::Email);
    let now = state.now();
    let mut tx = state
        .store
        .write()
        .await
        .map_err(db_error("start a transaction"))?;
    let access = authorize(
        &mut tx.tx,
        &principal,
        &account_id,
        Permission::AdminInvitationsWrite,
    )
    .await?;
    let tree = subtree_for(&mut tx.tx, &account_id).await?;
    check_may_grant(
        &mut tx.tx,
        &tree,
        &principal,
        GrantAction::Invite,
        &account_id,
        &roles,
        GrantScope::AccountAndDescendants,
    )
    .await?;
    if let Some(external_ref) = &external_ref
        && let Some(existing) = sqlx::query("SELECT id FROM invitations WHERE external_ref = $1")
            .bind(external_ref)
            .fetch_optional(&mut *tx.tx)
            .await
            .map_err(db_error("check the external reference"))?
    {
        let existing: String = existing.get(0);
        return Err(ApiError::new(
            ProblemKind::ExternalRefConflict,
            format!("externalRef {external_ref:?} already belongs to invitation {existing}"),
        )
        .at("/externalRef"));
    }
    let token = random_token(32);
    let row = InvitationRow {
        id: uuid::Uuid::now_v7().to_string(),
        account_id: account_id.clone(),
        email: email.to_string(),
        first_name,
        last_name,
        roles,
        delivery,
        stored_state: InvitationState::Pending,
        external_ref,
        created_at: now,
        expires_at: now + lifetime.as_duration().as_millis() as i64,
        accepted_at: None,
        accepted_by: None,
        revoked_at: None,
        sends: 1,
        version: 1,
    };
    sqlx::query(
        "INSERT INTO invitations (id, account_id, email, email_canonical, first_name, last_name, roles, delivery, state, \
         token_hash, external_ref, created_by, created_at, expires_at, sends, version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'Pending', $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(&row.id)
    .bind(&row.account_id)
    .bind(&row.email)
    .bind(email.canonical())
    .bind(&row.first_name)
    .bind(&row.last_name)
    .bind(roles_text(&row.roles))
    .bind(match delivery {
        Delivery::Email => "Email",
        Delivery::Link => "Link",
    })
    .bind(hash_secret(&token))
    .bind(&row.external_ref)
    .bind(&principal.id)
    .bind(row.created_at)
    .bind(row.expires_at)
    .bind(row.sends)
    .bind(row.version)
    .execute(&mut *tx.tx)
    .await
    .map_err(db_error("create the invitation"))?;
    let link = state.invitation_link(&token);
    if delivery == Delivery::Email {
        queue_invitation_email(&mut tx, &row, &access.account.display_name, &link, now).await?;
    }
    tx.emit(invitation_event("invitation.created", &row), now)
        .await
        .map_err(db_error("record the event"))?;
    tx.commit().await.map_err(db_error("commit"))?;
    state.expiry_changed();
    Ok(with_link(StatusCode::CREATED, &row, now, delivery, link))
}

fn with_link(
    status: StatusCode,
    row: &InvitationRow,
    now: i64,
    delivery: Delivery,
    link: String,
) -> Response {
    let mut view = row.view(now);
    let secret = delivery == Delivery::Link;
    if secret {
        view.link = Some(link);
    }
    let mut response = (status, Json(view)).into_response();
    response
        .headers_mut()
        .insert(header::ETAG, etag(row.version));
    if secret {
        response.extensions_mut().insert(SecretResponse);
    }
    response
}

fn etag(version: i64) -> header::HeaderValue {
    header::HeaderValue::from_str(&format!("\"{version}\"")).expect("digits are a valid header")
}

async fn queue_invitation_email(
    tx: &mut WriteTx,
    row: &InvitationRow,
    account_name: &str,
    link: &str,
    now: i64,
) -> ApiResult<()> {
    let roles = row
        .roles
        .iter()
        .map(|r| r.spec().display_name)
        .collect::<Vec<_>>()
        .join(", ");
    let hours = (row.expires_at - now).max(0) / 3_600_000;
    let body = format!(
        "Hello {first},\n\n\
         You have been invited to administer {account_name} in the admin portal, with the role(s): {roles}.\n\n\
         Accept the invitation: {link}\n\n\
         The link works once and expires in {hours} hours. You will sign in with a Microsoft 365 account of the\n\
         tenant you were invited to; this email address does not need to be a Microsoft 365 mailbox.\n\
         If you see \"unknown account\", sign out of all Microsoft accounts or open the link in a private window.\n",
        first = row.first_name,
    );
    sqlx::query("INSERT INTO outbox (id, to_address, subject, body, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(&row.email)
        .bind(format!("You are invited to administer {account_name}"))
        .bind(body)
        .bind(now)
        .execute(&mut *tx.tx)
        .await
        .map_err(db_error("queue the invitation email"))?;
    Ok(())
}

fn invitation_event<'a>(event_type: &'a str, row: &'a InvitationRow) -> NewEvent<'a> {
    NewEvent {
        event_type,
        object_kind: "AdminInvitation",
        object_id: &row.id,
        account_id: Some(&row.account_id),
        external_ref: row.external_ref.as_deref(),
        data: serde_json::json!({
            "email": row.email, "roles": row.roles, "expiresAt": format_millis(row.expires_at),
            "acceptedBy": row.accepted_by,
        }),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListQuery {
    /// Comma-separated states; by default Pending and Expired, as the portal lists them.
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub external_ref: Option<String>,
    #[serde(flatten)]
    pub page: PageQuery,
}

pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path(account_id): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Page<InvitationView>>> {
    let limit = query.page.limit()?;
    let after = query.page.after()?;
    let wanted: Vec<InvitationState> = match &query.state {
        None => vec![InvitationState::Pending, InvitationState::Expired],
        Some(text) => text
            .split(',')
            .map(|s| match s.trim() {
                "Pending" => Ok(InvitationState::Pending),
                "Accepted" => Ok(InvitationState::Accepted),
                "Expired" => Ok(InvitationState::Expired),
                "Revoked" => Ok(InvitationState::Revoked),
                other => Err(ApiError::invalid(
                    "/state",
                    format!("unknown state {other:?}; use Pending, Accepted, Expired or Revoked"),
                )),
            })
            .collect::<ApiResult<_>>()?,
    };
    let now = state.now();
    let mut connection = state.connection().await?;
    authorize(
        &mut connection,
        &principal,
        &account_id,
        Permission::AdminInvitationsReadRoles,
    )
    .await?;
    // Stored Pending rows past expiry are Expired; the flags below fold that into the filter.
    let has = |s| i64::from(wanted.contains(&s));
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM invitations WHERE account_id = $1 AND id > $2 \
         AND ($3 IS NULL OR external_ref = $3) \
         AND ((state = 'Pending' AND expires_at > $4 AND $5 = 1) \
           OR ((state = 'Expired' OR (state = 'Pending' AND expires_at <= $4)) AND $6 = 1) \
           OR (state = 'Accepted' AND $7 = 1) OR (state = 'Revoked' AND $8 = 1)) \
         ORDER BY id LIMIT $9"
    )))
    .bind(&account_id)
    .bind(&after)
    .bind(&query.external_ref)
    .bind(now)
    .bind(has(InvitationState::Pending))
    .bind(has(InvitationState::Expired))
    .bind(has(InvitationState::Accepted))
    .bind(has(InvitationState::Revoked))
    .bind(limit + 1)
    .fetch_all(&mut *connection)
    .await
    .map_err(|e| ApiError::internal("list invitations", e))?;
    let views = rows
        .iter()
        .map(|row| InvitationRow::from_row(row).map(|r| r.view(now)))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(Page::new(views, limit, |i| i.id.clone())))
}

/// Loads an invitation and checks the caller's permission on its account; an invitation on an
/// account the caller cannot see is not found.
async fn authorized(
    connection: &mut AnyConnection,
    principal: &Principal,
    id: &str,
    permission: Permission,
) -> ApiResult<(InvitationRow, super::auth::AccountAccess)> {
    let row = find(connection, id)
        .await?
        .ok_or_else(|| ApiError::not_found("invitation", id))?;
    let access = authorize(connection, principal, &row.account_id, permission)
        .await
        .map_err(|e| {
            if e.kind == ProblemKind::NotFound {
                ApiError::not_found("invitation", id)
            } else {
                e
            }
        })?;
    Ok((row, access))
}

pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let now = state.now();
    let mut connection = state.connection().await?;
    let (row, _) = authorized(
        &mut connection,
        &principal,
        &id,
        Permission::AdminInvitationsReadRoles,
    )
    .await?;
    let mut response = Json(row.view(now)).into_response();
    response
        .headers_mut()
        .insert(header::ETAG, etag(row.version));
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateInvitation {
    pub roles: Vec<String>,
}

fn require_pending(row: &InvitationRow, now: i64, doing: &str) -> ApiResult<()> {
    match row.state(now) {
        InvitationState::Pending => Ok(()),
        InvitationState::Expired => Err(ApiError::new(
            ProblemKind::InvitationExpired,
            format!(
                "invitation {} expired at {}; {doing} is not possible, create a new invitation",
                row.id,
                format_millis(row.expires_at)
            ),
        )),
        other => Err(ApiError::new(
            ProblemKind::InvitationNotPending,
            format!(
                "invitation {} is {}; {doing} needs a Pending invitation",
                row.id,
                other.as_str()
            ),
        )),
    }
}

/// Changes the roles of a Pending invitation (If-Match required).
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<UpdateInvitation>,
) -> ApiResult<Response> {
    let expected = if_match(&headers)?;
    let roles = parse_roles(&body.roles)?;
    let now = state.now();
    let mut tx = state
        .store
        .write()
        .await
        .map_err(db_error("start a transaction"))?;
    let (mut row, _) = authorized(
        &mut tx.tx,
        &principal,
        &id,
        Permission::AdminInvitationsWrite,
    )
    .await?;
    if row.version != expected {
        return Err(ApiError::new(
            ProblemKind::PreconditionFailed,
            format!(
                "invitation {id} is at version {} but If-Match named {expected}; read it again and retry",
                row.version
            ),
        ));
    }
    require_pending(&row, now, "changing its roles")?;
    let tree = subtree_for(&mut tx.tx, &row.account_id).await?;
    check_may_grant(
        &mut tx.tx,
        &tree,
        &principal,
        GrantAction::Invite,
        &row.account_id,
        &roles,
        GrantScope::AccountAndDescendants,
    )
    .await?;
    if roles != row.roles {
        row.roles = roles;
        row.version += 1;
        sqlx::query("UPDATE invitations SET roles = $1, version = $2 WHERE id = $3")
            .bind(roles_text(&row.roles))
            .bind(row.version)
            .bind(&id)
            .execute(&mut *tx.tx)
            .await
            .map_err(db_error("update the invitation"))?;
        tx.emit(invitation_event("invitation.updated", &row), now)
            .await
            .map_err(db_error("record the event"))?;
        tx.commit().await.map_err(db_error("commit"))?;
    }
    let mut response = Json(row.view(now)).into_response();
    response
        .headers_mut()
        .insert(header::ETAG, etag(row.version));
    Ok(response)
}

/// Revokes a Pending or Expired invitation. Revoking twice is fine; an Accepted invitation
/// cannot be revoked (remove the admin's grants instead).
pub async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let now = state.now();
    let mut tx = state
        .store
        .write()
        .await
        .map_err(db_error("start a transaction"))?;
    let (mut row, _) = authorized(
        &mut tx.tx,
        &principal,
        &id,
        Permission::AdminInvitationsWrite,
    )
    .await?;
    match row.state(now) {
        InvitationState::Revoked => return Ok(StatusCode::NO_CONTENT),
        InvitationState::Accepted => {
            return Err(ApiError::new(
                ProblemKind::InvitationNotPending,
                format!(
                    "invitation {id} was accepted; to take access away, remove the admin's grants"
                ),
            ));
        }
        InvitationState::Pending | InvitationState::Expired => {}
    }
    row.stored_state = InvitationState::Revoked;
    row.revoked_at = Some(now);
    row.version += 1;
    sqlx::query("UPDATE invitations SET state = 'Revoked', revoked_at = $1, token_hash = NULL, version = $2 WHERE id = $3")
        .bind(now)
        .bind(row.version)
        .bind(&id)
        .execute(&mut *tx.tx)
        .await
        .map_err(db_error("revoke the invitation"))?;
    tx.emit(invitation_event("invitation.revoked", &row), now)
        .await
        .map_err(db_error("record the event"))?;
    tx.commit().await.map_err(db_error("commit"))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Issues a new token for a Pending invitation (the old link stops working) and sends it again:
/// by email, or in this response for Link delivery. The expiry does not move.
pub async fn resend(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let now = state.now();
    let mut tx = state
        .store
        .write()
        .await
        .map_err(db_error("start a transaction"))?;
    let (mut row, access) = authorized(
        &mut tx.tx,
        &principal,
        &id,
        Permission::AdminInvitationsWrite,
    )
    .await?;
    require_pending(&row, now, "resending it")?;
    let token = random_token(32);
    row.sends += 1;
    row.version += 1;
    sqlx::query("UPDATE invitations SET token_hash = $1, sends = $2, version = $3 WHERE id = $4")
        .bind(hash_secret(&token))
        .bind(row.sends)
        .bind(row.version)
        .bind(&id)
        .execute(&mut *tx.tx)
        .await
        .map_err(db_error("resend the invitation"))?;
    let link = state.invitation_link(&token);
    if row.delivery == Delivery::Email {
        queue_invitation_email(&mut tx, &row, &access.account.display_name, &link, now).await?;
    }
    tx.emit(invitation_event("invitation.resent", &row), now)
        .await
        .map_err(db_error("record the event"))?;
    tx.commit().await.map_err(db_error("commit"))?;
    let delivery = row.delivery;
    Ok(with_link(StatusCode::OK, &row, now, delivery, link))
}

/// Marks every Pending invitation past its expiry as Expired and emits `invitation.expired`
/// for each. Returns when the next one expires, if any.
pub async fn sweep_expired(store: &Store, now: i64) -> Result<Option<i64>, sqlx::Error> {
    let due = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM invitations WHERE state = 'Pending' AND expires_at <= $1 ORDER BY expires_at LIMIT 500"
    )))
    .bind(now)
    .fetch_all(&store.pool)
    .await?;
    if !due.is_empty() {
        let mut tx = store.write().await?;
        for row in &due {
            let Ok(mut row) = InvitationRow::from_row(row) else {
                continue;
            };
            row.version += 1;
            let updated = sqlx::query(
                "UPDATE invitations SET state = 'Expired', token_hash = NULL, version = $1 WHERE id = $2 AND state = 'Pending'",
            )
            .bind(row.version)
            .bind(&row.id)
            .execute(&mut *tx.tx)
            .await?
            .rows_affected();
            if updated > 0 {
                row.stored_state = InvitationState::Expired;
                tx.emit(invitation_event("invitation.expired", &row), now)
                    .await?;
            }
        }
        tx.commit().await?;
    }
    let next = sqlx::query("SELECT MIN(expires_at) FROM invitations WHERE state = 'Pending'")
        .fetch_one(&store.pool)
        .await?
        .try_get::<Option<i64>, _>(0)?;
    Ok(next)
}

/// How long the sweeper sleeps at most, so a moved test clock or a missed wake-up is noticed.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(500);
