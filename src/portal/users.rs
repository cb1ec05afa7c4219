//! Service users (seed 003): the service's end users. Each holds one licence of its type, taken
//! when the user is created and given back when it is deleted (or moved to another type); with
//! none free the create is refused (409 `license-exhausted`, naming who holds them).
//!
//! A user is invited at once (an activation email with the user ID, a temporary password and a
//! link, as for account managers: argon2-hashed, single use, 72 hours) or kept *prepared* until
//! someone sends invitations, for one or many users at once. The user ID (an email or an E.164
//! mobile number) is the login and unique across users, account managers and admins. Deleting a
//! user cannot be undone. Only `service_users.write` (ServiceContributor, implied by
//! AccountOwner) changes users; `service_users.read` (ServiceViewer) reads them.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sqlx::{AnyConnection, Row};

use super::account_managers::{
    ACTIVATION_LIFETIME_MILLIS, check_new_password, hash_password, spend_a_check,
    temporary_password, verify_password,
};
use super::accounts::{IfMatch, if_match};
use super::auth::{Principal, authorize, authorize_for};
use super::json::{JsonBody, PageQuery, Params, check_external_ref, with_etag};
use super::problem::{ApiError, ApiResult, ProblemType};
use super::store::{NewEvent, WriteTx};
use super::subscriptions::ensure_license_free;
use super::teams::{AccountService, forget_user, write_user_links};
use super::{AppState, db_error, mail};
use crate::api::time::format_millis;
use crate::api::{
    Activate, CreateUser, EventType, Page, Patch, Provisioner, SendInvitations, UpdateUser,
    UserState, UserView,
};
use crate::domain::service::{country_code, time_zone};
use crate::domain::{
    Language, LicenseType, Permission, PhoneNumber, UserId, UserPermission, person_name,
};

/// The columns a create writes.
macro_rules! columns {
    () => {
        "id, account_id, user_id, first_name, last_name, extra, license_type, mobile_number, \
         landline_number, linked_number, mex, display_numbers, country_code, permissions, language, \
         time_zone, state, enabled_state, temp_expires_at, external_ref, created_at, invited_at, \
         activated_at, activation_sends, version, license_waiting"
    };
}
const COLUMNS: &str = columns!();
/// What a read needs besides [`COLUMNS`]: whether SCIM provisioned the user.
const READ_COLUMNS: &str = concat!(columns!(), ", scim_document");

/// What a person can see and change of a user (everything but its identity and lifecycle).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Settings {
    first_name: String,
    last_name: String,
    extra: BTreeMap<String, String>,
    license_type: LicenseType,
    mobile_number: Option<String>,
    landline_number: Option<String>,
    linked_number: Option<String>,
    mex: bool,
    display_numbers: Vec<String>,
    country_code: Option<String>,
    permissions: Vec<UserPermission>,
    language: Language,
    time_zone: Option<String>,
}

#[derive(Debug, Clone)]
struct Row_ {
    id: String,
    account_id: String,
    user_id: String,
    settings: Settings,
    stored_state: UserState,
    /// The state a Disabled user returns to.
    enabled_state: Option<UserState>,
    temp_expires_at: Option<i64>,
    external_ref: Option<String>,
    created_at: i64,
    invited_at: Option<i64>,
    activated_at: Option<i64>,
    activation_sends: i64,
    version: i64,
    /// Holds no licence yet (created through SCIM with none free).
    license_waiting: bool,
    /// Provisioned through SCIM: the resource as the identity provider sent it.
    scim_document: Option<String>,
}

fn state_name(state: UserState) -> &'static str {
    match state {
        UserState::Prepared => "Prepared",
        UserState::Invited => "Invited",
        UserState::ActivationExpired => "ActivationExpired",
        UserState::Active => "Active",
        UserState::Disabled => "Disabled",
    }
}

fn parse_state(name: &str) -> Option<UserState> {
    Some(match name {
        "Prepared" => UserState::Prepared,
        "Invited" => UserState::Invited,
        "ActivationExpired" => UserState::ActivationExpired,
        "Active" => UserState::Active,
        "Disabled" => UserState::Disabled,
        _ => return None,
    })
}

fn json_column<T: serde::de::DeserializeOwned>(
    row: &sqlx::any::AnyRow,
    column: &str,
) -> ApiResult<T> {
    serde_json::from_str(&row.get::<String, _>(column))
        .map_err(|e| ApiError::internal("read the user", e))
}

impl Row_ {
    fn from_row(row: &sqlx::any::AnyRow) -> ApiResult<Row_> {
        let unreadable = |what: &str| ApiError::internal("read the user", what);
        Ok(Row_ {
            id: row.get("id"),
            account_id: row.get("account_id"),
            user_id: row.get("user_id"),
            settings: Settings {
                first_name: row.get("first_name"),
                last_name: row.get("last_name"),
                extra: json_column(row, "extra")?,
                license_type: row
                    .get::<String, _>("license_type")
                    .parse()
                    .map_err(|_| unreadable("licence type"))?,
                mobile_number: row.get("mobile_number"),
                landline_number: row.get("landline_number"),
                linked_number: row.get("linked_number"),
                mex: row.get::<i64, _>("mex") != 0,
                display_numbers: json_column(row, "display_numbers")?,
                country_code: row.get("country_code"),
                permissions: json_column(row, "permissions")?,
                language: row.get::<String, _>("language").parse().unwrap_or_default(),
                time_zone: row.get("time_zone"),
            },
            stored_state: parse_state(&row.get::<String, _>("state"))
                .ok_or_else(|| unreadable("state"))?,
            enabled_state: row
                .get::<Option<String>, _>("enabled_state")
                .as_deref()
                .and_then(parse_state),
            temp_expires_at: row.get("temp_expires_at"),
            external_ref: row.get("external_ref"),
            created_at: row.get("created_at"),
            invited_at: row.get("invited_at"),
            activated_at: row.get("activated_at"),
            activation_sends: row.get("activation_sends"),
            version: row.get("version"),
            license_waiting: row.get::<i64, _>("license_waiting") != 0,
            scim_document: row.get("scim_document"),
        })
    }

    fn state(&self, now: i64) -> UserState {
        match (self.stored_state, self.temp_expires_at) {
            (UserState::Invited, Some(expires)) if now >= expires => UserState::ActivationExpired,
            (state, _) => state,
        }
    }

    fn view(&self, now: i64, service: &AccountService) -> UserView {
        let settings = &self.settings;
        let state = self.state(now);
        let (roles, teams) = service.listed_by_user(&self.id);
        UserView {
            id: self.id.clone(),
            account_id: self.account_id.clone(),
            user_id: self.user_id.clone(),
            first_name: settings.first_name.clone(),
            last_name: settings.last_name.clone(),
            extra: settings.extra.clone(),
            license_type: settings.license_type,
            mobile_number: settings.mobile_number.clone(),
            landline_number: settings.landline_number.clone(),
            linked_number: settings.linked_number.clone(),
            mex: settings.mex,
            display_numbers: settings.display_numbers.clone(),
            country_code: settings.country_code.clone(),
            permissions: settings.permissions.clone(),
            roles,
            teams,
            language: settings.language,
            time_zone: settings.time_zone.clone(),
            state,
            waiting_for_license: self.license_waiting,
            provisioned_by: if self.scim_document.is_some() {
                Provisioner::Scim
            } else {
                Provisioner::Api
            },
            activation_expires_at: match state {
                UserState::Invited | UserState::ActivationExpired => {
                    self.temp_expires_at.map(format_millis)
                }
                _ => None,
            },
            invited_at: self.invited_at.map(format_millis),
            activated_at: self.activated_at.map(format_millis),
            activation_sends: self.activation_sends,
            effective: service.effective(&self.id, &settings.permissions),
            external_ref: self.external_ref.clone(),
            created_at: format_millis(self.created_at),
            version: self.version,
        }
    }

    fn event(&self, event_type: EventType) -> NewEvent<'_> {
        NewEvent {
            event_type,
            object_kind: "User",
            object_id: &self.id,
            account_id: Some(&self.account_id),
            external_ref: self.external_ref.as_deref(),
            data: serde_json::json!({ "userId": self.user_id }),
        }
    }
}

fn response(status: StatusCode, row: &Row_, now: i64, service: &AccountService) -> Response {
    with_etag(status, row.version, row.view(now, service))
}

// --- Checks ------------------------------------------------------------------------------------

fn number(field: &'static str, value: Option<&str>) -> ApiResult<Option<String>> {
    value
        .map(|v| PhoneNumber::parse(field, v).map(|n| n.raw))
        .transpose()
        .map_err(Into::into)
}

fn e164(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .and_then(|v| PhoneNumber::parse("number", v).ok())
        .map(|n| n.e164)
}

/// Checks every setting and how they fit together (a linked number needs a landline, mex a
/// linked number, no number twice).
fn check_settings(settings: Settings) -> ApiResult<Settings> {
    let first_name = person_name("firstName", &settings.first_name)?;
    let last_name = person_name("lastName", &settings.last_name)?;
    if settings.extra.len() > 20 {
        return Err(ApiError::invalid(
            "/extra",
            "extra holds at most 20 entries",
        ));
    }
    for (key, value) in &settings.extra {
        if key.is_empty() || key.len() > 40 || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(ApiError::invalid(
                "/extra",
                format!(
                    "extra key {key:?} must be 1 to 40 letters and digits (e.g. department, jobTitle)"
                ),
            ));
        }
        if value.chars().count() > 200 || value.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                &format!("/extra/{key}"),
                format!("extra.{key} must be at most 200 printable characters"),
            ));
        }
    }
    let mobile_number = number("mobileNumber", settings.mobile_number.as_deref())?;
    let landline_number = number("landlineNumber", settings.landline_number.as_deref())?;
    let linked_number = number("linkedNumber", settings.linked_number.as_deref())?;
    if linked_number.is_some() && landline_number.is_none() {
        return Err(ApiError::invalid(
            "/linkedNumber",
            "a linked number is the mobile number linked to the landline: set landlineNumber too",
        ));
    }
    if settings.mex && linked_number.is_none() {
        return Err(ApiError::invalid(
            "/mex",
            "mex (mobile extension) works on the linked number: set linkedNumber too",
        ));
    }
    if settings.display_numbers.len() > 20 {
        return Err(ApiError::invalid(
            "/displayNumbers",
            "at most 20 display numbers",
        ));
    }
    let mut display_numbers = Vec::with_capacity(settings.display_numbers.len());
    for (index, value) in settings.display_numbers.iter().enumerate() {
        let parsed = PhoneNumber::parse("displayNumbers", value)
            .map_err(|e| ApiError::from(e).at(&format!("/displayNumbers/{index}")))?;
        display_numbers.push(parsed.raw);
    }
    let mut permissions = settings.permissions.clone();
    permissions.sort();
    permissions.dedup();
    let checked = Settings {
        first_name,
        last_name,
        mobile_number,
        landline_number,
        linked_number,
        display_numbers,
        permissions,
        country_code: settings
            .country_code
            .as_deref()
            .map(country_code)
            .transpose()?,
        time_zone: settings.time_zone.as_deref().map(time_zone).transpose()?,
        ..settings
    };
    let mobile = e164(&checked.mobile_number);
    let landline = e164(&checked.landline_number);
    if mobile.is_some() && mobile == landline {
        return Err(ApiError::invalid(
            "/landlineNumber",
            "the landline number is the same as the mobile number",
        ));
    }
    Ok(checked)
}

/// Who uses `canonical` as a login already: an admin, an account manager or a user (saying
/// whether an identity provider provisioned it through SCIM or portal-operator manages it, so
/// that the two never silently fight over one user ID).
pub(super) async fn login_taken_by(
    connection: &mut AnyConnection,
    canonical: &str,
) -> ApiResult<Option<String>> {
    for (query, who) in [
        (
            "SELECT id FROM principals WHERE email_canonical = $1",
            "an admin",
        ),
        (
            "SELECT id FROM account_managers WHERE email_canonical = $1",
            "an account manager",
        ),
    ] {
        let found = sqlx::query(query)
            .bind(canonical)
            .fetch_optional(&mut *connection)
            .await
            .map_err(db_error("check the login"))?;
        if found.is_some() {
            return Ok(Some(who.to_owned()));
        }
    }
    let user = sqlx::query(
        "SELECT id, account_id, external_ref, scim_document FROM service_users WHERE user_id_canonical = $1",
    )
    .bind(canonical)
    .fetch_optional(&mut *connection)
    .await
    .map_err(db_error("check the login"))?;
    Ok(user.map(|row| {
        let id: String = row.get("id");
        let account: String = row.get("account_id");
        let external_ref: Option<String> = row.get("external_ref");
        let scim = row.get::<Option<String>, _>("scim_document").is_some();
        match (scim, external_ref) {
            (true, _) => format!(
                "a user provisioned by an identity provider through SCIM (user {id}, account {account})"
            ),
            (false, Some(external_ref)) => format!(
                "a user managed by portal-operator ({external_ref}; user {id}, account {account})"
            ),
            (false, None) => format!("a user (user {id}, account {account})"),
        }
    }))
}

// --- Handlers ----------------------------------------------------------------------------------

pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Path(account_id): Path<String>,
    JsonBody(body): JsonBody<CreateUser>,
) -> ApiResult<Response> {
    let user_id = UserId::parse(&body.user_id).map_err(|e| ApiError::from(e).at("/userId"))?;
    let settings = check_settings(Settings {
        first_name: body.first_name,
        last_name: body.last_name,
        extra: body.extra,
        license_type: body.license_type,
        mobile_number: body.mobile_number,
        landline_number: body.landline_number,
        linked_number: body.linked_number,
        mex: body.mex,
        display_numbers: body.display_numbers,
        country_code: body.country_code,
        permissions: body.permissions,
        language: body.language.unwrap_or_default(),
        time_zone: body.time_zone,
    })?;
    check_external_ref(body.external_ref.as_deref())?;
    let password = body.invite.then(temporary_password);
    let password_hash = match &password {
        Some(password) => Some(hash_password(password).await?),
        None => None,
    };
    let now = state.now();
    let mut tx = state.begin().await?;
    let access = authorize(
        &mut tx.tx,
        &principal,
        &account_id,
        Permission::ServiceUsersWrite,
    )
    .await?;
    if let Some(taken_by) = login_taken_by(&mut tx.tx, &user_id.canonical()).await? {
        return Err(ApiError::new(
            ProblemType::UserIdConflict,
            format!("{user_id} is already used by {taken_by}; a user ID must be unique across users, account managers and admins"),
        )
        .at("/userId"));
    }
    if let Some(external_ref) = &body.external_ref
        && let Some(existing) = sqlx::query("SELECT id FROM service_users WHERE external_ref = $1")
            .bind(external_ref)
            .fetch_optional(&mut *tx.tx)
            .await
            .map_err(db_error("check the external reference"))?
    {
        return Err(ApiError::new(
            ProblemType::ExternalRefConflict,
            format!(
                "externalRef {external_ref:?} already belongs to user {}",
                existing.get::<String, _>(0)
            ),
        )
        .at("/externalRef"));
    }
    ensure_license_free(&mut tx.tx, &account_id, settings.license_type).await?;
    let service = AccountService::load(&mut tx.tx, &account_id).await?;
    let role_ids = service.role_ids(&body.roles, "/roles")?;
    let team_ids = service.team_ids(&body.teams, "/teams")?;
    let invited = password.is_some();
    let row = Row_ {
        id: uuid::Uuid::now_v7().to_string(),
        account_id: account_id.clone(),
        user_id: user_id.to_string(),
        settings,
        stored_state: if invited {
            UserState::Invited
        } else {
            UserState::Prepared
        },
        enabled_state: None,
        temp_expires_at: invited.then_some(now + ACTIVATION_LIFETIME_MILLIS),
        external_ref: body.external_ref,
        created_at: now,
        invited_at: invited.then_some(now),
        activated_at: None,
        activation_sends: i64::from(invited),
        version: 1,
        license_waiting: false,
        scim_document: None,
    };
    insert(
        &mut tx,
        &row,
        &user_id.canonical(),
        password_hash.as_deref(),
    )
    .await?;
    write_user_links(&mut tx, &row.id, Some(&role_ids), Some(&team_ids)).await?;
    let service = AccountService::load(&mut tx.tx, &account_id).await?;
    tx.emit(row.event(EventType::UserCreated), now);
    if let Some(password) = &password {
        queue_activation(
            &state,
            &mut tx,
            &row,
            &access.account.display_name,
            password,
            now,
        );
    }
    let response = tx
        .commit_response(response(StatusCode::CREATED, &row, now, &service))
        .await?;
    if invited {
        state.mail_queued();
    }
    Ok(response)
}

async fn insert(
    tx: &mut WriteTx,
    row: &Row_,
    canonical: &str,
    password_hash: Option<&str>,
) -> ApiResult<()> {
    let s = &row.settings;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO service_users ({COLUMNS}, user_id_canonical, temp_password_hash) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28)"
    )))
    .bind(&row.id)
    .bind(&row.account_id)
    .bind(&row.user_id)
    .bind(&s.first_name)
    .bind(&s.last_name)
    .bind(to_json(&s.extra))
    .bind(s.license_type.as_str())
    .bind(&s.mobile_number)
    .bind(&s.landline_number)
    .bind(&s.linked_number)
    .bind(i64::from(s.mex))
    .bind(to_json(&s.display_numbers))
    .bind(&s.country_code)
    .bind(to_json(&s.permissions))
    .bind(s.language.as_str())
    .bind(&s.time_zone)
    .bind(state_name(row.stored_state))
    .bind(row.enabled_state.map(state_name))
    .bind(row.temp_expires_at)
    .bind(&row.external_ref)
    .bind(row.created_at)
    .bind(row.invited_at)
    .bind(row.activated_at)
    .bind(row.activation_sends)
    .bind(row.version)
    .bind(i64::from(row.license_waiting))
    .bind(canonical)
    .bind(password_hash)
    .execute(&mut *tx.tx)
    .await
    .map_err(db_error("create the user"))?;
    Ok(())
}

/// JSON text for the list columns.
fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serializes")
}

/// Writes every mutable column of `row` (whose version was already raised from `read_version`).
async fn save(tx: &mut WriteTx, row: &Row_, read_version: i64) -> ApiResult<()> {
    let s = &row.settings;
    sqlx::query(
        "UPDATE service_users SET first_name = $1, last_name = $2, extra = $3, license_type = $4, mobile_number = $5, \
         landline_number = $6, linked_number = $7, mex = $8, display_numbers = $9, country_code = $10, permissions = $11, \
         language = $12, time_zone = $13, state = $14, enabled_state = $15, version = $16, license_waiting = $17 \
         WHERE id = $18 AND version = $19",
    )
    .bind(&s.first_name)
    .bind(&s.last_name)
    .bind(to_json(&s.extra))
    .bind(s.license_type.as_str())
    .bind(&s.mobile_number)
    .bind(&s.landline_number)
    .bind(&s.linked_number)
    .bind(i64::from(s.mex))
    .bind(to_json(&s.display_numbers))
    .bind(&s.country_code)
    .bind(to_json(&s.permissions))
    .bind(s.language.as_str())
    .bind(&s.time_zone)
    .bind(state_name(row.stored_state))
    .bind(row.enabled_state.map(state_name))
    .bind(row.version)
    .bind(i64::from(row.license_waiting))
    .bind(&row.id)
    .bind(read_version)
    .execute(&mut *tx.tx)
    .await
    .map_err(db_error("update the user"))?;
    Ok(())
}

fn queue_activation(
    state: &AppState,
    tx: &mut WriteTx,
    row: &Row_,
    account_name: &str,
    password: &str,
    now: i64,
) {
    // A user whose ID is a mobile number gets the message as a text: addressed to the number,
    // it waits in the outbox (SMTP delivery skips it) for the platform's SMS relay.
    let to = match UserId::parse(&row.user_id) {
        Ok(UserId::Email(email)) => email.to_string(),
        Ok(UserId::Mobile(number)) => number.e164,
        Err(_) => return,
    };
    let base = state.config.public_url.trim_end_matches('/');
    let (subject, body) = match row.settings.language {
        Language::En => (
            format!("Your voice service account at {account_name}"),
            format!(
                "Hello {first},\n\nYou now have a voice service account at {account_name}.\n\n\
                 User ID: {user}\nTemporary password: {password}\n\n\
                 Sign in at {base}/users/activate within 72 hours; you will be asked to choose a new password.\n",
                first = row.settings.first_name,
                user = row.user_id,
            ),
        ),
        Language::Fr => (
            format!("Votre compte de service vocal chez {account_name}"),
            format!(
                "Bonjour {first},\n\nVous avez maintenant un compte de service vocal chez {account_name}.\n\n\
                 Identifiant : {user}\nMot de passe temporaire : {password}\n\n\
                 Connectez-vous sur {base}/users/activate?lang=fr dans les 72 heures ; vous devrez choisir un nouveau mot de passe.\n",
                first = row.settings.first_name,
                user = row.user_id,
            ),
        ),
    };
    let erase_at = row
        .temp_expires_at
        .unwrap_or(now + ACTIVATION_LIFETIME_MILLIS);
    mail::queue(tx, &to, &subject, &body, now, erase_at);
}

async fn find(connection: &mut AnyConnection, id: &str) -> ApiResult<Option<Row_>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {READ_COLUMNS} FROM service_users WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *connection)
    .await
    .map_err(db_error("read the user"))?
    .as_ref()
    .map(Row_::from_row)
    .transpose()
}

async fn authorized(
    connection: &mut AnyConnection,
    principal: &Principal,
    id: &str,
    permission: Permission,
) -> ApiResult<(Row_, super::auth::AccountAccess)> {
    let row = find(connection, id)
        .await?
        .ok_or_else(|| ApiError::not_found("user", id))?;
    let access = authorize_for(
        connection,
        principal,
        &row.account_id,
        permission,
        "user",
        id,
    )
    .await?;
    Ok((row, access))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListQuery {
    /// Only the user with this reference.
    #[serde(default)]
    pub external_ref: Option<String>,
    /// Only the user with this user ID.
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(flatten)]
    pub page: PageQuery,
}

pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path(account_id): Path<String>,
    Params(query): Params<ListQuery>,
) -> ApiResult<Json<Page<UserView>>> {
    let limit = query.page.limit()?;
    let after = query.page.after()?;
    let canonical = match &query.user_id {
        Some(user_id) => Some(
            UserId::parse(user_id)
                .map_err(|e| ApiError::from(e).at("/userId"))?
                .canonical(),
        ),
        None => None,
    };
    let now = state.now();
    let mut connection = state.connection().await?;
    authorize(
        &mut connection,
        &principal,
        &account_id,
        Permission::ServiceUsersRead,
    )
    .await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {READ_COLUMNS} FROM service_users WHERE account_id = $1 AND id > $2 AND ($3 IS NULL OR external_ref = $3) \
         AND ($4 IS NULL OR user_id_canonical = $4) ORDER BY id LIMIT $5"
    )))
    .bind(&account_id)
    .bind(&after)
    .bind(&query.external_ref)
    .bind(&canonical)
    .bind(limit + 1)
    .fetch_all(&mut *connection)
    .await
    .map_err(db_error("list users"))?;
    let service = AccountService::load(&mut connection, &account_id).await?;
    let views = rows
        .iter()
        .map(|row| Ok(Row_::from_row(row)?.view(now, &service)))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(Page::new(views, limit, |u: &UserView| u.id.clone())))
}

/// Every user of `account_id`, ordered by user ID (for the export; the caller authorized).
pub(super) async fn all_views(
    connection: &mut AnyConnection,
    account_id: &str,
    now: i64,
) -> ApiResult<Vec<UserView>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {READ_COLUMNS} FROM service_users WHERE account_id = $1 ORDER BY user_id_canonical"
    )))
    .bind(account_id)
    .fetch_all(&mut *connection)
    .await
    .map_err(db_error("list users"))?;
    let service = AccountService::load(connection, account_id).await?;
    rows.iter()
        .map(|row| Ok(Row_::from_row(row)?.view(now, &service)))
        .collect()
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
        Permission::ServiceUsersRead,
    )
    .await?;
    let service = AccountService::load(&mut connection, &row.account_id).await?;
    Ok(response(StatusCode::OK, &row, now, &service))
}

fn patched(current: &Option<String>, change: &Patch<String>) -> Option<String> {
    match change {
        Patch::Absent => current.clone(),
        Patch::Null => None,
        Patch::Value(value) => Some(value.clone()),
    }
}

/// Merge-patch of a user's settings (`If-Match`). A new licence type takes a free licence of
/// that type (refused when none is) and gives the old one back; `disabled` turns the user off
/// and on again (a disabled user keeps its licence).
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<UpdateUser>,
) -> ApiResult<Response> {
    let expected = if_match(&headers)?;
    let now = state.now();
    let mut tx = state.begin().await?;
    let (mut row, _) =
        authorized(&mut tx.tx, &principal, &id, Permission::ServiceUsersWrite).await?;
    expected.check("user", &id, row.version)?;
    let current = row.settings.clone();
    let settings = check_settings(Settings {
        first_name: body
            .first_name
            .clone()
            .unwrap_or_else(|| current.first_name.clone()),
        last_name: body
            .last_name
            .clone()
            .unwrap_or_else(|| current.last_name.clone()),
        extra: body.extra.clone().unwrap_or_else(|| current.extra.clone()),
        license_type: body.license_type.unwrap_or(current.license_type),
        mobile_number: patched(&current.mobile_number, &body.mobile_number),
        landline_number: patched(&current.landline_number, &body.landline_number),
        linked_number: patched(&current.linked_number, &body.linked_number),
        mex: body.mex.unwrap_or(current.mex),
        display_numbers: body
            .display_numbers
            .clone()
            .unwrap_or_else(|| current.display_numbers.clone()),
        country_code: patched(&current.country_code, &body.country_code),
        permissions: body
            .permissions
            .clone()
            .unwrap_or_else(|| current.permissions.clone()),
        language: body.language.unwrap_or(current.language),
        time_zone: patched(&current.time_zone, &body.time_zone),
    })?;
    // A user waiting for a licence may move to another type and wait for that one instead.
    if settings.license_type != current.license_type && !row.license_waiting {
        ensure_license_free(&mut tx.tx, &row.account_id, settings.license_type).await?;
    }
    let (stored_state, enabled_state) = match body.disabled {
        Some(true) if row.stored_state != UserState::Disabled => {
            (UserState::Disabled, Some(row.stored_state))
        }
        Some(false) if row.stored_state == UserState::Disabled => {
            (row.enabled_state.unwrap_or(UserState::Prepared), None)
        }
        _ => (row.stored_state, row.enabled_state),
    };
    let service = AccountService::load(&mut tx.tx, &row.account_id).await?;
    let role_ids = body
        .roles
        .as_deref()
        .map(|roles| service.role_ids(roles, "/roles"))
        .transpose()?;
    let team_ids = body
        .teams
        .as_deref()
        .map(|teams| service.team_ids(teams, "/teams"))
        .transpose()?;
    let (roles_now, teams_now) = service.listed_by_user(&row.id);
    let same = |wanted: &Option<Vec<String>>, held: &[String]| {
        wanted.as_ref().is_none_or(|wanted| {
            let mut wanted: Vec<String> = wanted.iter().map(|n| n.trim().to_lowercase()).collect();
            let mut held: Vec<String> = held.iter().map(|n| n.to_lowercase()).collect();
            wanted.sort();
            wanted.dedup();
            held.sort();
            wanted == held
        })
    };
    if settings == current
        && stored_state == row.stored_state
        && same(&body.roles, &roles_now)
        && same(&body.teams, &teams_now)
    {
        return Ok(response(StatusCode::OK, &row, now, &service));
    }
    let read_version = row.version;
    row.settings = settings;
    row.stored_state = stored_state;
    row.enabled_state = enabled_state;
    row.version += 1;
    save(&mut tx, &row, read_version).await?;
    write_user_links(&mut tx, &row.id, role_ids.as_deref(), team_ids.as_deref()).await?;
    let service = AccountService::load(&mut tx.tx, &row.account_id).await?;
    tx.emit(row.event(EventType::UserUpdated), now);
    // The old type's licence is free now: the next user waiting for one takes it; a waiting
    // user moved to another type takes one of that type if one is free.
    let moved = current.license_type != row.settings.license_type;
    let mut mail = moved
        && !row.license_waiting
        && grant_waiting(&state, &mut tx, &row.account_id, current.license_type, now).await?;
    if moved && row.license_waiting {
        mail |= grant_waiting(
            &state,
            &mut tx,
            &row.account_id,
            row.settings.license_type,
            now,
        )
        .await?;
        // It may be the one served: answer what was written.
        row = find(&mut tx.tx, &id)
            .await?
            .ok_or_else(|| ApiError::not_found("user", &id))?;
    }
    tx.commit().await.map_err(db_error("commit"))?;
    if mail {
        state.mail_queued();
    }
    Ok(response(StatusCode::OK, &row, now, &service))
}

/// Deletes a user for good and gives its licence back. Cannot be undone.
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let now = state.now();
    let mut tx = state.begin().await?;
    let (row, _) = authorized(&mut tx.tx, &principal, &id, Permission::ServiceUsersWrite).await?;
    let mail = remove(&state, &mut tx, &row, now).await?;
    tx.commit().await.map_err(db_error("commit"))?;
    if mail {
        state.mail_queued();
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a new activation (a new temporary password, a new 72-hour window) to `row`.
async fn invite(
    state: &AppState,
    tx: &mut WriteTx,
    row: &mut Row_,
    account_name: &str,
    now: i64,
) -> ApiResult<()> {
    let password = temporary_password();
    let password_hash = hash_password(&password).await?;
    let read_version = row.version;
    row.stored_state = UserState::Invited;
    row.temp_expires_at = Some(now + ACTIVATION_LIFETIME_MILLIS);
    row.invited_at = Some(now);
    row.activation_sends += 1;
    row.version += 1;
    sqlx::query(
        "UPDATE service_users SET state = 'Invited', temp_password_hash = $1, temp_expires_at = $2, invited_at = $3, \
         activation_sends = $4, version = $5 WHERE id = $6 AND version = $7",
    )
    .bind(&password_hash)
    .bind(row.temp_expires_at)
    .bind(row.invited_at)
    .bind(row.activation_sends)
    .bind(row.version)
    .bind(&row.id)
    .bind(read_version)
    .execute(&mut *tx.tx)
    .await
    .map_err(db_error("invite the user"))?;
    queue_activation(state, tx, row, account_name, &password, now);
    tx.emit(row.event(EventType::UserInvited), now);
    Ok(())
}

/// Invites prepared users of the account, all or none (seed 003's "Send invitations").
pub async fn send_invitations(
    State(state): State<AppState>,
    principal: Principal,
    Path(account_id): Path<String>,
    JsonBody(body): JsonBody<SendInvitations>,
) -> ApiResult<Response> {
    if body.users.is_empty() || body.users.len() > 500 {
        return Err(ApiError::invalid("/users", "name 1 to 500 prepared users"));
    }
    let now = state.now();
    let mut tx = state.begin().await?;
    let access = authorize(
        &mut tx.tx,
        &principal,
        &account_id,
        Permission::ServiceUsersWrite,
    )
    .await?;
    let service = AccountService::load(&mut tx.tx, &account_id).await?;
    let mut invited = Vec::with_capacity(body.users.len());
    for (index, id) in body.users.iter().enumerate() {
        let mut row = find(&mut tx.tx, id)
            .await?
            .filter(|row| row.account_id == account_id)
            .ok_or_else(|| ApiError::not_found("user", id).at(&format!("/users/{index}")))?;
        if row.license_waiting {
            return Err(ApiError::new(
                ProblemType::LicenseExhausted,
                format!(
                    "user {} waits for a {} licence and is invited as soon as one is free; raise the {} subscription's quantity",
                    row.user_id, row.settings.license_type, row.settings.license_type
                ),
            )
            .at(&format!("/users/{index}")));
        }
        if row.stored_state != UserState::Prepared {
            return Err(ApiError::new(
                ProblemType::UserNotPrepared,
                format!(
                    "user {} is {}, not Prepared; resend its activation instead",
                    row.user_id,
                    state_name(row.state(now))
                ),
            )
            .at(&format!("/users/{index}")));
        }
        invite(&state, &mut tx, &mut row, &access.account.display_name, now).await?;
        invited.push(row.view(now, &service));
    }
    let response = tx
        .commit_response(
            Json(Page {
                items: invited,
                next_cursor: None,
            })
            .into_response(),
        )
        .await?;
    state.mail_queued();
    Ok(response)
}

/// A new temporary password for an invited user whose activation is pending or expired.
pub async fn resend(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let now = state.now();
    let mut tx = state.begin().await?;
    let (mut row, access) =
        authorized(&mut tx.tx, &principal, &id, Permission::ServiceUsersWrite).await?;
    match row.state(now) {
        UserState::Invited | UserState::ActivationExpired => {}
        UserState::Prepared => {
            return Err(ApiError::new(
                ProblemType::UserNotPrepared,
                format!(
                    "user {} is prepared: send its invitation first",
                    row.user_id
                ),
            ));
        }
        other => {
            return Err(ApiError::new(
                ProblemType::AlreadyActive,
                format!(
                    "user {} is {}; there is no activation to resend",
                    row.user_id,
                    state_name(other)
                ),
            ));
        }
    }
    invite(&state, &mut tx, &mut row, &access.account.display_name, now).await?;
    let service = AccountService::load(&mut tx.tx, &row.account_id).await?;
    let response = tx
        .commit_response(response(StatusCode::OK, &row, now, &service))
        .await?;
    state.mail_queued();
    Ok(response)
}

/// `POST /v1/users/activate`: a user's first sign-in, trading the temporary password for their
/// own. Rate-limited per address; one answer for a wrong user ID and a wrong password.
pub async fn activate(
    State(state): State<AppState>,
    axum::extract::ConnectInfo(client): axum::extract::ConnectInfo<std::net::SocketAddr>,
    JsonBody(body): JsonBody<Activate>,
) -> ApiResult<Json<UserView>> {
    activate_with(&state, client.ip(), &body).await.map(Json)
}

/// A user's activation, for the API and the activation page alike.
pub async fn activate_with(
    state: &AppState,
    client: std::net::IpAddr,
    body: &Activate,
) -> ApiResult<UserView> {
    let now = state.now();
    state.limit_attempts(client)?;
    check_new_password(body)?;
    let refused = || {
        ApiError::new(
            ProblemType::InvalidCredentials,
            "the user ID or temporary password is not right",
        )
    };
    let canonical = UserId::parse(&body.username)
        .map_err(|_| refused())?
        .canonical();
    let found = {
        let mut connection = state.connection().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {READ_COLUMNS}, temp_password_hash FROM service_users WHERE user_id_canonical = $1"
        )))
        .bind(&canonical)
        .fetch_optional(&mut *connection)
        .await
        .map_err(db_error("find the user"))?
    };
    let Some(found) = found else {
        spend_a_check(&body.temporary_password).await;
        return Err(refused());
    };
    let mut row = Row_::from_row(&found)?;
    match row.state(now) {
        UserState::Invited => {}
        UserState::ActivationExpired => {
            return Err(ApiError::new(
                ProblemType::ActivationExpired,
                "the temporary password expired; ask an administrator to resend the activation email",
            ));
        }
        _ => return Err(refused()),
    }
    let stored: Option<String> = found.get("temp_password_hash");
    let Some(stored) = stored else {
        return Err(refused());
    };
    if !verify_password(&body.temporary_password, &stored).await {
        return Err(refused());
    }
    let new_hash = hash_password(&body.new_password).await?;
    let mut tx = state.begin().await?;
    let read_version = row.version;
    row.stored_state = UserState::Active;
    row.activated_at = Some(now);
    row.temp_expires_at = None;
    row.version += 1;
    let updated = sqlx::query(
        "UPDATE service_users SET state = 'Active', password_hash = $1, temp_password_hash = NULL, temp_expires_at = NULL, \
         activated_at = $2, version = $3 WHERE id = $4 AND version = $5",
    )
    .bind(&new_hash)
    .bind(now)
    .bind(row.version)
    .bind(&row.id)
    .bind(read_version)
    .execute(&mut *tx.tx)
    .await
    .map_err(db_error("activate the user"))?
    .rows_affected();
    if updated == 0 {
        // Resent or changed meanwhile: the temporary password checked is no longer the one.
        return Err(refused());
    }
    tx.emit(row.event(EventType::UserActivated), now);
    let service = AccountService::load(&mut tx.tx, &row.account_id).await?;
    tx.commit().await.map_err(db_error("commit"))?;
    Ok(row.view(now, &service))
}

/// Marks invited users whose temporary password lapsed as ActivationExpired and emits
/// `user.activation_expired`. Returns when the next one lapses, if any.
pub async fn sweep_expired(
    store: &super::store::Store,
    now: i64,
) -> Result<Option<i64>, sqlx::Error> {
    let due = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {READ_COLUMNS} FROM service_users WHERE state = 'Invited' AND temp_expires_at <= $1 LIMIT 500"
    )))
    .bind(now)
    .fetch_all(&store.pool)
    .await?;
    if !due.is_empty() {
        let mut tx = store.write().await?;
        for row in &due {
            let Ok(mut row) = Row_::from_row(row) else {
                continue;
            };
            row.version += 1;
            let updated = sqlx::query(
                "UPDATE service_users SET state = 'ActivationExpired', temp_password_hash = NULL, version = $1 \
                 WHERE id = $2 AND state = 'Invited'",
            )
            .bind(row.version)
            .bind(&row.id)
            .execute(&mut *tx.tx)
            .await?
            .rows_affected();
            if updated > 0 {
                tx.emit(row.event(EventType::UserActivationExpired), now);
            }
        }
        tx.commit().await?;
    }
    sqlx::query("SELECT MIN(temp_expires_at) FROM service_users WHERE state = 'Invited'")
        .fetch_one(&store.pool)
        .await?
        .try_get::<Option<i64>, _>(0)
}

/// `GET /v1/user-permissions`: the end-user and team permission catalogs.
pub async fn permissions() -> Json<crate::api::users::PermissionCatalog> {
    use crate::api::users::{CatalogEntry, PermissionCatalog};
    use crate::domain::TeamPermission;
    Json(PermissionCatalog {
        permissions: UserPermission::ALL
            .iter()
            .map(|p| CatalogEntry {
                name: *p,
                description: p.description().to_owned(),
            })
            .collect(),
        team_permissions: TeamPermission::ALL
            .iter()
            .map(|p| CatalogEntry {
                name: *p,
                description: p.description().to_owned(),
            })
            .collect(),
    })
}

// --- SCIM ----------------------------------------------------------------------------------

/// A user as SCIM writes it: the resource as the identity provider sent it, and what the
/// portal takes from it.
#[derive(Debug, Clone)]
pub(super) struct ScimUser {
    pub document: serde_json::Map<String, serde_json::Value>,
    pub user_name: String,
    /// The login: the userName when it is an email address or an E.164 mobile number, else an
    /// email of the user; None when there is neither (the user is kept, but cannot be invited
    /// until it has one).
    pub login: Option<UserId>,
    pub first_name: String,
    pub last_name: String,
    pub license_type: LicenseType,
    pub mobile_number: Option<String>,
    pub landline_number: Option<String>,
    pub linked_number: Option<String>,
    pub mex: bool,
    pub display_numbers: Vec<String>,
    pub country_code: Option<String>,
    pub language: Language,
    pub time_zone: Option<String>,
    pub active: bool,
}

impl ScimUser {
    fn settings(&self, permissions: Vec<UserPermission>) -> ApiResult<Settings> {
        check_settings(Settings {
            first_name: self.first_name.clone(),
            last_name: self.last_name.clone(),
            extra: BTreeMap::new(),
            license_type: self.license_type,
            mobile_number: self.mobile_number.clone(),
            landline_number: self.landline_number.clone(),
            linked_number: self.linked_number.clone(),
            mex: self.mex,
            display_numbers: self.display_numbers.clone(),
            country_code: self.country_code.clone(),
            permissions,
            language: self.language,
            time_zone: self.time_zone.clone(),
        })
    }
}

/// A SCIM-provisioned user as SCIM reads it.
#[derive(Debug, Clone)]
pub(super) struct ScimUserRecord {
    pub id: String,
    pub version: i64,
    pub created_at: i64,
    pub modified_at: i64,
    pub document: serde_json::Map<String, serde_json::Value>,
    pub state: UserState,
}

fn scim_record(row: &sqlx::any::AnyRow, now: i64) -> ApiResult<ScimUserRecord> {
    let user = Row_::from_row(row)?;
    let document = user
        .scim_document
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| ApiError::internal("read the SCIM document", e))?
        .unwrap_or_default();
    let modified_at: Option<i64> = row.get("scim_modified_at");
    Ok(ScimUserRecord {
        state: user.state(now),
        id: user.id,
        version: user.version,
        created_at: user.created_at,
        modified_at: modified_at.unwrap_or(user.created_at),
        document,
    })
}

/// Which SCIM-provisioned users of an account to read (always in creation order).
#[derive(Debug, Clone)]
pub(super) enum ScimSelection<'a> {
    All,
    /// The one with this userName (any case).
    UserName(&'a str),
    /// Those whose stored resource holds this text (a prefilter: the caller filters exactly).
    Holding(String),
    /// A page: `limit` users after the first `offset`.
    Window {
        offset: i64,
        limit: i64,
    },
}

/// The SCIM-provisioned users of `account_id` that `selection` picks.
pub(super) async fn scim_users(
    connection: &mut AnyConnection,
    account_id: &str,
    selection: ScimSelection<'_>,
    now: i64,
) -> ApiResult<Vec<ScimUserRecord>> {
    let (user_name, holding, offset, limit) = match selection {
        ScimSelection::All => (None, None, 0, i64::MAX),
        ScimSelection::UserName(name) => (Some(name.to_lowercase()), None, 0, i64::MAX),
        ScimSelection::Holding(text) => {
            let escaped = text
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            (None, Some(format!("%{escaped}%")), 0, i64::MAX)
        }
        ScimSelection::Window { offset, limit } => (None, None, offset, limit),
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {READ_COLUMNS}, scim_modified_at FROM service_users WHERE account_id = $1 AND scim_document IS NOT NULL \
         AND ($2 IS NULL OR scim_user_name_canonical = $2) AND ($3 IS NULL OR scim_document LIKE $3 ESCAPE '\\') \
         ORDER BY created_at, id LIMIT $4 OFFSET $5"
    )))
    .bind(account_id)
    .bind(user_name)
    .bind(holding)
    .bind(limit)
    .bind(offset)
    .fetch_all(&mut *connection)
    .await
    .map_err(db_error("list SCIM users"))?
    .iter()
    .map(|row| scim_record(row, now))
    .collect()
}

/// How many users SCIM provisioned in `account_id`.
pub(super) async fn scim_user_count(
    connection: &mut AnyConnection,
    account_id: &str,
) -> ApiResult<i64> {
    Ok(sqlx::query(
        "SELECT COUNT(*) FROM service_users WHERE account_id = $1 AND scim_document IS NOT NULL",
    )
    .bind(account_id)
    .fetch_one(&mut *connection)
    .await
    .map_err(db_error("count SCIM users"))?
    .get(0))
}

pub(super) async fn scim_user(
    connection: &mut AnyConnection,
    account_id: &str,
    id: &str,
    now: i64,
) -> ApiResult<Option<ScimUserRecord>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {READ_COLUMNS}, scim_modified_at FROM service_users WHERE id = $1 AND account_id = $2 AND scim_document IS NOT NULL"
    )))
    .bind(id)
    .bind(account_id)
    .fetch_optional(&mut *connection)
    .await
    .map_err(db_error("read the SCIM user"))?
    .as_ref()
    .map(|row| scim_record(row, now))
    .transpose()
}

async fn user_name_taken(
    connection: &mut AnyConnection,
    account_id: &str,
    user_name: &str,
    except: Option<&str>,
) -> ApiResult<()> {
    let holder = sqlx::query(
        "SELECT id FROM service_users WHERE account_id = $1 AND scim_user_name_canonical = $2",
    )
    .bind(account_id)
    .bind(user_name.to_lowercase())
    .fetch_optional(&mut *connection)
    .await
    .map_err(db_error("check the userName"))?
    .map(|row| row.get::<String, _>(0));
    match holder {
        Some(id) if Some(id.as_str()) != except => Err(ApiError::new(
            ProblemType::UserIdConflict,
            format!("userName {user_name:?} is already provisioned in this account, as user {id}"),
        )),
        _ => Ok(()),
    }
}

async fn write_scim_columns(
    tx: &mut WriteTx,
    id: &str,
    user: &ScimUser,
    now: i64,
) -> ApiResult<()> {
    sqlx::query(
        "UPDATE service_users SET scim_document = $1, scim_user_name_canonical = $2, scim_modified_at = $3 WHERE id = $4",
    )
    .bind(serde_json::Value::Object(user.document.clone()).to_string())
    .bind(user.user_name.to_lowercase())
    .bind(now)
    .bind(id)
    .execute(&mut *tx.tx)
    .await
    .map_err(db_error("record the SCIM resource"))?;
    Ok(())
}

/// Whether a licence of `license` is free on `account_id` (inside the write transaction).
async fn license_free(
    connection: &mut AnyConnection,
    account_id: &str,
    license: LicenseType,
) -> ApiResult<bool> {
    match ensure_license_free(connection, account_id, license).await {
        Ok(()) => Ok(true),
        Err(error) if error.kind == ProblemType::LicenseExhausted => Ok(false),
        Err(error) => Err(error),
    }
}

/// Creates a user provisioned through SCIM. Where the REST API refuses a user with no licence
/// free, this creates it waiting for one (an identity provider quarantines a sync whose creates
/// keep failing). An active user holding a licence is invited at once.
pub(super) async fn scim_create(
    state: &AppState,
    principal: &Principal,
    account_id: &str,
    user: ScimUser,
) -> ApiResult<String> {
    let settings = user.settings(Vec::new())?;
    // Hashed before the transaction (argon2 is slow), for a user that will likely be invited.
    let password = temporary_password();
    let password_hash = if user.active && user.login.is_some() {
        Some(hash_password(&password).await?)
    } else {
        None
    };
    let now = state.now();
    let mut tx = state.begin().await?;
    let access = authorize(
        &mut tx.tx,
        principal,
        account_id,
        Permission::ServiceUsersWrite,
    )
    .await?;
    user_name_taken(&mut tx.tx, account_id, &user.user_name, None).await?;
    let canonical = match &user.login {
        Some(login) => {
            ensure_login_free(&mut tx.tx, login).await?;
            login.canonical()
        }
        None => placeholder_login(account_id, &user.user_name),
    };
    let waiting = !license_free(&mut tx.tx, account_id, settings.license_type).await?;
    let invited = password_hash.is_some() && !waiting;
    let row = Row_ {
        id: uuid::Uuid::now_v7().to_string(),
        account_id: account_id.to_owned(),
        user_id: match &user.login {
            Some(login) => login.to_string(),
            None => user.user_name.clone(),
        },
        settings,
        stored_state: match (user.active, invited) {
            (false, _) => UserState::Disabled,
            (true, true) => UserState::Invited,
            (true, false) => UserState::Prepared,
        },
        enabled_state: (!user.active).then_some(UserState::Prepared),
        temp_expires_at: invited.then_some(now + ACTIVATION_LIFETIME_MILLIS),
        external_ref: None,
        created_at: now,
        invited_at: invited.then_some(now),
        activated_at: None,
        activation_sends: i64::from(invited),
        version: 1,
        license_waiting: waiting,
        scim_document: Some(String::new()),
    };
    insert(
        &mut tx,
        &row,
        &canonical,
        password_hash.as_deref().filter(|_| invited),
    )
    .await?;
    write_scim_columns(&mut tx, &row.id, &user, now).await?;
    tx.emit(row.event(EventType::UserCreated), now);
    if invited {
        queue_activation(
            state,
            &mut tx,
            &row,
            &access.account.display_name,
            &password,
            now,
        );
    }
    tx.commit().await.map_err(db_error("commit"))?;
    if invited {
        state.mail_queued();
    }
    Ok(row.id)
}

/// Refuses a login another admin, account manager or user holds, naming the holder.
async fn ensure_login_free(connection: &mut AnyConnection, login: &UserId) -> ApiResult<()> {
    match login_taken_by(connection, &login.canonical()).await? {
        None => Ok(()),
        Some(taken_by) => Err(ApiError::new(
            ProblemType::UserIdConflict,
            format!(
                "{login} is already used by {taken_by}; a user ID must be unique across users, account managers and admins"
            ),
        )),
    }
}

/// What stands in the login index for a SCIM user with no email and a userName that is not a
/// login: unique, and never the canonical form of an email or a number, so nobody signs in
/// with it.
fn placeholder_login(account_id: &str, user_name: &str) -> String {
    format!("scim:{account_id}:{}", user_name.to_lowercase())
}

/// Whether the user has a login it can be invited with.
fn has_login(row: &Row_) -> bool {
    UserId::parse(&row.user_id).is_ok()
}

async fn scim_row(tx: &mut WriteTx, account_id: &str, id: &str) -> ApiResult<Row_> {
    find(&mut tx.tx, id)
        .await?
        .filter(|row| row.account_id == account_id && row.scim_document.is_some())
        .ok_or_else(|| ApiError::not_found("user", id))
}

/// Replaces a SCIM-provisioned user's settings with `user` (PUT, and PATCH once applied). The
/// user ID (login) stays as it was created; a new licence type is taken when free and waited
/// for otherwise; `active: false` disables and `true` enables (and invites a user who was
/// never invited, once it holds a licence).
pub(super) async fn scim_replace(
    state: &AppState,
    principal: &Principal,
    account_id: &str,
    id: &str,
    user: ScimUser,
    expected: &IfMatch,
) -> ApiResult<()> {
    let now = state.now();
    let mut tx = state.begin().await?;
    let access = authorize(
        &mut tx.tx,
        principal,
        account_id,
        Permission::ServiceUsersWrite,
    )
    .await?;
    let mut row = scim_row(&mut tx, account_id, id).await?;
    expected.check("user", id, row.version)?;
    user_name_taken(&mut tx.tx, account_id, &user.user_name, Some(id)).await?;
    let settings = user.settings(row.settings.permissions.clone())?;
    let old_license = row.settings.license_type;
    let held = !row.license_waiting;
    let mut freed = None;
    if settings.license_type != old_license || row.license_waiting {
        // Waiting for the old type, or moving: hold the new type if one is free.
        let free = license_free(&mut tx.tx, account_id, settings.license_type).await?;
        row.license_waiting = !free;
        if held {
            freed = Some(old_license);
        }
    }
    let (stored_state, enabled_state) = match (user.active, row.stored_state) {
        (false, UserState::Disabled) => (UserState::Disabled, row.enabled_state),
        (false, current) => (UserState::Disabled, Some(current)),
        (true, UserState::Disabled) => (row.enabled_state.unwrap_or(UserState::Prepared), None),
        (true, current) => (current, row.enabled_state),
    };
    let read_version = row.version;
    row.settings = settings;
    row.stored_state = stored_state;
    row.enabled_state = enabled_state;
    row.version += 1;
    save(&mut tx, &row, read_version).await?;
    write_scim_columns(&mut tx, &row.id, &user, now).await?;
    // A user created without a login gets one as soon as it has an email (or a userName that
    // is one); until then its stand-in follows the userName.
    if !has_login(&row) {
        let (user_id, canonical) = match &user.login {
            Some(login) => {
                ensure_login_free(&mut tx.tx, login).await?;
                (login.to_string(), login.canonical())
            }
            None => (
                user.user_name.clone(),
                placeholder_login(account_id, &user.user_name),
            ),
        };
        sqlx::query("UPDATE service_users SET user_id = $1, user_id_canonical = $2 WHERE id = $3")
            .bind(&user_id)
            .bind(canonical)
            .bind(&row.id)
            .execute(&mut *tx.tx)
            .await
            .map_err(db_error("record the user's login"))?;
        row.user_id = user_id;
    }
    let mut mail = false;
    if row.stored_state == UserState::Prepared && !row.license_waiting && has_login(&row) {
        invite(state, &mut tx, &mut row, &access.account.display_name, now).await?;
        mail = true;
    }
    tx.emit(row.event(EventType::UserUpdated), now);
    if let Some(license) = freed {
        mail |= grant_waiting(state, &mut tx, account_id, license, now).await?;
    }
    tx.commit().await.map_err(db_error("commit"))?;
    if mail {
        state.mail_queued();
    }
    Ok(())
}

/// Deletes a SCIM-provisioned user for good, giving its licence to the next user waiting.
pub(super) async fn scim_delete(
    state: &AppState,
    principal: &Principal,
    account_id: &str,
    id: &str,
    expected: &IfMatch,
) -> ApiResult<()> {
    let now = state.now();
    let mut tx = state.begin().await?;
    authorize(
        &mut tx.tx,
        principal,
        account_id,
        Permission::ServiceUsersWrite,
    )
    .await?;
    let row = scim_row(&mut tx, account_id, id).await?;
    expected.check("user", id, row.version)?;
    let mail = remove(state, &mut tx, &row, now).await?;
    tx.commit().await.map_err(db_error("commit"))?;
    if mail {
        state.mail_queued();
    }
    Ok(())
}

/// Deletes `row` and hands its licence to the next user waiting for one; whether mail was
/// queued.
async fn remove(state: &AppState, tx: &mut WriteTx, row: &Row_, now: i64) -> ApiResult<bool> {
    forget_user(tx, &row.id).await?;
    sqlx::query("DELETE FROM service_users WHERE id = $1")
        .bind(&row.id)
        .execute(&mut *tx.tx)
        .await
        .map_err(db_error("delete the user"))?;
    tx.emit(row.event(EventType::UserDeleted), now);
    if row.license_waiting {
        return Ok(false);
    }
    grant_waiting(state, tx, &row.account_id, row.settings.license_type, now).await
}

/// Gives free `license` licences of `account_id` to the users waiting for one, oldest first,
/// inviting those that were waiting to be invited. Whether mail was queued.
pub(super) async fn grant_waiting(
    state: &AppState,
    tx: &mut WriteTx,
    account_id: &str,
    license: LicenseType,
    now: i64,
) -> ApiResult<bool> {
    let quantity: Option<i64> = sqlx::query(
        "SELECT quantity FROM subscriptions WHERE account_id = $1 AND license_type = $2",
    )
    .bind(account_id)
    .bind(license.as_str())
    .fetch_optional(&mut *tx.tx)
    .await
    .map_err(db_error("read the subscription"))?
    .map(|row| row.get(0));
    let Some(quantity) = quantity else {
        return Ok(false);
    };
    let free = quantity - super::subscriptions::assigned(&mut tx.tx, account_id, license).await?;
    if free <= 0 {
        return Ok(false);
    }
    let waiting = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {READ_COLUMNS} FROM service_users WHERE account_id = $1 AND license_type = $2 AND license_waiting = 1 \
         ORDER BY created_at, id LIMIT $3"
    )))
    .bind(account_id)
    .bind(license.as_str())
    .bind(free)
    .fetch_all(&mut *tx.tx)
    .await
    .map_err(db_error("find users waiting for a licence"))?
    .iter()
    .map(Row_::from_row)
    .collect::<ApiResult<Vec<_>>>()?;
    if waiting.is_empty() {
        return Ok(false);
    }
    let account_name: String = sqlx::query("SELECT display_name FROM accounts WHERE id = $1")
        .bind(account_id)
        .fetch_one(&mut *tx.tx)
        .await
        .map_err(db_error("read the account"))?
        .get(0);
    let mut mail = false;
    for mut row in waiting {
        let read_version = row.version;
        row.license_waiting = false;
        row.version += 1;
        sqlx::query(
            "UPDATE service_users SET license_waiting = 0, version = $1 WHERE id = $2 AND version = $3",
        )
        .bind(row.version)
        .bind(&row.id)
        .bind(read_version)
        .execute(&mut *tx.tx)
        .await
        .map_err(db_error("assign the licence"))?;
        if row.stored_state == UserState::Prepared && has_login(&row) {
            invite(state, tx, &mut row, &account_name, now).await?;
            mail = true;
        }
        tx.emit(row.event(EventType::UserUpdated), now);
    }
    Ok(mail)
}
