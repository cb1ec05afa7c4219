//! Admin invitations: `/v1/accounts/{id}/invitations`, `/v1/invitations/{id}`.
//!
//! An invitation's token is 256 random bits, shown once (in the create or resend response for
//! Link delivery, or in the email) and stored only as its SHA-256. Expiry is exact: a Pending
//! invitation past `expiresAt` reads as Expired at once, and the expiry sweeper records the
//! change and emits `invitation.expired` when that moment passes.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sqlx::{AnyConnection, Row};

use super::accounts::if_match;
use super::auth::{Principal, authorize, authorize_for, hash_secret, random_token};
use super::grants::{check_may_grant_at, check_roles};
use super::json::{JsonBody, PageQuery, Params};
use super::problem::{ApiError, ApiResult, ProblemType};
use super::store::{Deferred, NewEvent, Store, WriteTx};
use super::{AppState, SecretResponse, db_error};
use crate::api::EventType;
use crate::api::time::format_millis;
pub use crate::api::{
    AcceptFailure, AcceptInvitation, Accepted, CreateInvitation, Delivery, DevAccept,
    InvitationState, InvitationView, Page, UpdateInvitation,
};
use crate::domain::{
    Email, GrantAction, GrantScope, InvitationLifetime, Permission, Role, person_name,
};

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
    pub failure: Option<AcceptFailure>,
    pub sends: i64,
    pub version: i64,
}

const COLUMNS: &str = "id, account_id, email, first_name, last_name, roles, delivery, state, external_ref, created_at, \
                       expires_at, accepted_at, accepted_by, revoked_at, failure_reason, failure_message, failure_at, sends, version";

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
            failure: match (
                row.get::<Option<String>, _>("failure_reason"),
                row.get::<Option<String>, _>("failure_message"),
            ) {
                (Some(reason), Some(message)) => Some(AcceptFailure {
                    reason,
                    message,
                    at: format_millis(row.get::<Option<i64>, _>("failure_at").unwrap_or_default()),
                }),
                _ => None,
            },
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
            last_failure: self.failure.clone(),
            sends: self.sends,
            version: self.version,
            link: None,
            link_redacted: None,
        }
    }
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
        Some(roles) => check_roles(roles)?,
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
    let mut tx = state.begin().await?;
    let access = authorize(
        &mut tx.tx,
        &principal,
        &account_id,
        Permission::AdminInvitationsWrite,
    )
    .await?;
    check_may_grant_at(
        &mut tx.tx,
        &access,
        &principal,
        GrantAction::Invite,
        &roles,
        GrantScope::AccountAndDescendants,
    )
    .await?;
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
        failure: None,
        sends: 1,
        version: 1,
    };
    tx.defer(
        Deferred::new(
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
        .bind(row.version),
    );
    let link = state.invitation_link(&token);
    if delivery == Delivery::Email {
        queue_invitation_email(&mut tx, &row, &access.account.display_name, &link, now);
    }
    tx.emit(invitation_event(EventType::InvitationCreated, &row), now);
    let response = match tx
        .commit_response(with_link(StatusCode::CREATED, &row, now, delivery, link))
        .await
    {
        Ok(response) => response,
        Err(error) => {
            // The unique index on externalRef is the check (no read before the write); name the
            // invitation that holds the reference.
            return Err(match (&error.kind, &row.external_ref) {
                (ProblemType::ExternalRefConflict, Some(external_ref)) => {
                    external_ref_conflict(&state, external_ref).await?
                }
                _ => error,
            });
        }
    };
    state.expiry_changed();
    state.mail_queued();
    Ok(response)
}

async fn external_ref_conflict(state: &AppState, external_ref: &str) -> ApiResult<ApiError> {
    let mut connection = state.connection().await?;
    let existing: Option<String> =
        sqlx::query("SELECT id FROM invitations WHERE external_ref = $1")
            .bind(external_ref)
            .fetch_optional(&mut *connection)
            .await
            .map_err(|e| ApiError::internal("find the invitation", e))?
            .map(|row| row.get(0));
    Ok(ApiError::new(
        ProblemType::ExternalRefConflict,
        format!(
            "externalRef {external_ref:?} already belongs to invitation {}",
            existing.as_deref().unwrap_or("(just deleted)")
        ),
    )
    .at("/externalRef"))
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

fn queue_invitation_email(
    tx: &mut WriteTx,
    row: &InvitationRow,
    account_name: &str,
    link: &str,
    now: i64,
) {
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
    super::mail::queue(
        tx,
        &row.email,
        &format!("You are invited to administer {account_name}"),
        &body,
        now,
        row.expires_at,
    );
}

fn invitation_event<'a>(event_type: EventType, row: &'a InvitationRow) -> NewEvent<'a> {
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

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListQuery {
    /// Comma-separated states (Pending, Accepted, Expired, Revoked); by default Pending and
    /// Expired, as the portal lists them.
    #[serde(default)]
    pub state: Option<String>,
    /// Only the invitation with this reference.
    #[serde(default)]
    pub external_ref: Option<String>,
    #[serde(flatten)]
    pub page: PageQuery,
}

pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path(account_id): Path<String>,
    Params(query): Params<ListQuery>,
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
    // A stored Pending row past its expiry is Expired. The state is computed in a CASE, which
    // no index can serve, so the planner always walks (account_id, id) in order and stops after
    // one page, whatever its statistics say (with none, it would sort every row of the account).
    let mut states = wanted.iter().map(|s| s.as_str()).collect::<Vec<_>>();
    states.sort_unstable();
    states.dedup();
    states.resize(4, "");
    const EFFECTIVE_STATE: &str =
        "CASE WHEN state = 'Pending' AND expires_at <= $3 THEN 'Expired' ELSE state END";
    let by_reference = if query.external_ref.is_some() {
        "AND external_ref = $9"
    } else {
        ""
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM invitations WHERE account_id = $1 AND id > $2 {by_reference} \
         AND {EFFECTIVE_STATE} IN ($4, $5, $6, $7) ORDER BY id LIMIT $8"
    );
    let mut statement = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&account_id)
        .bind(&after)
        .bind(now)
        .bind(states[0])
        .bind(states[1])
        .bind(states[2])
        .bind(states[3])
        .bind(limit + 1);
    if let Some(external_ref) = &query.external_ref {
        statement = statement.bind(external_ref);
    }
    let rows = statement
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
    let access = authorize_for(
        connection,
        principal,
        &row.account_id,
        permission,
        "invitation",
        id,
    )
    .await?;
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

fn require_pending(row: &InvitationRow, now: i64, doing: &str) -> ApiResult<()> {
    match row.state(now) {
        InvitationState::Pending => Ok(()),
        InvitationState::Expired => Err(ApiError::new(
            ProblemType::InvitationExpired,
            format!(
                "invitation {} expired at {}; {doing} is not possible, create a new invitation",
                row.id,
                format_millis(row.expires_at)
            ),
        )),
        other => Err(ApiError::new(
            ProblemType::InvitationNotPending,
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
    let roles = check_roles(&body.roles)?;
    let now = state.now();
    let mut tx = state.begin().await?;
    let (mut row, access) = authorized(
        &mut tx.tx,
        &principal,
        &id,
        Permission::AdminInvitationsWrite,
    )
    .await?;
    expected.check("invitation", &id, row.version)?;
    require_pending(&row, now, "changing its roles")?;
    check_may_grant_at(
        &mut tx.tx,
        &access,
        &principal,
        GrantAction::Invite,
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
        tx.emit(invitation_event(EventType::InvitationUpdated, &row), now);
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
    let mut tx = state.begin().await?;
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
                ProblemType::InvitationNotPending,
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
    sqlx::query(
        "UPDATE invitations SET state = 'Revoked', revoked_at = $1, version = $2 WHERE id = $3",
    )
    .bind(now)
    .bind(row.version)
    .bind(&id)
    .execute(&mut *tx.tx)
    .await
    .map_err(db_error("revoke the invitation"))?;
    tx.emit(invitation_event(EventType::InvitationRevoked, &row), now);
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
    let mut tx = state.begin().await?;
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
        queue_invitation_email(&mut tx, &row, &access.account.display_name, &link, now);
    }
    tx.emit(invitation_event(EventType::InvitationResent, &row), now);
    let delivery = row.delivery;
    let response = tx
        .commit_response(with_link(StatusCode::OK, &row, now, delivery, link))
        .await?;
    state.mail_queued();
    Ok(response)
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
                "UPDATE invitations SET state = 'Expired', version = $1 WHERE id = $2 AND state = 'Pending'",
            )
            .bind(row.version)
            .bind(&row.id)
            .execute(&mut *tx.tx)
            .await?
            .rows_affected();
            if updated > 0 {
                row.stored_state = InvitationState::Expired;
                tx.emit(invitation_event(EventType::InvitationExpired, &row), now);
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

// --- acceptance --------------------------------------------------------------------------

/// The seeds' remedy for signing in with an identity of another tenant.
pub const WRONG_TENANT_REMEDY: &str = "Sign out of all Microsoft accounts, or open the invitation link in a private \
     browsing window (Chrome or Edge), then sign in with a user of the tenant you were invited to. Also check that \
     you were invited to the right client or tenant account.";

pub async fn accept(
    State(state): State<AppState>,
    axum::extract::ConnectInfo(client): axum::extract::ConnectInfo<std::net::SocketAddr>,
    JsonBody(body): JsonBody<AcceptInvitation>,
) -> ApiResult<Json<Accepted>> {
    let now = state.now();
    state.limit_attempts(client.ip())?;
    let (row, token_hash) = open(&state, &body.token, now).await?;
    if let Some(idp_error) = &body.idp_error {
        let refusal = super::oidc::provider_refusal(idp_error, None);
        record_failure(&state, &row, refusal.reason, &refusal.remedy, now).await?;
        return Err(ApiError::new(ProblemType::IdpRefused, refusal.remedy));
    }
    let id_token = body
        .id_token
        .as_deref()
        .ok_or_else(|| ApiError::invalid("/idToken", "give the ID token you signed in with (idToken), or the identity provider's error (idpError)"))?;
    let client = state.oidc.as_ref().ok_or_else(no_sign_in)?;
    let account = account_of(&state, &row).await?;
    let authority = client.issuer().authority(account.tenant_id.as_deref());
    let identity = client
        .verify(id_token, &authority, None, now)
        .await
        .map_err(|error| sign_in_error(&error).at("/idToken"))?;
    complete_accept(&state, row, &account, token_hash, identity, now)
        .await
        .map(Json)
}

/// The problem for a portal that has no way to sign invitees in.
pub fn no_sign_in() -> ApiError {
    ApiError::new(
        ProblemType::ServiceUnavailable,
        "this portal has no OpenID Connect issuer configured (--oidc-issuer), so invitations cannot be accepted",
    )
}

/// The problem for a failed sign-in: the provider's fault (503, try later) or the token's.
pub fn sign_in_error(error: &super::oidc::OidcError) -> ApiError {
    if error.is_provider_fault() {
        tracing::warn!(error = %error, "identity provider unavailable");
        ApiError::new(
            ProblemType::ServiceUnavailable,
            "the identity provider could not be reached; try again in a minute",
        )
    } else {
        ApiError::new(ProblemType::InvalidToken, error.to_string())
    }
}

/// The invitation a link's token opens, if it can still be accepted, with the token's hash.
pub async fn open(state: &AppState, token: &str, now: i64) -> ApiResult<(InvitationRow, String)> {
    let token_hash = hash_secret(token.trim());
    let row = find_by_token(state, &token_hash).await?;
    check_acceptable(&row, now)?;
    Ok((row, token_hash))
}

/// The invitation with this id and token hash, if it can still be accepted: what a sign-in
/// attempt started from the link comes back to.
pub async fn reopen(
    state: &AppState,
    id: &str,
    token_hash: &str,
    now: i64,
) -> ApiResult<InvitationRow> {
    let row = find_by_token(state, token_hash).await?;
    if row.id != id {
        return Err(replaced());
    }
    check_acceptable(&row, now)?;
    Ok(row)
}

/// The account an invitation is for.
pub async fn account_of(
    state: &AppState,
    row: &InvitationRow,
) -> ApiResult<super::accounts::AccountRow> {
    let mut connection = state.connection().await?;
    super::accounts::find_account(&mut connection, &row.account_id)
        .await?
        .ok_or_else(|| ApiError::not_found("account", &row.account_id))
}

/// Who sent an invitation, as a person would name them at the start of a sentence:
/// "Ana Silva (ana@contoso.example)", or "The portal's operator".
pub async fn inviter_of(state: &AppState, row: &InvitationRow) -> ApiResult<String> {
    let mut connection = state.connection().await?;
    let found = sqlx::query(
        "SELECT p.kind, p.email, p.first_name, p.last_name FROM invitations i \
         JOIN principals p ON p.id = i.created_by WHERE i.id = $1",
    )
    .bind(&row.id)
    .fetch_optional(&mut *connection)
    .await
    .map_err(|e| ApiError::internal("read who sent the invitation", e))?;
    Ok(match found {
        Some(found) if found.get::<String, _>("kind") == "admin" => {
            let email: Option<String> = found.get("email");
            let name = [
                found.get::<Option<String>, _>("first_name"),
                found.get::<Option<String>, _>("last_name"),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
            match (name.trim(), email) {
                ("", Some(email)) => email,
                (name, Some(email)) => format!("{name} ({email})"),
                (name, None) => name.to_owned(),
            }
        }
        _ => "The portal's operator".to_owned(),
    })
}

/// Accepts an invitation as a chosen identity, with no identity provider. Served only when the
/// portal runs with the development sign-in switched on (embedded in `apply --watch`, or
/// `portal serve --dev-login`); never by default.
pub async fn dev_accept(
    State(state): State<AppState>,
    axum::extract::ConnectInfo(client): axum::extract::ConnectInfo<std::net::SocketAddr>,
    JsonBody(body): JsonBody<DevAccept>,
) -> ApiResult<Json<Accepted>> {
    let now = state.now();
    state.limit_attempts(client.ip())?;
    let (row, token_hash) = open(&state, &body.token, now).await?;
    let account = account_of(&state, &row).await?;
    let identity = dev_identity(&account, &body.email, body.tenant_id.as_deref())?;
    complete_accept(&state, row, &account, token_hash, identity, now)
        .await
        .map(Json)
}

/// The identity the development sign-in accepts as: `email`, of `tenant` or else the account's.
pub fn dev_identity(
    account: &super::accounts::AccountRow,
    email: &str,
    tenant: Option<&str>,
) -> ApiResult<super::oidc::Identity> {
    let email = crate::domain::Email::parse(email)
        .map_err(|e| ApiError::invalid("/email", e.to_string()))?;
    let tenant_id = match tenant.map(str::trim).filter(|t| !t.is_empty()) {
        Some(tenant) => Some(tenant.to_ascii_lowercase()),
        None => account.tenant_id.clone(),
    };
    Ok(super::oidc::Identity {
        issuer: "urn:portal-operator:dev-login".into(),
        subject: email.canonical(),
        tenant_id,
        email: Some(email.as_str().to_owned()),
        name: None,
    })
}

fn replaced() -> ApiError {
    ApiError::new(
        ProblemType::NotFound,
        "this invitation link was replaced by a newer one; use the link in the latest email, or ask your administrator to resend the invitation",
    )
    .at("/token")
}

async fn find_by_token(state: &AppState, token_hash: &str) -> ApiResult<InvitationRow> {
    let mut connection = state.connection().await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM invitations WHERE token_hash = $1"
    )))
    .bind(token_hash)
    .fetch_optional(&mut *connection)
    .await
    .map_err(|e| ApiError::internal("find the invitation", e))?
    .as_ref()
    .map(InvitationRow::from_row)
    .transpose()?
    .ok_or_else(|| {
        ApiError::new(
            ProblemType::NotFound,
            "this invitation link is not valid: it may have been replaced by a newer one; ask your administrator to resend the invitation",
        )
        .at("/token")
    })
}

/// The part of accepting that follows a verified sign-in: the tenant check against `account`
/// (the invitation's), then the admin and its grants, in one transaction.
pub async fn complete_accept(
    state: &AppState,
    row: InvitationRow,
    account: &super::accounts::AccountRow,
    token_hash: String,
    identity: crate::portal::oidc::Identity,
    now: i64,
) -> ApiResult<Accepted> {
    if let Some(expected) = &account.tenant_id
        && identity
            .tenant_id
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
            != Some(expected.as_str())
    {
        let signed_in = identity.tenant_id.as_deref().unwrap_or("no tenant");
        let message = format!(
            "You signed in with a user of tenant {signed_in}, which is not the tenant of the account you were invited to (\"unknown account\"). {WRONG_TENANT_REMEDY}"
        );
        record_failure(state, &row, "WrongTenant", &message, now).await?;
        return Err(ApiError::new(ProblemType::WrongTenant, message));
    }

    let mut tx = state.begin().await?;
    // Re-read under the write lock: a concurrent accept, revoke or resend wins.
    let current = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS}, token_hash, created_by FROM invitations WHERE id = $1"
    )))
    .bind(&row.id)
    .fetch_optional(&mut *tx.tx)
    .await
    .map_err(db_error("read the invitation"))?
    .ok_or_else(|| ApiError::not_found("invitation", &row.id))?;
    let current_hash: Option<String> = current.get("token_hash");
    let created_by: String = current.get("created_by");
    let mut row = InvitationRow::from_row(&current)?;
    if current_hash.as_deref() != Some(token_hash.as_str()) {
        return Err(replaced());
    }
    check_acceptable(&row, now)?;
    let admin_id = admin_for(&mut tx, &identity, &row, now).await?;
    let source = format!("invitation/{}", row.id);
    super::grants::insert_grant_rows(
        &mut tx,
        &created_by,
        &row.account_id,
        &admin_id,
        &row.roles,
        GrantScope::AccountAndDescendants,
        &source,
        now,
    )
    .await?;
    row.stored_state = InvitationState::Accepted;
    row.accepted_at = Some(now);
    row.accepted_by = Some(admin_id.clone());
    row.version += 1;
    sqlx::query("UPDATE invitations SET state = 'Accepted', accepted_at = $1, accepted_by = $2, version = $3 WHERE id = $4")
        .bind(now)
        .bind(&admin_id)
        .bind(row.version)
        .bind(&row.id)
        .execute(&mut *tx.tx)
        .await
        .map_err(db_error("accept the invitation"))?;
    tx.emit(invitation_event(EventType::InvitationAccepted, &row), now);
    tx.commit().await.map_err(db_error("commit"))?;
    Ok(Accepted {
        invitation: row.view(now),
        admin_id,
    })
}

pub fn check_acceptable(row: &InvitationRow, now: i64) -> ApiResult<()> {
    match row.state(now) {
        InvitationState::Pending => Ok(()),
        InvitationState::Expired => Err(ApiError::new(
            ProblemType::InvitationExpired,
            format!(
                "this invitation expired at {}; ask an administrator to create a new invitation",
                format_millis(row.expires_at)
            ),
        )),
        InvitationState::Accepted => Err(ApiError::new(
            ProblemType::InvitationAlreadyUsed,
            "this invitation was already accepted; sign in to the portal instead",
        )),
        InvitationState::Revoked => Err(ApiError::new(
            ProblemType::InvitationNotPending,
            "this invitation was withdrawn by an administrator",
        )),
    }
}

pub async fn record_failure(
    state: &AppState,
    row: &InvitationRow,
    reason: &str,
    message: &str,
    now: i64,
) -> ApiResult<()> {
    let mut tx = state.begin().await?;
    sqlx::query(
        "UPDATE invitations SET failure_reason = $1, failure_message = $2, failure_at = $3, version = version + 1 \
         WHERE id = $4",
    )
    .bind(reason)
    .bind(message)
    .bind(now)
    .bind(&row.id)
    .execute(&mut *tx.tx)
    .await
    .map_err(db_error("record the failed attempt"))?;
    let mut event = invitation_event(EventType::InvitationAcceptanceFailed, row);
    event.data = serde_json::json!({ "reason": reason, "message": message });
    tx.emit(event, now);
    tx.commit().await.map_err(db_error("commit"))
}

/// The admin an accepted invitation makes: the one already linked to this sign-in identity,
/// else the one with the invitation's email (linked now), else a new one. The email an
/// invitation was sent to need not be the identity's mailbox (seed 000).
async fn admin_for(
    tx: &mut WriteTx,
    identity: &super::oidc::Identity,
    row: &InvitationRow,
    now: i64,
) -> ApiResult<String> {
    let key = identity.key();
    if let Some(found) = sqlx::query("SELECT id FROM principals WHERE oidc_subject = $1")
        .bind(&key)
        .fetch_optional(&mut *tx.tx)
        .await
        .map_err(db_error("find the admin"))?
    {
        return Ok(found.get(0));
    }
    let email = Email::parse(&row.email)?;
    if let Some(found) = sqlx::query(
        "SELECT id, oidc_subject FROM principals WHERE email_canonical = $1 AND kind = 'admin'",
    )
    .bind(email.canonical())
    .fetch_optional(&mut *tx.tx)
    .await
    .map_err(db_error("find the admin"))?
    {
        let id: String = found.get(0);
        let linked: Option<String> = found.get(1);
        if linked.is_none() {
            sqlx::query("UPDATE principals SET oidc_subject = $1 WHERE id = $2")
                .bind(&key)
                .bind(&id)
                .execute(&mut *tx.tx)
                .await
                .map_err(db_error("link the admin's identity"))?;
        }
        return Ok(id);
    }
    let id = super::grants::upsert_admin(&mut tx.tx, &email, &row.first_name, &row.last_name, now)
        .await?;
    sqlx::query("UPDATE principals SET oidc_subject = $1 WHERE id = $2")
        .bind(&key)
        .bind(&id)
        .execute(&mut *tx.tx)
        .await
        .map_err(db_error("link the admin's identity"))?;
    Ok(id)
}
