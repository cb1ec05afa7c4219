//! Account managers (seed 004): portal users with account-wide access and no voice service.
//!
//! There is no default password. Creating one (or resending) emails the username, a random
//! temporary password and a link; the temporary password is stored only as an argon2 hash,
//! works once, and expires (72 h by default). Activation sets the person's own password
//! (12 characters or more). An account manager's email is unique across account managers and
//! admins.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use serde::Deserialize;
use sqlx::{AnyConnection, Row};

use super::auth::{Principal, authorize, authorize_for};
use super::json::{JsonBody, PageQuery, Params, check_external_ref};
use super::problem::{ApiError, ApiResult, ProblemType};
use super::store::{NewEvent, Store, WriteTx};
use super::{AppState, db_error, mail};
use crate::api::EventType;
use crate::api::time::format_millis;
pub use crate::api::{
    AccountManagerState, AccountManagerView, Activate, CreateAccountManager, Page,
};
use crate::domain::{Email, Language, Permission, person_name};

/// How long a temporary password works.
pub const ACTIVATION_LIFETIME_MILLIS: i64 = 72 * 3_600_000;
pub const MIN_PASSWORD_LENGTH: usize = 12;

#[derive(Debug, Clone)]
struct Row_ {
    id: String,
    account_id: String,
    email: String,
    first_name: String,
    last_name: String,
    language: Language,
    branding_domain: Option<String>,
    stored_state: AccountManagerState,
    temp_expires_at: Option<i64>,
    external_ref: Option<String>,
    created_at: i64,
    activated_at: Option<i64>,
    activation_sends: i64,
    version: i64,
}

const COLUMNS: &str = "id, account_id, email, first_name, last_name, language, branding_domain, state, temp_expires_at, \
                       external_ref, created_at, activated_at, activation_sends, version";

impl Row_ {
    fn from_row(row: &sqlx::any::AnyRow) -> Row_ {
        let state: String = row.get("state");
        Row_ {
            id: row.get("id"),
            account_id: row.get("account_id"),
            email: row.get("email"),
            first_name: row.get("first_name"),
            last_name: row.get("last_name"),
            language: row.get::<String, _>("language").parse().unwrap_or_default(),
            branding_domain: row.get("branding_domain"),
            stored_state: match state.as_str() {
                "Active" => AccountManagerState::Active,
                "ActivationExpired" => AccountManagerState::ActivationExpired,
                _ => AccountManagerState::ActivationPending,
            },
            temp_expires_at: row.get("temp_expires_at"),
            external_ref: row.get("external_ref"),
            created_at: row.get("created_at"),
            activated_at: row.get("activated_at"),
            activation_sends: row.get("activation_sends"),
            version: row.get("version"),
        }
    }

    fn state(&self, now: i64) -> AccountManagerState {
        match (self.stored_state, self.temp_expires_at) {
            (AccountManagerState::ActivationPending, Some(expires)) if now >= expires => {
                AccountManagerState::ActivationExpired
            }
            (state, _) => state,
        }
    }

    fn view(&self, now: i64) -> AccountManagerView {
        AccountManagerView {
            id: self.id.clone(),
            account_id: self.account_id.clone(),
            email: self.email.clone(),
            first_name: self.first_name.clone(),
            last_name: self.last_name.clone(),
            language: self.language,
            branding_domain: self.branding_domain.clone(),
            state: self.state(now),
            activation_expires_at: match self.state(now) {
                AccountManagerState::Active => None,
                _ => self.temp_expires_at.map(format_millis),
            },
            external_ref: self.external_ref.clone(),
            created_at: format_millis(self.created_at),
            activated_at: self.activated_at.map(format_millis),
            activation_sends: self.activation_sends,
            version: self.version,
        }
    }
}

// Argon2 is deliberately slow (tens of milliseconds): it runs on the blocking pool, never on
// the async workers, and never while a write transaction holds the writer.

pub(super) async fn hash_password(password: &str) -> ApiResult<String> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt)
            .map_err(|e| ApiError::internal("salt the password", e))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| ApiError::internal("hash the password", e))
    })
    .await
    .map_err(|e| ApiError::internal("hash the password", e))?
}

pub(super) async fn verify_password(password: &str, stored: &str) -> bool {
    let (password, stored) = (password.to_owned(), stored.to_owned());
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored)
            .map(|hash| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &hash)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// A temporary password a person can type: 16 characters from an alphabet without look-alikes
/// (about 90 bits).
pub(super) fn temporary_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// Checks the branding domain against the portal's: required and one of them when there are
/// several (seed 004: "only available if your partition has multiple branding domains").
fn check_branding(state: &AppState, requested: Option<&str>) -> ApiResult<Option<String>> {
    let domains = &state.config.branding_domains;
    match (domains.len(), requested) {
        (0 | 1, None) => Ok(domains.first().cloned()),
        (0, Some(_)) => Err(ApiError::invalid(
            "/brandingDomain",
            "this portal has no branding domains; leave brandingDomain out",
        )),
        (1, Some(domain)) if domain == domains[0] => Ok(Some(domain.to_owned())),
        (1, Some(_)) => Err(ApiError::invalid(
            "/brandingDomain",
            format!(
                "this portal has one branding domain, {}; leave brandingDomain out",
                domains[0]
            ),
        )),
        (_, None) => Err(ApiError::invalid(
            "/brandingDomain",
            format!(
                "this portal has several branding domains; choose one of {}",
                domains.join(", ")
            ),
        )),
        (_, Some(domain)) if domains.iter().any(|d| d == domain) => Ok(Some(domain.to_owned())),
        (_, Some(domain)) => Err(ApiError::invalid(
            "/brandingDomain",
            format!(
                "{domain:?} is not a branding domain of this portal; choose one of {}",
                domains.join(", ")
            ),
        )),
    }
}

async fn ensure_email_free(connection: &mut AnyConnection, email: &Email) -> ApiResult<()> {
    match super::users::login_taken_by(connection, &email.canonical()).await? {
        None => Ok(()),
        Some(taken_by) => Err(ApiError::new(
            ProblemType::EmailConflict,
            format!("{email} is already used by {taken_by}; an account manager's email must be unique across account managers, admins and end users"),
        )
        .at("/email")),
    }
}

pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Path(account_id): Path<String>,
    JsonBody(body): JsonBody<CreateAccountManager>,
) -> ApiResult<Response> {
    let email = Email::parse(&body.email)?;
    let first_name = person_name("firstName", &body.first_name)?;
    let last_name = person_name("lastName", &body.last_name)?;
    let language = body.language.unwrap_or_default();
    let branding_domain = check_branding(&state, body.branding_domain.as_deref())?;
    check_external_ref(body.external_ref.as_deref())?;
    let password = temporary_password();
    let password_hash = hash_password(&password).await?;
    let now = state.now();
    let mut tx = state.begin().await?;
    let access = authorize(
        &mut tx.tx,
        &principal,
        &account_id,
        Permission::AdminUsersWrite,
    )
    .await?;
    ensure_email_free(&mut tx.tx, &email).await?;
    if let Some(external_ref) = &body.external_ref
        && let Some(existing) =
            sqlx::query("SELECT id FROM account_managers WHERE external_ref = $1")
                .bind(external_ref)
                .fetch_optional(&mut *tx.tx)
                .await
                .map_err(db_error("check the external reference"))?
    {
        return Err(ApiError::new(
            ProblemType::ExternalRefConflict,
            format!(
                "externalRef {external_ref:?} already belongs to account manager {}",
                existing.get::<String, _>(0)
            ),
        )
        .at("/externalRef"));
    }
    let row = Row_ {
        id: uuid::Uuid::now_v7().to_string(),
        account_id: account_id.clone(),
        email: email.to_string(),
        first_name,
        last_name,
        language,
        branding_domain,
        stored_state: AccountManagerState::ActivationPending,
        temp_expires_at: Some(now + ACTIVATION_LIFETIME_MILLIS),
        external_ref: body.external_ref.clone(),
        created_at: now,
        activated_at: None,
        activation_sends: 1,
        version: 1,
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO account_managers ({COLUMNS}, email_canonical, temp_password_hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'ActivationPending', $8, $9, $10, NULL, $11, $12, $13, $14)"
    )))
    .bind(&row.id)
    .bind(&row.account_id)
    .bind(&row.email)
    .bind(&row.first_name)
    .bind(&row.last_name)
    .bind(row.language.as_str())
    .bind(&row.branding_domain)
    .bind(row.temp_expires_at)
    .bind(&row.external_ref)
    .bind(row.created_at)
    .bind(row.activation_sends)
    .bind(row.version)
    .bind(email.canonical())
    .bind(&password_hash)
    .execute(&mut *tx.tx)
    .await
    .map_err(db_error("create the account manager"))?;
    queue_activation(
        &state,
        &mut tx,
        &row,
        &access.account.display_name,
        &password,
        now,
    );
    tx.emit(event(EventType::AccountManagerCreated, &row), now);
    let response = tx
        .commit_response((StatusCode::CREATED, Json(row.view(now))).into_response())
        .await?;
    state.mail_queued();
    Ok(response)
}

fn queue_activation(
    state: &AppState,
    tx: &mut WriteTx,
    row: &Row_,
    account_name: &str,
    password: &str,
    now: i64,
) {
    let base = match &row.branding_domain {
        Some(domain) => format!("https://{domain}"),
        None => state.config.public_url.trim_end_matches('/').to_owned(),
    };
    // The page speaks the account manager's language (seed 004).
    let link = match row.language {
        Language::En => format!("{base}/account-managers/activate"),
        Language::Fr => format!("{base}/account-managers/activate?lang=fr"),
    };
    let (subject, body) = match row.language {
        Language::En => (
            format!("Activate your account manager access to {account_name}"),
            format!(
                "Hello {first},\n\nYou are now an account manager of {account_name}.\n\n\
                 Username: {email}\nTemporary password: {password}\n\n\
                 Sign in at {link} within 72 hours; you will be asked to choose a new password.\n",
                first = row.first_name,
                email = row.email,
            ),
        ),
        Language::Fr => (
            format!("Activez votre accès de gestionnaire de compte pour {account_name}"),
            format!(
                "Bonjour {first},\n\nVous êtes maintenant gestionnaire de compte de {account_name}.\n\n\
                 Nom d'utilisateur : {email}\nMot de passe temporaire : {password}\n\n\
                 Connectez-vous sur {link} dans les 72 heures ; vous devrez choisir un nouveau mot de passe.\n",
                first = row.first_name,
                email = row.email,
            ),
        ),
    };
    // The temporary password stops working when the activation expires.
    let erase_at = row
        .temp_expires_at
        .unwrap_or(now + ACTIVATION_LIFETIME_MILLIS);
    mail::queue(tx, &row.email, &subject, &body, now, erase_at);
}

fn event<'a>(event_type: EventType, row: &'a Row_) -> NewEvent<'a> {
    NewEvent {
        event_type,
        object_kind: "AccountManager",
        object_id: &row.id,
        account_id: Some(&row.account_id),
        external_ref: row.external_ref.as_deref(),
        data: serde_json::json!({ "email": row.email }),
    }
}

async fn find(connection: &mut AnyConnection, id: &str) -> ApiResult<Option<Row_>> {
    Ok(sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM account_managers WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *connection)
    .await
    .map_err(|e| ApiError::internal("read the account manager", e))?
    .as_ref()
    .map(Row_::from_row))
}

async fn authorized(
    connection: &mut AnyConnection,
    principal: &Principal,
    id: &str,
    permission: Permission,
) -> ApiResult<(Row_, super::auth::AccountAccess)> {
    let row = find(connection, id)
        .await?
        .ok_or_else(|| ApiError::not_found("account manager", id))?;
    let access = authorize_for(
        connection,
        principal,
        &row.account_id,
        permission,
        "account manager",
        id,
    )
    .await?;
    Ok((row, access))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListQuery {
    /// Only the account manager with this reference.
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
) -> ApiResult<Json<Page<AccountManagerView>>> {
    let limit = query.page.limit()?;
    let after = query.page.after()?;
    let now = state.now();
    let mut connection = state.connection().await?;
    authorize(
        &mut connection,
        &principal,
        &account_id,
        Permission::AdminUsersRead,
    )
    .await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM account_managers WHERE account_id = $1 AND id > $2 AND ($3 IS NULL OR external_ref = $3) \
         ORDER BY id LIMIT $4"
    )))
    .bind(&account_id)
    .bind(&after)
    .bind(&query.external_ref)
    .bind(limit + 1)
    .fetch_all(&mut *connection)
    .await
    .map_err(|e| ApiError::internal("list account managers", e))?;
    let views = rows
        .iter()
        .map(|row| Row_::from_row(row).view(now))
        .collect();
    Ok(Json(Page::new(views, limit, |m: &AccountManagerView| {
        m.id.clone()
    })))
}

pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<AccountManagerView>> {
    let now = state.now();
    let mut connection = state.connection().await?;
    let (row, _) = authorized(&mut connection, &principal, &id, Permission::AdminUsersRead).await?;
    Ok(Json(row.view(now)))
}

/// Issues a new temporary password (the old one stops working) with a new 72-hour window and
/// emails it. An active account manager has nothing to resend.
pub async fn resend(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let password = temporary_password();
    let password_hash = hash_password(&password).await?;
    let now = state.now();
    let mut tx = state.begin().await?;
    let (mut row, access) =
        authorized(&mut tx.tx, &principal, &id, Permission::AdminUsersWrite).await?;
    if row.state(now) == AccountManagerState::Active {
        return Err(ApiError::new(
            ProblemType::AlreadyActive,
            format!("account manager {id} is already active; they reset their password themselves"),
        ));
    }
    row.stored_state = AccountManagerState::ActivationPending;
    row.temp_expires_at = Some(now + ACTIVATION_LIFETIME_MILLIS);
    row.activation_sends += 1;
    row.version += 1;
    sqlx::query(
        "UPDATE account_managers SET state = 'ActivationPending', temp_password_hash = $1, temp_expires_at = $2, \
         activation_sends = $3, version = $4 WHERE id = $5",
    )
    .bind(&password_hash)
    .bind(row.temp_expires_at)
    .bind(row.activation_sends)
    .bind(row.version)
    .bind(&id)
    .execute(&mut *tx.tx)
    .await
    .map_err(db_error("resend the activation"))?;
    queue_activation(
        &state,
        &mut tx,
        &row,
        &access.account.display_name,
        &password,
        now,
    );
    tx.emit(event(EventType::AccountManagerActivationResent, &row), now);
    let response = tx
        .commit_response(Json(row.view(now)).into_response())
        .await?;
    state.mail_queued();
    Ok(response)
}

pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let now = state.now();
    let mut tx = state.begin().await?;
    let (row, _) = authorized(&mut tx.tx, &principal, &id, Permission::AdminUsersWrite).await?;
    sqlx::query("DELETE FROM account_managers WHERE id = $1")
        .bind(&id)
        .execute(&mut *tx.tx)
        .await
        .map_err(db_error("delete the account manager"))?;
    tx.emit(event(EventType::AccountManagerDeleted, &row), now);
    tx.commit().await.map_err(db_error("commit"))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/account-managers/activate`: the first sign-in, which trades the temporary password
/// for the person's own. Rate-limited per address; a wrong username and a wrong password get
/// the same answer.
pub async fn activate(
    State(state): State<AppState>,
    axum::extract::ConnectInfo(client): axum::extract::ConnectInfo<std::net::SocketAddr>,
    JsonBody(body): JsonBody<Activate>,
) -> ApiResult<Json<AccountManagerView>> {
    activate_with(&state, client.ip(), &body).await.map(Json)
}

/// Activation, for the API and the activation page alike.
pub async fn activate_with(
    state: &AppState,
    client: std::net::IpAddr,
    body: &Activate,
) -> ApiResult<AccountManagerView> {
    let now = state.now();
    state.limit_attempts(client)?;
    check_new_password(body)?;
    let refused = || {
        ApiError::new(
            ProblemType::InvalidCredentials,
            "the username or temporary password is not right",
        )
    };
    let canonical = Email::parse(&body.username)
        .map_err(|_| refused())?
        .canonical();
    // Checked outside the write transaction (the hashes are slow); the update then applies only
    // if nothing changed since (a resend replaces the temporary password).
    let found = {
        let mut connection = state.connection().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS}, temp_password_hash FROM account_managers WHERE email_canonical = $1"
        )))
        .bind(&canonical)
        .fetch_optional(&mut *connection)
        .await
        .map_err(db_error("find the account manager"))?
    };
    let Some(found) = found else {
        // Spend the same effort as a real check, so timing does not reveal who exists.
        spend_a_check(&body.temporary_password).await;
        return Err(refused());
    };
    let mut row = Row_::from_row(&found);
    let stored: Option<String> = found.get("temp_password_hash");
    check_activatable(&row, now)?;
    let Some(stored) = stored else {
        return Err(refused());
    };
    if !verify_password(&body.temporary_password, &stored).await {
        return Err(refused());
    }
    let new_hash = hash_password(&body.new_password).await?;
    let mut tx = state.begin().await?;
    let read_version = row.version;
    row.stored_state = AccountManagerState::Active;
    row.activated_at = Some(now);
    row.version += 1;
    let updated = sqlx::query(
        "UPDATE account_managers SET state = 'Active', password_hash = $1, temp_password_hash = NULL, \
         temp_expires_at = NULL, activated_at = $2, version = $3 WHERE id = $4 AND version = $5",
    )
    .bind(&new_hash)
    .bind(now)
    .bind(row.version)
    .bind(&row.id)
    .bind(read_version)
    .execute(&mut *tx.tx)
    .await
    .map_err(db_error("activate the account manager"))?
    .rows_affected();
    if updated == 0 {
        // Activated, resent or expired meanwhile: say which, from the current row.
        let current = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM account_managers WHERE id = $1"
        )))
        .bind(&row.id)
        .fetch_optional(&mut *tx.tx)
        .await
        .map_err(db_error("find the account manager"))?;
        if let Some(current) = current {
            check_activatable(&Row_::from_row(&current), now)?;
        }
        return Err(refused());
    }
    row.temp_expires_at = None;
    tx.emit(event(EventType::AccountManagerActivated, &row), now);
    tx.commit().await.map_err(db_error("commit"))?;
    Ok(row.view(now))
}

/// The password policy of every activation (account managers and users): 12 characters or
/// more, and not the temporary password.
pub(super) fn check_new_password(body: &Activate) -> ApiResult<()> {
    if body.new_password.chars().count() < MIN_PASSWORD_LENGTH {
        return Err(ApiError::invalid(
            "/newPassword",
            "the new password must be at least 12 characters long",
        ));
    }
    if body.new_password == body.temporary_password {
        return Err(ApiError::invalid(
            "/newPassword",
            "choose a new password, not the temporary one",
        ));
    }
    Ok(())
}

/// Refuses activation of an account manager that is not waiting for it.
fn check_activatable(row: &Row_, now: i64) -> ApiResult<()> {
    match row.state(now) {
        AccountManagerState::Active => Err(ApiError::new(
            ProblemType::AlreadyActive,
            "this account manager is already active; sign in with your password",
        )),
        AccountManagerState::ActivationExpired => Err(ApiError::new(
            ProblemType::ActivationExpired,
            "the temporary password expired; ask an administrator to resend the activation email",
        )),
        AccountManagerState::ActivationPending => Ok(()),
    }
}

static DUMMY_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Spends the effort of a real password check for a login that does not exist, so timing does
/// not reveal who exists.
pub(super) async fn spend_a_check(password: &str) {
    let dummy = match DUMMY_HASH.get() {
        Some(hash) => hash.clone(),
        None => {
            let hash = hash_password("x").await.unwrap_or_default();
            DUMMY_HASH.get_or_init(|| hash).clone()
        }
    };
    let _ = verify_password(password, &dummy).await;
}

/// Marks account managers whose temporary password lapsed as ActivationExpired and emits
/// `account_manager.activation_expired`. Returns when the next one lapses, if any.
pub async fn sweep_expired(store: &Store, now: i64) -> Result<Option<i64>, sqlx::Error> {
    let due = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM account_managers WHERE state = 'ActivationPending' AND temp_expires_at <= $1 LIMIT 500"
    )))
    .bind(now)
    .fetch_all(&store.pool)
    .await?;
    if !due.is_empty() {
        let mut tx = store.write().await?;
        for row in &due {
            let mut row = Row_::from_row(row);
            row.version += 1;
            let updated = sqlx::query(
                "UPDATE account_managers SET state = 'ActivationExpired', temp_password_hash = NULL, version = $1 \
                 WHERE id = $2 AND state = 'ActivationPending'",
            )
            .bind(row.version)
            .bind(&row.id)
            .execute(&mut *tx.tx)
            .await?
            .rows_affected();
            if updated > 0 {
                tx.emit(event(EventType::AccountManagerActivationExpired, &row), now);
            }
        }
        tx.commit().await?;
    }
    sqlx::query(
        "SELECT MIN(temp_expires_at) FROM account_managers WHERE state = 'ActivationPending'",
    )
    .fetch_one(&store.pool)
    .await?
    .try_get::<Option<i64>, _>(0)
}
