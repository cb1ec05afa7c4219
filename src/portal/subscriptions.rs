//! Subscriptions: an account's licences of one licence type (one subscription per type and
//! account), with what is assigned and free on every read.
//!
//! Adding or amending one is a financial change (seeds 000/001): it needs `subscriptions.write`,
//! which only SubscriptionContributor gives, and only where that role functions — partner
//! accounts and clients with a sub-contract. A quantity never drops below what users hold.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use sqlx::{AnyConnection, Row};

use super::accounts::if_match;
use super::auth::{Principal, authorize, authorize_for};
use super::json::{JsonBody, PageQuery, Params, check_external_ref, with_etag};
use super::problem::{ApiError, ApiResult, ProblemType};
use super::store::NewEvent;
use super::{AppState, db_error};
use crate::api::time::format_millis;
use crate::api::{
    CreateSubscription, EventType, LicenseTypeView, Page, Patch, SubscriptionView,
    UpdateSubscription,
};
use crate::domain::{LicenseType, Permission};

const COLUMNS: &str =
    "id, account_id, license_type, quantity, external_ref, created_at, updated_at, version";

#[derive(Debug, Clone)]
struct Row_ {
    id: String,
    account_id: String,
    license_type: LicenseType,
    quantity: i64,
    external_ref: Option<String>,
    created_at: i64,
    updated_at: i64,
    version: i64,
}

impl Row_ {
    fn from_row(row: &sqlx::any::AnyRow) -> ApiResult<Row_> {
        Ok(Row_ {
            id: row.get("id"),
            account_id: row.get("account_id"),
            license_type: row
                .get::<String, _>("license_type")
                .parse()
                .map_err(|e| ApiError::internal("read the subscription", e))?,
            quantity: row.get("quantity"),
            external_ref: row.get("external_ref"),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
            version: row.get("version"),
        })
    }

    fn view(&self, assigned: i64) -> SubscriptionView {
        SubscriptionView {
            id: self.id.clone(),
            account_id: self.account_id.clone(),
            license_type: self.license_type,
            quantity: self.quantity,
            assigned,
            free: (self.quantity - assigned).max(0),
            external_ref: self.external_ref.clone(),
            created_at: format_millis(self.created_at),
            updated_at: format_millis(self.updated_at),
            version: self.version,
        }
    }

    fn event(&self, event_type: EventType, assigned: i64) -> NewEvent<'_> {
        NewEvent {
            event_type,
            object_kind: "Subscription",
            object_id: &self.id,
            account_id: Some(&self.account_id),
            external_ref: self.external_ref.as_deref(),
            data: serde_json::json!({
                "licenseType": self.license_type,
                "quantity": self.quantity,
                "assigned": assigned,
            }),
        }
    }
}

fn response(status: StatusCode, row: &Row_, assigned: i64) -> Response {
    with_etag(status, row.version, row.view(assigned))
}

/// How many users of `account` hold a `license` licence.
pub async fn assigned(
    connection: &mut AnyConnection,
    account: &str,
    license: LicenseType,
) -> ApiResult<i64> {
    Ok(sqlx::query(
        "SELECT COUNT(*) FROM service_users WHERE account_id = $1 AND license_type = $2 AND license_waiting = 0",
    )
    .bind(account)
    .bind(license.as_str())
    .fetch_one(&mut *connection)
    .await
    .map_err(db_error("count assigned licences"))?
    .get(0))
}

/// Refuses (409 `license-exhausted`) a new holder of a `license` licence on `account` when none
/// is free, naming the total and who holds them. Runs inside the write transaction that then
/// assigns it, so two requests never take the last licence twice.
pub async fn ensure_license_free(
    connection: &mut AnyConnection,
    account: &str,
    license: LicenseType,
) -> ApiResult<()> {
    let quantity: Option<i64> = sqlx::query(
        "SELECT quantity FROM subscriptions WHERE account_id = $1 AND license_type = $2",
    )
    .bind(account)
    .bind(license.as_str())
    .fetch_optional(&mut *connection)
    .await
    .map_err(db_error("read the subscription"))?
    .map(|row| row.get(0));
    let Some(quantity) = quantity else {
        return Err(ApiError::new(
            ProblemType::LicenseExhausted,
            format!(
                "account {account} has no {license} subscription, so no {license} licence is free; add a {license} subscription to the account"
            ),
        )
        .at("/licenseType"));
    };
    let assigned = assigned(connection, account, license).await?;
    if assigned < quantity {
        return Ok(());
    }
    let holders: Vec<String> = sqlx::query(
        "SELECT user_id FROM service_users WHERE account_id = $1 AND license_type = $2 AND license_waiting = 0 ORDER BY user_id LIMIT 4",
    )
    .bind(account)
    .bind(license.as_str())
    .fetch_all(&mut *connection)
    .await
    .map_err(db_error("list licence holders"))?
    .iter()
    .map(|row| row.get(0))
    .collect();
    let held_by = match (holders.len() as i64, assigned) {
        (0, _) => String::new(),
        (shown, total) if total > shown => {
            format!(
                " (held by {} and {} more)",
                holders.join(", "),
                total - shown
            )
        }
        _ => format!(" (held by {})", holders.join(", ")),
    };
    Err(ApiError::new(
        ProblemType::LicenseExhausted,
        format!(
            "no {license} licence is free on account {account}: all {quantity} are assigned{held_by}; raise the {license} subscription's quantity or remove a user"
        ),
    )
    .at("/licenseType"))
}

fn check_quantity(quantity: i64) -> ApiResult<i64> {
    if (0..=1_000_000).contains(&quantity) {
        Ok(quantity)
    } else {
        Err(ApiError::invalid(
            "/quantity",
            format!("quantity must be a whole number from 0 to 1000000, not {quantity}"),
        ))
    }
}

pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Path(account_id): Path<String>,
    JsonBody(body): JsonBody<CreateSubscription>,
) -> ApiResult<Response> {
    let quantity = check_quantity(body.quantity)?;
    check_external_ref(body.external_ref.as_deref())?;
    let now = state.now();
    let mut tx = state.begin().await?;
    authorize(
        &mut tx.tx,
        &principal,
        &account_id,
        Permission::SubscriptionsWrite,
    )
    .await?;
    if let Some(existing) =
        sqlx::query("SELECT id FROM subscriptions WHERE account_id = $1 AND license_type = $2")
            .bind(&account_id)
            .bind(body.license_type.as_str())
            .fetch_optional(&mut *tx.tx)
            .await
            .map_err(db_error("find the subscription"))?
    {
        return Err(ApiError::new(
            ProblemType::SubscriptionExists,
            format!(
                "account {account_id} already has a {} subscription ({}); change its quantity instead",
                body.license_type,
                existing.get::<String, _>(0)
            ),
        )
        .at("/licenseType"));
    }
    if let Some(external_ref) = &body.external_ref
        && let Some(existing) = sqlx::query("SELECT id FROM subscriptions WHERE external_ref = $1")
            .bind(external_ref)
            .fetch_optional(&mut *tx.tx)
            .await
            .map_err(db_error("check the external reference"))?
    {
        return Err(ApiError::new(
            ProblemType::ExternalRefConflict,
            format!(
                "externalRef {external_ref:?} already belongs to subscription {}",
                existing.get::<String, _>(0)
            ),
        )
        .at("/externalRef"));
    }
    let row = Row_ {
        id: uuid::Uuid::now_v7().to_string(),
        account_id: account_id.clone(),
        license_type: body.license_type,
        quantity,
        external_ref: body.external_ref.clone(),
        created_at: now,
        updated_at: now,
        version: 1,
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO subscriptions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    )))
    .bind(&row.id)
    .bind(&row.account_id)
    .bind(row.license_type.as_str())
    .bind(row.quantity)
    .bind(&row.external_ref)
    .bind(row.created_at)
    .bind(row.updated_at)
    .bind(row.version)
    .execute(&mut *tx.tx)
    .await
    .map_err(db_error("create the subscription"))?;
    // Users waiting for a licence of this type take one now.
    let mail =
        super::users::grant_waiting(&state, &mut tx, &account_id, row.license_type, now).await?;
    // Users may hold licences of this type already (a subscription deleted and made again).
    let assigned = assigned(&mut tx.tx, &account_id, row.license_type).await?;
    tx.emit(row.event(EventType::SubscriptionCreated, assigned), now);
    let response = tx
        .commit_response(response(StatusCode::CREATED, &row, assigned))
        .await?;
    if mail {
        state.mail_queued();
    }
    Ok(response)
}

async fn find(connection: &mut AnyConnection, id: &str) -> ApiResult<Option<Row_>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM subscriptions WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *connection)
    .await
    .map_err(db_error("read the subscription"))?
    .as_ref()
    .map(Row_::from_row)
    .transpose()
}

async fn authorized(
    connection: &mut AnyConnection,
    principal: &Principal,
    id: &str,
    permission: Permission,
) -> ApiResult<Row_> {
    let row = find(connection, id)
        .await?
        .ok_or_else(|| ApiError::not_found("subscription", id))?;
    authorize_for(
        connection,
        principal,
        &row.account_id,
        permission,
        "subscription",
        id,
    )
    .await?;
    Ok(row)
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListQuery {
    /// Only the subscription with this reference.
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
) -> ApiResult<Json<Page<SubscriptionView>>> {
    let limit = query.page.limit()?;
    let after = query.page.after()?;
    let mut connection = state.connection().await?;
    authorize(
        &mut connection,
        &principal,
        &account_id,
        Permission::SubscriptionsRead,
    )
    .await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS}, (SELECT COUNT(*) FROM service_users u WHERE u.account_id = s.account_id \
         AND u.license_type = s.license_type AND u.license_waiting = 0) AS assigned FROM subscriptions s \
         WHERE account_id = $1 AND id > $2 AND ($3 IS NULL OR external_ref = $3) ORDER BY id LIMIT $4"
    )))
    .bind(&account_id)
    .bind(&after)
    .bind(&query.external_ref)
    .bind(limit + 1)
    .fetch_all(&mut *connection)
    .await
    .map_err(db_error("list subscriptions"))?;
    let views = rows
        .iter()
        .map(|row| Ok(Row_::from_row(row)?.view(row.get("assigned"))))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(Page::new(views, limit, |s: &SubscriptionView| {
        s.id.clone()
    })))
}

pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let mut connection = state.connection().await?;
    let row = authorized(
        &mut connection,
        &principal,
        &id,
        Permission::SubscriptionsRead,
    )
    .await?;
    let assigned = assigned(&mut connection, &row.account_id, row.license_type).await?;
    Ok(response(StatusCode::OK, &row, assigned))
}

/// A new quantity (`If-Match`), refused below what is assigned.
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<UpdateSubscription>,
) -> ApiResult<Response> {
    let expected = if_match(&headers)?;
    let quantity = match body.quantity {
        Patch::Absent => None,
        Patch::Null => {
            return Err(ApiError::invalid(
                "/quantity",
                "quantity cannot be cleared; set 0 to hold no licences",
            ));
        }
        Patch::Value(quantity) => Some(check_quantity(quantity)?),
    };
    let now = state.now();
    let mut tx = state.begin().await?;
    let mut row = authorized(&mut tx.tx, &principal, &id, Permission::SubscriptionsWrite).await?;
    expected.check("subscription", &id, row.version)?;
    let assigned = assigned(&mut tx.tx, &row.account_id, row.license_type).await?;
    let Some(quantity) = quantity.filter(|q| *q != row.quantity) else {
        return Ok(response(StatusCode::OK, &row, assigned));
    };
    if quantity < assigned {
        return Err(ApiError::new(
            ProblemType::LicenseInUse,
            format!(
                "{assigned} {} licences of account {} are assigned, so the quantity cannot drop to {quantity}; remove users first",
                row.license_type, row.account_id
            ),
        )
        .at("/quantity"));
    }
    let read_version = row.version;
    row.quantity = quantity;
    row.version += 1;
    row.updated_at = now;
    sqlx::query(
        "UPDATE subscriptions SET quantity = $1, version = $2, updated_at = $3 WHERE id = $4 AND version = $5",
    )
    .bind(row.quantity)
    .bind(row.version)
    .bind(row.updated_at)
    .bind(&id)
    .bind(read_version)
    .execute(&mut *tx.tx)
    .await
    .map_err(db_error("update the subscription"))?;
    let mail = super::users::grant_waiting(&state, &mut tx, &row.account_id, row.license_type, now)
        .await?;
    // Users waiting for a licence may have taken the new ones.
    let assigned = if row.quantity > assigned {
        self::assigned(&mut tx.tx, &row.account_id, row.license_type).await?
    } else {
        assigned
    };
    tx.emit(row.event(EventType::SubscriptionUpdated, assigned), now);
    tx.commit().await.map_err(db_error("commit"))?;
    if mail {
        state.mail_queued();
    }
    Ok(response(StatusCode::OK, &row, assigned))
}

/// Deletes a subscription no user holds a licence of.
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let now = state.now();
    let mut tx = state.begin().await?;
    let row = authorized(&mut tx.tx, &principal, &id, Permission::SubscriptionsWrite).await?;
    let assigned = assigned(&mut tx.tx, &row.account_id, row.license_type).await?;
    if assigned > 0 {
        return Err(ApiError::new(
            ProblemType::LicenseInUse,
            format!(
                "{assigned} {} licences of this subscription are assigned; remove those users (or move them to another licence type) first",
                row.license_type
            ),
        ));
    }
    sqlx::query("DELETE FROM subscriptions WHERE id = $1")
        .bind(&id)
        .execute(&mut *tx.tx)
        .await
        .map_err(db_error("delete the subscription"))?;
    tx.emit(row.event(EventType::SubscriptionDeleted, 0), now);
    tx.commit().await.map_err(db_error("commit"))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/license-types`: the licence-type catalog.
pub async fn license_types() -> Json<Vec<LicenseTypeView>> {
    Json(
        LicenseType::ALL
            .iter()
            .map(|license| LicenseTypeView {
                name: *license,
                description: license.description().to_owned(),
            })
            .collect(),
    )
}
