//! `GET /v1/accounts/{id}/users/export`: an account's users as an Excel workbook (seed 003:
//! "You can export to Excel format: active users, prepared users, or both").
//!
//! One sheet, a bold frozen header row with a filter, one row per user, columns as wide as their
//! content (within bounds). Values are written as text cells, never as formulas, so a name that
//! starts with `=` stays a name.

use axum::extract::{Path, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use rust_xlsxwriter::{Format, Workbook, XlsxError};
use serde::Deserialize;

use super::AppState;
use super::auth::{Principal, authorize};
use super::json::Params;
use super::problem::{ApiError, ApiResult};
use crate::api::{ExportState, UserState, UserView};
use crate::domain::Permission;

pub const XLSX_MEDIA_TYPE: &str =
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// active, prepared or all (the default).
    #[serde(default)]
    pub state: ExportState,
}

/// How many users the workbook holds (so a client can say so without opening it).
pub const USER_COUNT: axum::http::HeaderName = axum::http::HeaderName::from_static("x-user-count");

/// The sheet's columns: header and how a user fills it.
/// A column: its header and how a user fills it.
type Column = (&'static str, fn(&UserView) -> String);

const COLUMNS: &[Column] = &[
    ("User ID", |u| u.user_id.clone()),
    ("First name", |u| u.first_name.clone()),
    ("Last name", |u| u.last_name.clone()),
    ("State", |u| state_text(u.state).to_owned()),
    ("Licence type", |u| u.license_type.as_str().to_owned()),
    ("Licence", |u| {
        if u.waiting_for_license {
            "Waiting for a licence".to_owned()
        } else {
            "Assigned".to_owned()
        }
    }),
    ("Mobile number", |u| {
        u.mobile_number.clone().unwrap_or_default()
    }),
    ("Landline number", |u| {
        u.landline_number.clone().unwrap_or_default()
    }),
    ("Linked number", |u| {
        u.linked_number.clone().unwrap_or_default()
    }),
    ("Mex", |u| if u.mex { "Yes" } else { "No" }.to_owned()),
    ("Display numbers", |u| u.display_numbers.join(", ")),
    ("Country code", |u| {
        u.country_code.clone().unwrap_or_default()
    }),
    ("Roles", |u| u.roles.join(", ")),
    ("Teams", |u| {
        let teams: Vec<&str> = u.effective.teams.iter().map(|t| t.team.as_str()).collect();
        teams.join(", ")
    }),
    ("Permissions", |u| {
        let permissions: Vec<&str> = u
            .effective
            .permissions
            .iter()
            .map(|p| p.permission.as_str())
            .collect();
        permissions.join(", ")
    }),
    ("Language", |u| u.language.as_str().to_owned()),
    ("Time zone", |u| u.time_zone.clone().unwrap_or_default()),
    ("Provisioned by", |u| u.provisioned_by.as_str().to_owned()),
    ("Invited at", |u| u.invited_at.clone().unwrap_or_default()),
    ("Activated at", |u| {
        u.activated_at.clone().unwrap_or_default()
    }),
    ("Created at", |u| u.created_at.clone()),
];

fn state_text(state: UserState) -> &'static str {
    match state {
        UserState::Prepared => "Prepared",
        UserState::Invited => "Invited",
        UserState::ActivationExpired => "Activation expired",
        UserState::Active => "Active",
        UserState::Disabled => "Disabled",
    }
}

/// The workbook for `users`, in the order given.
pub fn workbook(users: &[UserView]) -> Result<Vec<u8>, XlsxError> {
    const MIN_WIDTH: usize = 8;
    const MAX_WIDTH: usize = 60;
    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet();
    sheet.set_name("Users")?;
    let bold = Format::new().set_bold();
    let mut widths: Vec<usize> = Vec::with_capacity(COLUMNS.len());
    for (column, (header, _)) in COLUMNS.iter().enumerate() {
        sheet.write_string_with_format(0, column as u16, *header, &bold)?;
        widths.push(header.chars().count());
    }
    for (index, user) in users.iter().enumerate() {
        let row = index as u32 + 1;
        for (column, (_, value)) in COLUMNS.iter().enumerate() {
            let text = value(user);
            widths[column] = widths[column].max(text.chars().count());
            if !text.is_empty() {
                sheet.write_string(row, column as u16, &text)?;
            }
        }
    }
    for (column, width) in widths.iter().enumerate() {
        sheet.set_column_width(
            column as u16,
            (width + 2).clamp(MIN_WIDTH, MAX_WIDTH) as f64,
        )?;
    }
    sheet.set_freeze_panes(1, 0)?;
    sheet.autofilter(0, 0, users.len() as u32, COLUMNS.len() as u16 - 1)?;
    workbook.save_to_buffer()
}

/// A file name safe in a Content-Disposition header: the account's name reduced to letters,
/// digits and hyphens.
fn file_name(account: &str, state: ExportState) -> String {
    let mut slug = String::new();
    for c in account.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-');
    let slug = if slug.is_empty() { "account" } else { slug };
    format!("users-{slug}-{}.xlsx", state.as_str())
}

pub async fn export(
    State(state): State<AppState>,
    principal: Principal,
    Path(account_id): Path<String>,
    Params(query): Params<ExportQuery>,
) -> ApiResult<Response> {
    let now = state.now();
    let mut connection = state.connection().await?;
    let access = authorize(
        &mut connection,
        &principal,
        &account_id,
        Permission::ServiceUsersRead,
    )
    .await?;
    let mut users = super::users::all_views(&mut connection, &account_id, now).await?;
    drop(connection);
    users.retain(|user| query.state.includes(user.state));
    let count = users.len().to_string();
    let bytes = tokio::task::spawn_blocking(move || workbook(&users))
        .await
        .map_err(|e| ApiError::internal("build the workbook", e))?
        .map_err(|e| ApiError::internal("build the workbook", e))?;
    let disposition = format!(
        "attachment; filename=\"{}\"",
        file_name(&access.account.display_name, query.state)
    );
    Ok((
        [
            (CONTENT_TYPE, XLSX_MEDIA_TYPE.to_owned()),
            (CONTENT_DISPOSITION, disposition),
            (USER_COUNT, count),
        ],
        bytes,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_keep_letters_digits_and_single_hyphens() {
        assert_eq!(
            file_name("Fabrikam, Inc. (UK)", ExportState::Active),
            "users-fabrikam-inc-uk-active.xlsx"
        );
        assert_eq!(file_name("«»", ExportState::All), "users-account-all.xlsx");
    }

    #[test]
    fn active_means_invited_at_least_once() {
        let table = [
            (UserState::Prepared, false, true),
            (UserState::Invited, true, false),
            (UserState::ActivationExpired, true, false),
            (UserState::Active, true, false),
            (UserState::Disabled, true, false),
        ];
        for (state, active, prepared) in table {
            assert_eq!(ExportState::Active.includes(state), active, "{state:?}");
            assert_eq!(ExportState::Prepared.includes(state), prepared, "{state:?}");
            assert!(ExportState::All.includes(state));
        }
    }
}
