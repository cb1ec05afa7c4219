//! Teams and user roles (seed 003), and the account's service configuration as the domain's
//! effective-permissions function reads it.
//!
//! Both sides of each link may be written: a user lists its teams and a team its members; a role
//! names its team and a team its roles. Each side's rows are kept apart (`listed_by`), so one
//! side never undoes what the other wrote, and the domain function unites them. Deleting a role
//! removes it from every user and ends the memberships that came only from it; the answer and the
//! change feed say which. Teams and roles are service configuration: `service_users.write`
//! changes them, `service_users.read` reads them.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::Digest;
use sqlx::{AnyConnection, Row};

use super::accounts::{IfMatch, if_match};
use super::auth::{Principal, authorize, authorize_for};
use super::json::{JsonBody, PageQuery, Params, check_external_ref, with_etag};
use super::problem::{ApiError, ApiResult, ProblemType};
use super::store::{NewEvent, WriteTx};
use super::{AppState, db_error};
use crate::api::time::format_millis;
use crate::api::{
    AvatarInfo, AvatarUpload, Channel, CreateTeam, CreateUserRole, DeletedUserRole, EventType,
    LostMembership, Page, Patch, TeamMember, TeamView, UpdateTeam, UpdateUserRole, UserRoleView,
};
use crate::domain::{
    Permission, RoleDef, TeamDef, TeamPermission, UserAssignment, UserPermission,
    effective_service_access, memberships_lost,
};

/// The largest avatar accepted (decoded).
pub const MAX_AVATAR_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone)]
struct RoleRow {
    id: String,
    account_id: String,
    name: String,
    permissions: Vec<UserPermission>,
    team_permissions: Vec<TeamPermission>,
    external_ref: Option<String>,
    created_at: i64,
    version: i64,
}

#[derive(Debug, Clone)]
struct TeamRow {
    id: String,
    account_id: String,
    name: String,
    avatar: Option<AvatarInfo>,
    channels: Vec<Channel>,
    disabled: bool,
    external_ref: Option<String>,
    created_at: i64,
    version: i64,
}

fn json_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serializes")
}

fn from_json<T: serde::de::DeserializeOwned>(
    row: &sqlx::any::AnyRow,
    column: &str,
) -> ApiResult<T> {
    serde_json::from_str(&row.get::<String, _>(column))
        .map_err(|e| ApiError::internal("read the service configuration", e))
}

impl RoleRow {
    fn from_row(row: &sqlx::any::AnyRow) -> ApiResult<RoleRow> {
        Ok(RoleRow {
            id: row.get("id"),
            account_id: row.get("account_id"),
            name: row.get("name"),
            permissions: from_json(row, "permissions")?,
            team_permissions: from_json(row, "team_permissions")?,
            external_ref: row.get("external_ref"),
            created_at: row.get("created_at"),
            version: row.get("version"),
        })
    }
}

impl TeamRow {
    fn from_row(row: &sqlx::any::AnyRow) -> ApiResult<TeamRow> {
        let media_type: Option<String> = row.get("avatar_media_type");
        let data: Option<String> = row.get("avatar_data");
        let sha256: Option<String> = row.get("avatar_sha256");
        Ok(TeamRow {
            id: row.get("id"),
            account_id: row.get("account_id"),
            name: row.get("name"),
            avatar: match (media_type, data, sha256) {
                (Some(media_type), Some(data), Some(sha256)) => Some(AvatarInfo {
                    media_type,
                    bytes: (data.len() * 3 / 4) as i64,
                    sha256,
                }),
                _ => None,
            },
            channels: from_json(row, "channels")?,
            disabled: row.get::<i64, _>("disabled") != 0,
            external_ref: row.get("external_ref"),
            created_at: row.get("created_at"),
            version: row.get("version"),
        })
    }
}

const ROLE_COLUMNS: &str =
    "id, account_id, name, permissions, team_permissions, external_ref, created_at, version";
const TEAM_COLUMNS: &str = "id, account_id, name, avatar_media_type, avatar_data, avatar_sha256, channels, disabled, \
                            external_ref, created_at, version";

/// An account's user roles and teams with every link between them and its users.
#[derive(Debug, Default)]
pub(super) struct AccountService {
    roles: Vec<RoleRow>,
    teams: Vec<TeamRow>,
    /// (team id, role id, listed by)
    team_roles: Vec<(String, String, String)>,
    /// (team id, user portal id, listed by)
    team_members: Vec<(String, String, String)>,
    /// (role id, user portal id)
    holders: Vec<(String, String)>,
    /// user portal id → user ID
    user_ids: HashMap<String, String>,
    /// canonical login → user portal id
    logins: HashMap<String, String>,
    /// The roles and teams as the domain reads them, built once per load (every user's view
    /// and every team's members are computed from them).
    role_defs: Vec<RoleDef>,
    team_defs: Vec<TeamDef>,
}

impl AccountService {
    pub async fn load(connection: &mut AnyConnection, account: &str) -> ApiResult<AccountService> {
        let fail = db_error("read the service configuration");
        let roles = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ROLE_COLUMNS} FROM user_roles WHERE account_id = $1 ORDER BY name_canonical"
        )))
        .bind(account)
        .fetch_all(&mut *connection)
        .await
        .map_err(&fail)?
        .iter()
        .map(RoleRow::from_row)
        .collect::<ApiResult<Vec<_>>>()?;
        let teams = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TEAM_COLUMNS} FROM teams WHERE account_id = $1 ORDER BY name_canonical"
        )))
        .bind(account)
        .fetch_all(&mut *connection)
        .await
        .map_err(&fail)?
        .iter()
        .map(TeamRow::from_row)
        .collect::<ApiResult<Vec<_>>>()?;
        let pairs = |rows: Vec<sqlx::any::AnyRow>| -> Vec<(String, String, String)> {
            rows.iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect()
        };
        let team_roles = pairs(
            sqlx::query(
                "SELECT tr.team_id, tr.role_id, tr.listed_by FROM team_roles tr JOIN teams t ON t.id = tr.team_id \
                 WHERE t.account_id = $1",
            )
            .bind(account)
            .fetch_all(&mut *connection)
            .await
            .map_err(&fail)?,
        );
        let team_members = pairs(
            sqlx::query(
                "SELECT tm.team_id, tm.user_id, tm.listed_by FROM team_members tm JOIN teams t ON t.id = tm.team_id \
                 WHERE t.account_id = $1",
            )
            .bind(account)
            .fetch_all(&mut *connection)
            .await
            .map_err(&fail)?,
        );
        let holders = sqlx::query(
            "SELECT h.role_id, h.user_id FROM user_role_holders h JOIN user_roles r ON r.id = h.role_id \
             WHERE r.account_id = $1",
        )
        .bind(account)
        .fetch_all(&mut *connection)
        .await
        .map_err(&fail)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
        let user_ids = sqlx::query("SELECT id, user_id FROM service_users WHERE account_id = $1")
            .bind(account)
            .fetch_all(&mut *connection)
            .await
            .map_err(&fail)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let mut service = AccountService {
            roles,
            teams,
            team_roles,
            team_members,
            holders,
            user_ids,
            ..AccountService::default()
        };
        service.logins = service
            .user_ids
            .iter()
            .filter_map(|(id, user_id)| {
                crate::domain::UserId::parse(user_id)
                    .ok()
                    .map(|login| (login.canonical(), id.clone()))
            })
            .collect();
        service.role_defs = service.build_role_defs();
        service.team_defs = service.build_team_defs();
        Ok(service)
    }

    fn role_name(&self, id: &str) -> Option<&str> {
        self.roles
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.name.as_str())
    }

    fn team_name(&self, id: &str) -> Option<&str> {
        self.teams
            .iter()
            .find(|t| t.id == id)
            .map(|t| t.name.as_str())
    }

    /// The team a role names (the role's side of the link).
    fn team_of_role(&self, role: &str) -> Option<&str> {
        self.team_roles
            .iter()
            .find(|(_, r, by)| r == role && by == "role")
            .and_then(|(team, _, _)| self.team_name(team))
    }

    fn build_role_defs(&self) -> Vec<RoleDef> {
        self.roles
            .iter()
            .map(|role| RoleDef {
                name: role.name.clone(),
                permissions: role.permissions.clone(),
                team: self.team_of_role(&role.id).map(str::to_owned),
                team_permissions: role.team_permissions.clone(),
            })
            .collect()
    }

    fn build_team_defs(&self) -> Vec<TeamDef> {
        self.teams
            .iter()
            .map(|team| TeamDef {
                name: team.name.clone(),
                roles: self
                    .team_roles
                    .iter()
                    .filter(|(t, _, by)| *t == team.id && by == "team")
                    .filter_map(|(_, role, _)| self.role_name(role).map(str::to_owned))
                    .collect(),
                members: self
                    .team_members
                    .iter()
                    .filter(|(t, _, by)| *t == team.id && by == "team")
                    .filter_map(|(_, user, _)| self.user_ids.get(user).cloned())
                    .collect(),
                disabled: team.disabled,
            })
            .collect()
    }

    /// The role names a user holds and the team names it lists, for its view.
    pub fn listed_by_user(&self, user: &str) -> (Vec<String>, Vec<String>) {
        let roles = self
            .holders
            .iter()
            .filter(|(_, u)| u == user)
            .filter_map(|(role, _)| self.role_name(role).map(str::to_owned))
            .collect();
        let teams = self
            .team_members
            .iter()
            .filter(|(_, u, by)| u == user && by == "user")
            .filter_map(|(team, _, _)| self.team_name(team).map(str::to_owned))
            .collect();
        (roles, teams)
    }

    fn assignment(&self, user: &str, permissions: &[UserPermission]) -> UserAssignment {
        let (roles, teams) = self.listed_by_user(user);
        UserAssignment {
            user_id: self.user_ids.get(user).cloned().unwrap_or_default(),
            roles,
            teams,
            permissions: permissions.to_vec(),
        }
    }

    /// What a user may do and which teams it is in, with origins.
    pub fn effective(
        &self,
        user: &str,
        permissions: &[UserPermission],
    ) -> crate::domain::EffectiveService {
        effective_service_access(
            &self.assignment(user, permissions),
            &self.role_defs,
            &self.team_defs,
        )
    }

    /// The role ids for `names` (case-insensitive), or 422 naming the first unknown one.
    pub fn role_ids(&self, names: &[String], field: &str) -> ApiResult<Vec<String>> {
        resolve(
            names,
            field,
            "user role",
            self.roles.iter().map(|r| (&r.id, &r.name)),
        )
    }

    /// The team ids for `names` (case-insensitive), or 422 naming the first unknown one.
    pub fn team_ids(&self, names: &[String], field: &str) -> ApiResult<Vec<String>> {
        resolve(
            names,
            field,
            "team",
            self.teams.iter().map(|t| (&t.id, &t.name)),
        )
    }

    /// The user portal ids for `user_ids` (as users' logins), or 422 naming the first unknown.
    fn user_ids_of(&self, logins: &[String], field: &str) -> ApiResult<Vec<String>> {
        let mut ids = Vec::with_capacity(logins.len());
        for (index, login) in logins.iter().enumerate() {
            let canonical = crate::domain::UserId::parse(login)
                .map(|id| id.canonical())
                .map_err(|e| ApiError::from(e).at(&format!("{field}/{index}")))?;
            match self.logins.get(&canonical) {
                Some(id) => ids.push(id.clone()),
                None => {
                    return Err(ApiError::new(
                        ProblemType::UnknownReference,
                        format!("the account has no user {login:?}"),
                    )
                    .at(&format!("{field}/{index}")));
                }
            }
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// Every user's assignment, for what a change takes away.
    fn assignments(&self) -> Vec<(String, UserAssignment)> {
        self.user_ids
            .iter()
            .map(|(id, user_id)| (user_id.clone(), self.assignment(id, &[])))
            .collect()
    }
}

fn resolve<'a>(
    names: &[String],
    field: &str,
    what: &str,
    known: impl Iterator<Item = (&'a String, &'a String)> + Clone,
) -> ApiResult<Vec<String>> {
    let mut ids = Vec::with_capacity(names.len());
    for (index, name) in names.iter().enumerate() {
        let wanted = name.trim().to_lowercase();
        match known.clone().find(|(_, n)| n.to_lowercase() == wanted) {
            Some((id, _)) => ids.push(id.clone()),
            None => {
                let names: Vec<&str> = known.clone().map(|(_, n)| n.as_str()).collect();
                let offered = if names.is_empty() {
                    format!("the account has no {what}s yet")
                } else {
                    format!("the account has {}", names.join(", "))
                };
                return Err(ApiError::new(
                    ProblemType::UnknownReference,
                    format!("no {what} {name:?}: {offered}"),
                )
                .at(&format!("{field}/{index}")));
            }
        }
    }
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// Replaces the rows one side wrote for one object: `DELETE` then one `INSERT` per value.
async fn replace_links(
    tx: &mut WriteTx,
    delete: &'static str,
    insert: &'static str,
    owner: &str,
    values: &[String],
) -> ApiResult<()> {
    let fail = db_error("write the links");
    sqlx::query(delete)
        .bind(owner)
        .execute(&mut *tx.tx)
        .await
        .map_err(&fail)?;
    for value in values {
        sqlx::query(insert)
            .bind(owner)
            .bind(value)
            .execute(&mut *tx.tx)
            .await
            .map_err(&fail)?;
    }
    Ok(())
}

/// A user's roles and listed teams, as the user's side writes them.
pub(super) async fn write_user_links(
    tx: &mut WriteTx,
    user: &str,
    roles: Option<&[String]>,
    teams: Option<&[String]>,
) -> ApiResult<()> {
    if let Some(roles) = roles {
        replace_links(
            tx,
            "DELETE FROM user_role_holders WHERE user_id = $1",
            "INSERT INTO user_role_holders (user_id, role_id) VALUES ($1, $2)",
            user,
            roles,
        )
        .await?;
    }
    if let Some(teams) = teams {
        replace_links(
            tx,
            "DELETE FROM team_members WHERE user_id = $1 AND listed_by = 'user'",
            "INSERT INTO team_members (user_id, team_id, listed_by) VALUES ($1, $2, 'user')",
            user,
            teams,
        )
        .await?;
    }
    Ok(())
}

/// Everything that names a user, before it is deleted.
pub(super) async fn forget_user(tx: &mut WriteTx, user: &str) -> ApiResult<()> {
    for statement in [
        "DELETE FROM user_role_holders WHERE user_id = $1",
        "DELETE FROM team_members WHERE user_id = $1",
    ] {
        sqlx::query(statement)
            .bind(user)
            .execute(&mut *tx.tx)
            .await
            .map_err(db_error("delete the user's memberships"))?;
    }
    Ok(())
}

fn check_name(field: &str, name: &str) -> ApiResult<String> {
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed.chars().count() > 100 || trimmed.chars().any(char::is_control)
    {
        return Err(ApiError::invalid(
            &format!("/{field}"),
            format!("{field} must hold 1 to 100 printable characters"),
        ));
    }
    Ok(trimmed.to_owned())
}

fn name_taken(what: &str, name: &str) -> ApiError {
    ApiError::new(
        ProblemType::NameConflict,
        format!("the account already has a {what} named {name:?}; names are unique per account"),
    )
    .at("/name")
}

// --- User roles ------------------------------------------------------------------------------

impl AccountService {
    fn role_view(&self, role: &RoleRow) -> UserRoleView {
        let mut holders: Vec<String> = self
            .holders
            .iter()
            .filter(|(r, _)| *r == role.id)
            .filter_map(|(_, user)| self.user_ids.get(user).cloned())
            .collect();
        holders.sort();
        UserRoleView {
            id: role.id.clone(),
            account_id: role.account_id.clone(),
            name: role.name.clone(),
            permissions: role.permissions.clone(),
            team: self.team_of_role(&role.id).map(str::to_owned),
            team_permissions: role.team_permissions.clone(),
            holders,
            external_ref: role.external_ref.clone(),
            created_at: format_millis(role.created_at),
            version: role.version,
        }
    }

    fn team_view(&self, team: &TeamRow) -> TeamView {
        let listed = |by: &str| -> Vec<String> {
            let mut ids: Vec<String> = self
                .team_members
                .iter()
                .filter(|(t, _, b)| *t == team.id && b == by)
                .filter_map(|(_, user, _)| self.user_ids.get(user).cloned())
                .collect();
            ids.sort();
            ids
        };
        let mut effective_members: Vec<TeamMember> = self
            .user_ids
            .keys()
            .filter_map(|user| {
                let effective = effective_service_access(
                    &self.assignment(user, &[]),
                    &self.role_defs,
                    &self.team_defs,
                );
                effective.team(&team.name).map(|m| TeamMember {
                    user_id: self.user_ids[user].clone(),
                    origins: m.origins.clone(),
                })
            })
            .collect();
        effective_members.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        TeamView {
            id: team.id.clone(),
            account_id: team.account_id.clone(),
            name: team.name.clone(),
            avatar: team.avatar.clone(),
            channels: team.channels.clone(),
            disabled: team.disabled,
            members: listed("team"),
            roles: self
                .team_roles
                .iter()
                .filter(|(t, _, by)| *t == team.id && by == "team")
                .filter_map(|(_, role, _)| self.role_name(role).map(str::to_owned))
                .collect(),
            effective_members,
            external_ref: team.external_ref.clone(),
            created_at: format_millis(team.created_at),
            version: team.version,
        }
    }
}

fn check_team_permissions(
    team: &Option<String>,
    team_permissions: &[TeamPermission],
) -> ApiResult<()> {
    if team.is_none() && !team_permissions.is_empty() {
        return Err(ApiError::invalid(
            "/teamPermissions",
            "team permissions apply in the role's team: set team too",
        ));
    }
    Ok(())
}

fn sorted<T: Ord + Clone>(values: &[T]) -> Vec<T> {
    let mut values = values.to_vec();
    values.sort();
    values.dedup();
    values
}

fn role_event<'a>(
    event_type: EventType,
    role: &'a RoleRow,
    data: serde_json::Value,
) -> NewEvent<'a> {
    NewEvent {
        event_type,
        object_kind: "UserRole",
        object_id: &role.id,
        account_id: Some(&role.account_id),
        external_ref: role.external_ref.as_deref(),
        data,
    }
}

/// Which memberships go when the account's service configuration changes from `before` to
/// what `after` yields.
fn lost(before: &AccountService, after: &AccountService) -> Vec<LostMembership> {
    memberships_lost(
        &before.assignments(),
        (&before.role_defs, &before.team_defs),
        (&after.role_defs, &after.team_defs),
    )
    .into_iter()
    .map(|l| LostMembership {
        user_id: l.user,
        team: l.team,
    })
    .collect()
}

pub async fn create_role(
    State(state): State<AppState>,
    principal: Principal,
    Path(account_id): Path<String>,
    JsonBody(body): JsonBody<CreateUserRole>,
) -> ApiResult<Response> {
    let name = check_name("name", &body.name)?;
    check_team_permissions(&body.team, &body.team_permissions)?;
    check_external_ref(body.external_ref.as_deref())?;
    let now = state.now();
    let mut tx = state.begin().await?;
    authorize(
        &mut tx.tx,
        &principal,
        &account_id,
        Permission::ServiceUsersWrite,
    )
    .await?;
    let service = AccountService::load(&mut tx.tx, &account_id).await?;
    if service
        .roles
        .iter()
        .any(|r| r.name.to_lowercase() == name.to_lowercase())
    {
        return Err(name_taken("user role", &name));
    }
    let team = match &body.team {
        Some(team) => service.team_ids(std::slice::from_ref(team), "/team")?.pop(),
        None => None,
    };
    let role = RoleRow {
        id: uuid::Uuid::now_v7().to_string(),
        account_id: account_id.clone(),
        name,
        permissions: sorted(&body.permissions),
        team_permissions: sorted(&body.team_permissions),
        external_ref: body.external_ref.clone(),
        created_at: now,
        version: 1,
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO user_roles ({ROLE_COLUMNS}, name_canonical) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    )))
    .bind(&role.id)
    .bind(&role.account_id)
    .bind(&role.name)
    .bind(json_text(&role.permissions))
    .bind(json_text(&role.team_permissions))
    .bind(&role.external_ref)
    .bind(role.created_at)
    .bind(role.version)
    .bind(role.name.to_lowercase())
    .execute(&mut *tx.tx)
    .await
    .map_err(db_error("create the user role"))?;
    if let Some(team) = &team {
        sqlx::query("INSERT INTO team_roles (team_id, role_id, listed_by) VALUES ($1, $2, 'role')")
            .bind(team)
            .bind(&role.id)
            .execute(&mut *tx.tx)
            .await
            .map_err(db_error("link the role's team"))?;
    }
    let service = AccountService::load(&mut tx.tx, &account_id).await?;
    tx.emit(
        role_event(
            EventType::UserRoleCreated,
            &role,
            serde_json::json!({ "name": role.name }),
        ),
        now,
    );
    let view = service.role_view(&role);
    tx.commit_response(with_etag(StatusCode::CREATED, role.version, view))
        .await
}

async fn find_role(connection: &mut AnyConnection, id: &str) -> ApiResult<RoleRow> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ROLE_COLUMNS} FROM user_roles WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *connection)
    .await
    .map_err(db_error("read the user role"))?
    .as_ref()
    .map(RoleRow::from_row)
    .transpose()?
    .ok_or_else(|| ApiError::not_found("user role", id))
}

async fn authorized_role(
    connection: &mut AnyConnection,
    principal: &Principal,
    id: &str,
    permission: Permission,
) -> ApiResult<RoleRow> {
    let role = find_role(connection, id).await?;
    authorize_for(
        connection,
        principal,
        &role.account_id,
        permission,
        "user role",
        id,
    )
    .await?;
    Ok(role)
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListQuery {
    /// Only the object with this reference.
    #[serde(default)]
    pub external_ref: Option<String>,
    #[serde(flatten)]
    pub page: PageQuery,
}

/// One page of `items` (sorted by id) after the cursor, filtered by reference.
fn page_of<T, F: Fn(&T) -> (&str, Option<&str>)>(
    mut items: Vec<T>,
    query: &ListQuery,
    key: F,
) -> ApiResult<Page<T>> {
    let limit = query.page.limit()?;
    let after = query.page.after()?;
    items.retain(|item| {
        let (id, reference) = key(item);
        id > after.as_str()
            && query
                .external_ref
                .as_deref()
                .is_none_or(|wanted| reference == Some(wanted))
    });
    items.sort_by(|a, b| key(a).0.cmp(key(b).0));
    items.truncate(limit as usize + 1);
    Ok(Page::new(items, limit, |item| key(item).0.to_owned()))
}

pub async fn list_roles(
    State(state): State<AppState>,
    principal: Principal,
    Path(account_id): Path<String>,
    Params(query): Params<ListQuery>,
) -> ApiResult<Json<Page<UserRoleView>>> {
    let mut connection = state.connection().await?;
    authorize(
        &mut connection,
        &principal,
        &account_id,
        Permission::ServiceUsersRead,
    )
    .await?;
    let service = AccountService::load(&mut connection, &account_id).await?;
    let views = service.roles.iter().map(|r| service.role_view(r)).collect();
    Ok(Json(page_of(views, &query, |r: &UserRoleView| {
        (r.id.as_str(), r.external_ref.as_deref())
    })?))
}

pub async fn get_role(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let mut connection = state.connection().await?;
    let role = authorized_role(
        &mut connection,
        &principal,
        &id,
        Permission::ServiceUsersRead,
    )
    .await?;
    let service = AccountService::load(&mut connection, &role.account_id).await?;
    Ok(with_etag(
        StatusCode::OK,
        role.version,
        service.role_view(&role),
    ))
}

pub async fn update_role(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<UpdateUserRole>,
) -> ApiResult<Response> {
    let expected = if_match(&headers)?;
    let now = state.now();
    let mut tx = state.begin().await?;
    let mut role =
        authorized_role(&mut tx.tx, &principal, &id, Permission::ServiceUsersWrite).await?;
    expected.check("user role", &id, role.version)?;
    let before = AccountService::load(&mut tx.tx, &role.account_id).await?;
    let current_team = before.team_of_role(&role.id).map(str::to_owned);
    let team = match &body.team {
        Patch::Absent => current_team.clone(),
        Patch::Null => None,
        Patch::Value(team) => Some(team.clone()),
    };
    let team_permissions = body
        .team_permissions
        .clone()
        .unwrap_or_else(|| role.team_permissions.clone());
    check_team_permissions(&team, &team_permissions)?;
    let name = match &body.name {
        Some(name) => check_name("name", name)?,
        None => role.name.clone(),
    };
    if name.to_lowercase() != role.name.to_lowercase()
        && before
            .roles
            .iter()
            .any(|r| r.name.to_lowercase() == name.to_lowercase())
    {
        return Err(name_taken("user role", &name));
    }
    let team_ids = before.team_ids(&team.iter().cloned().collect::<Vec<_>>(), "/team")?;
    let changed = RoleRow {
        name,
        permissions: body
            .permissions
            .as_deref()
            .map(sorted)
            .unwrap_or_else(|| role.permissions.clone()),
        team_permissions: sorted(&team_permissions),
        ..role.clone()
    };
    let same_team =
        team.as_deref().map(str::to_lowercase) == current_team.as_deref().map(str::to_lowercase);
    if changed.name == role.name
        && changed.permissions == role.permissions
        && changed.team_permissions == role.team_permissions
        && same_team
    {
        return Ok(with_etag(
            StatusCode::OK,
            role.version,
            before.role_view(&role),
        ));
    }
    let read_version = role.version;
    role = RoleRow {
        version: role.version + 1,
        ..changed
    };
    sqlx::query(
        "UPDATE user_roles SET name = $1, name_canonical = $2, permissions = $3, team_permissions = $4, version = $5 \
         WHERE id = $6 AND version = $7",
    )
    .bind(&role.name)
    .bind(role.name.to_lowercase())
    .bind(json_text(&role.permissions))
    .bind(json_text(&role.team_permissions))
    .bind(role.version)
    .bind(&role.id)
    .bind(read_version)
    .execute(&mut *tx.tx)
    .await
    .map_err(db_error("update the user role"))?;
    replace_links(
        &mut tx,
        "DELETE FROM team_roles WHERE role_id = $1 AND listed_by = 'role'",
        "INSERT INTO team_roles (role_id, team_id, listed_by) VALUES ($1, $2, 'role')",
        &role.id,
        &team_ids,
    )
    .await?;
    let after = AccountService::load(&mut tx.tx, &role.account_id).await?;
    let lost = lost(&before, &after);
    tx.emit(
        role_event(
            EventType::UserRoleUpdated,
            &role,
            serde_json::json!({ "name": role.name, "lostMemberships": lost }),
        ),
        now,
    );
    tx.commit().await.map_err(db_error("commit"))?;
    Ok(with_etag(
        StatusCode::OK,
        role.version,
        after.role_view(&role),
    ))
}

/// Deletes a role: removed from every user, with the team memberships that came only from it.
pub async fn delete_role(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<DeletedUserRole>> {
    let now = state.now();
    let mut tx = state.begin().await?;
    let role = authorized_role(&mut tx.tx, &principal, &id, Permission::ServiceUsersWrite).await?;
    let before = AccountService::load(&mut tx.tx, &role.account_id).await?;
    let mut removed_from: Vec<String> = before
        .holders
        .iter()
        .filter(|(r, _)| *r == role.id)
        .filter_map(|(_, user)| before.user_ids.get(user).cloned())
        .collect();
    removed_from.sort();
    for statement in [
        "DELETE FROM user_role_holders WHERE role_id = $1",
        "DELETE FROM team_roles WHERE role_id = $1",
        "DELETE FROM user_roles WHERE id = $1",
    ] {
        sqlx::query(statement)
            .bind(&id)
            .execute(&mut *tx.tx)
            .await
            .map_err(db_error("delete the user role"))?;
    }
    let after = AccountService::load(&mut tx.tx, &role.account_id).await?;
    let deleted = DeletedUserRole {
        removed_from,
        lost_memberships: lost(&before, &after),
    };
    tx.emit(
        role_event(
            EventType::UserRoleDeleted,
            &role,
            serde_json::to_value(&deleted).expect("serializes"),
        ),
        now,
    );
    tx.commit().await.map_err(db_error("commit"))?;
    Ok(Json(deleted))
}

// --- Teams -----------------------------------------------------------------------------------

/// A checked avatar: its media type, base64 data and SHA-256.
fn check_avatar(avatar: &AvatarUpload) -> ApiResult<(String, String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(avatar.data.trim())
        .map_err(|_| {
            ApiError::invalid("/avatar/data", "avatar.data must be the image in base64")
        })?;
    if bytes.len() > MAX_AVATAR_BYTES {
        return Err(ApiError::invalid(
            "/avatar/data",
            format!(
                "the avatar is {} bytes; at most {MAX_AVATAR_BYTES} (256 KiB) are accepted",
                bytes.len()
            ),
        ));
    }
    let png = bytes.starts_with(b"\x89PNG\r\n\x1a\n");
    let jpeg = bytes.starts_with(&[0xFF, 0xD8, 0xFF]);
    let matches = match avatar.media_type.as_str() {
        "image/png" => png,
        "image/jpeg" => jpeg,
        other => {
            return Err(ApiError::invalid(
                "/avatar/mediaType",
                format!("{other:?} is not accepted; an avatar is image/png or image/jpeg"),
            ));
        }
    };
    if !matches {
        return Err(ApiError::invalid(
            "/avatar/data",
            format!("the data is not a {} image", avatar.media_type),
        ));
    }
    let sha256 = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((
        avatar.media_type.clone(),
        base64::engine::general_purpose::STANDARD.encode(&bytes),
        sha256,
    ))
}

fn check_channels(channels: &[Channel]) -> ApiResult<Vec<Channel>> {
    let mut seen = std::collections::BTreeSet::new();
    let mut checked = Vec::with_capacity(channels.len());
    for (index, channel) in channels.iter().enumerate() {
        let name = check_name("channels", &channel.name)
            .map_err(|e| e.at(&format!("/channels/{index}/name")))?;
        if !seen.insert(name.to_lowercase()) {
            return Err(ApiError::invalid(
                &format!("/channels/{index}/name"),
                format!("the team has two channels named {name:?}"),
            ));
        }
        checked.push(Channel {
            name,
            visibility: channel.visibility,
        });
    }
    Ok(checked)
}

fn team_event(event_type: EventType, team: &TeamRow) -> NewEvent<'_> {
    NewEvent {
        event_type,
        object_kind: "Team",
        object_id: &team.id,
        account_id: Some(&team.account_id),
        external_ref: team.external_ref.as_deref(),
        data: serde_json::json!({ "name": team.name }),
    }
}

/// Writes a team's own lists (its members and roles).
async fn write_team_links(
    tx: &mut WriteTx,
    team: &str,
    members: Option<&[String]>,
    roles: Option<&[String]>,
) -> ApiResult<()> {
    if let Some(members) = members {
        replace_links(
            tx,
            "DELETE FROM team_members WHERE team_id = $1 AND listed_by = 'team'",
            "INSERT INTO team_members (team_id, user_id, listed_by) VALUES ($1, $2, 'team')",
            team,
            members,
        )
        .await?;
    }
    if let Some(roles) = roles {
        replace_links(
            tx,
            "DELETE FROM team_roles WHERE team_id = $1 AND listed_by = 'team'",
            "INSERT INTO team_roles (team_id, role_id, listed_by) VALUES ($1, $2, 'team')",
            team,
            roles,
        )
        .await?;
    }
    Ok(())
}

pub async fn create_team(
    State(state): State<AppState>,
    principal: Principal,
    Path(account_id): Path<String>,
    JsonBody(body): JsonBody<CreateTeam>,
) -> ApiResult<Response> {
    let name = check_name("name", &body.name)?;
    let channels = check_channels(&body.channels)?;
    let avatar = body.avatar.as_ref().map(check_avatar).transpose()?;
    check_external_ref(body.external_ref.as_deref())?;
    let now = state.now();
    let mut tx = state.begin().await?;
    authorize(
        &mut tx.tx,
        &principal,
        &account_id,
        Permission::ServiceUsersWrite,
    )
    .await?;
    let service = AccountService::load(&mut tx.tx, &account_id).await?;
    if service
        .teams
        .iter()
        .any(|t| t.name.to_lowercase() == name.to_lowercase())
    {
        return Err(name_taken("team", &name));
    }
    let members = service.user_ids_of(&body.members, "/members")?;
    let roles = service.role_ids(&body.roles, "/roles")?;
    let team = TeamRow {
        id: uuid::Uuid::now_v7().to_string(),
        account_id: account_id.clone(),
        name,
        avatar: None,
        channels,
        disabled: body.disabled,
        external_ref: body.external_ref.clone(),
        created_at: now,
        version: 1,
    };
    let (media_type, data, sha256) = match avatar {
        Some((m, d, s)) => (Some(m), Some(d), Some(s)),
        None => (None, None, None),
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO teams ({TEAM_COLUMNS}, name_canonical) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    )))
    .bind(&team.id)
    .bind(&team.account_id)
    .bind(&team.name)
    .bind(&media_type)
    .bind(&data)
    .bind(&sha256)
    .bind(json_text(&team.channels))
    .bind(i64::from(team.disabled))
    .bind(&team.external_ref)
    .bind(team.created_at)
    .bind(team.version)
    .bind(team.name.to_lowercase())
    .execute(&mut *tx.tx)
    .await
    .map_err(db_error("create the team"))?;
    write_team_links(&mut tx, &team.id, Some(&members), Some(&roles)).await?;
    let service = AccountService::load(&mut tx.tx, &account_id).await?;
    let team = service
        .teams
        .iter()
        .find(|t| t.id == team.id)
        .cloned()
        .expect("just written");
    tx.emit(team_event(EventType::TeamCreated, &team), now);
    let view = service.team_view(&team);
    tx.commit_response(with_etag(StatusCode::CREATED, team.version, view))
        .await
}

async fn authorized_team(
    connection: &mut AnyConnection,
    principal: &Principal,
    id: &str,
    permission: Permission,
) -> ApiResult<TeamRow> {
    let team = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {TEAM_COLUMNS} FROM teams WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *connection)
    .await
    .map_err(db_error("read the team"))?
    .as_ref()
    .map(TeamRow::from_row)
    .transpose()?
    .ok_or_else(|| ApiError::not_found("team", id))?;
    authorize_for(
        connection,
        principal,
        &team.account_id,
        permission,
        "team",
        id,
    )
    .await?;
    Ok(team)
}

pub async fn list_teams(
    State(state): State<AppState>,
    principal: Principal,
    Path(account_id): Path<String>,
    Params(query): Params<ListQuery>,
) -> ApiResult<Json<Page<TeamView>>> {
    let mut connection = state.connection().await?;
    authorize(
        &mut connection,
        &principal,
        &account_id,
        Permission::ServiceUsersRead,
    )
    .await?;
    let service = AccountService::load(&mut connection, &account_id).await?;
    let views = service.teams.iter().map(|t| service.team_view(t)).collect();
    Ok(Json(page_of(views, &query, |t: &TeamView| {
        (t.id.as_str(), t.external_ref.as_deref())
    })?))
}

pub async fn get_team(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let mut connection = state.connection().await?;
    let team = authorized_team(
        &mut connection,
        &principal,
        &id,
        Permission::ServiceUsersRead,
    )
    .await?;
    let service = AccountService::load(&mut connection, &team.account_id).await?;
    Ok(with_etag(
        StatusCode::OK,
        team.version,
        service.team_view(&team),
    ))
}

/// `GET /v1/teams/{id}/avatar`: the image itself.
pub async fn get_avatar(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let mut connection = state.connection().await?;
    authorized_team(
        &mut connection,
        &principal,
        &id,
        Permission::ServiceUsersRead,
    )
    .await?;
    let row = sqlx::query("SELECT avatar_media_type, avatar_data FROM teams WHERE id = $1")
        .bind(&id)
        .fetch_one(&mut *connection)
        .await
        .map_err(db_error("read the avatar"))?;
    let (Some(media_type), Some(data)) = (
        row.get::<Option<String>, _>(0),
        row.get::<Option<String>, _>(1),
    ) else {
        return Err(ApiError::not_found("avatar of team", &id));
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| ApiError::internal("read the avatar", e))?;
    Ok(([(header::CONTENT_TYPE, media_type)], bytes).into_response())
}

pub async fn update_team(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<UpdateTeam>,
) -> ApiResult<Response> {
    let expected = if_match(&headers)?;
    let now = state.now();
    let mut tx = state.begin().await?;
    let team = authorized_team(&mut tx.tx, &principal, &id, Permission::ServiceUsersWrite).await?;
    expected.check("team", &id, team.version)?;
    let service = AccountService::load(&mut tx.tx, &team.account_id).await?;
    let name = match &body.name {
        Some(name) => check_name("name", name)?,
        None => team.name.clone(),
    };
    if name.to_lowercase() != team.name.to_lowercase()
        && service
            .teams
            .iter()
            .any(|t| t.name.to_lowercase() == name.to_lowercase())
    {
        return Err(name_taken("team", &name));
    }
    let channels = body.channels.as_deref().map(check_channels).transpose()?;
    let members = body
        .members
        .as_deref()
        .map(|m| service.user_ids_of(m, "/members"))
        .transpose()?;
    let roles = body
        .roles
        .as_deref()
        .map(|r| service.role_ids(r, "/roles"))
        .transpose()?;
    let avatar = match &body.avatar {
        Patch::Absent => None,
        Patch::Null => Some(None),
        Patch::Value(avatar) => Some(Some(check_avatar(avatar)?)),
    };
    let current = service.team_view(&team);
    let member_ids_now: Vec<String> = {
        let mut ids: Vec<String> = service
            .team_members
            .iter()
            .filter(|(t, _, by)| *t == team.id && by == "team")
            .map(|(_, user, _)| user.clone())
            .collect();
        ids.sort();
        ids
    };
    let role_ids_now: Vec<String> = {
        let mut ids: Vec<String> = service
            .team_roles
            .iter()
            .filter(|(t, _, by)| *t == team.id && by == "team")
            .map(|(_, role, _)| role.clone())
            .collect();
        ids.sort();
        ids
    };
    let unchanged = name == team.name
        && channels.as_ref().is_none_or(|c| *c == team.channels)
        && body.disabled.is_none_or(|d| d == team.disabled)
        && members.as_ref().is_none_or(|m| *m == member_ids_now)
        && roles.as_ref().is_none_or(|r| *r == role_ids_now)
        && match &avatar {
            None => true,
            Some(None) => team.avatar.is_none(),
            Some(Some((_, _, sha256))) => team.avatar.as_ref().is_some_and(|a| &a.sha256 == sha256),
        };
    if unchanged {
        return Ok(with_etag(StatusCode::OK, team.version, current));
    }
    let read_version = team.version;
    let version = team.version + 1;
    sqlx::query(
        "UPDATE teams SET name = $1, name_canonical = $2, channels = $3, disabled = $4, version = $5 WHERE id = $6 AND version = $7",
    )
    .bind(&name)
    .bind(name.to_lowercase())
    .bind(json_text(channels.as_ref().unwrap_or(&team.channels)))
    .bind(i64::from(body.disabled.unwrap_or(team.disabled)))
    .bind(version)
    .bind(&id)
    .bind(read_version)
    .execute(&mut *tx.tx)
    .await
    .map_err(db_error("update the team"))?;
    if let Some(avatar) = avatar {
        let (media_type, data, sha256) = match avatar {
            Some((m, d, s)) => (Some(m), Some(d), Some(s)),
            None => (None, None, None),
        };
        sqlx::query("UPDATE teams SET avatar_media_type = $1, avatar_data = $2, avatar_sha256 = $3 WHERE id = $4")
            .bind(media_type)
            .bind(data)
            .bind(sha256)
            .bind(&id)
            .execute(&mut *tx.tx)
            .await
            .map_err(db_error("update the avatar"))?;
    }
    write_team_links(&mut tx, &id, members.as_deref(), roles.as_deref()).await?;
    let after = AccountService::load(&mut tx.tx, &team.account_id).await?;
    let updated = after
        .teams
        .iter()
        .find(|t| t.id == id)
        .cloned()
        .expect("just written");
    tx.emit(team_event(EventType::TeamUpdated, &updated), now);
    tx.commit().await.map_err(db_error("commit"))?;
    Ok(with_etag(
        StatusCode::OK,
        updated.version,
        after.team_view(&updated),
    ))
}

/// Deletes `team` and its links; its members stay users.
async fn remove_team(tx: &mut WriteTx, team: &TeamRow, now: i64) -> ApiResult<()> {
    for statement in [
        "DELETE FROM team_members WHERE team_id = $1",
        "DELETE FROM team_roles WHERE team_id = $1",
        "DELETE FROM teams WHERE id = $1",
    ] {
        sqlx::query(statement)
            .bind(&team.id)
            .execute(&mut *tx.tx)
            .await
            .map_err(db_error("delete the team"))?;
    }
    tx.emit(team_event(EventType::TeamDeleted, team), now);
    Ok(())
}

pub async fn delete_team(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let now = state.now();
    let mut tx = state.begin().await?;
    let team = authorized_team(&mut tx.tx, &principal, &id, Permission::ServiceUsersWrite).await?;
    remove_team(&mut tx, &team, now).await?;
    tx.commit().await.map_err(db_error("commit"))?;
    Ok(StatusCode::NO_CONTENT)
}

// --- SCIM groups -------------------------------------------------------------------------------

/// A team provisioned through SCIM (a Group), as SCIM reads it.
#[derive(Debug, Clone)]
pub(super) struct ScimGroupRecord {
    pub id: String,
    pub name: String,
    pub version: i64,
    pub created_at: i64,
    pub modified_at: i64,
    pub document: serde_json::Map<String, serde_json::Value>,
    /// The users the team lists, by portal id, in the order the document gave them.
    pub members: Vec<String>,
}

/// The SCIM-provisioned teams of `account_id`.
pub(super) async fn scim_groups(
    connection: &mut AnyConnection,
    account_id: &str,
    id: Option<&str>,
) -> ApiResult<Vec<ScimGroupRecord>> {
    let rows = sqlx::query(
        "SELECT id, name, version, created_at, scim_modified_at, scim_document FROM teams \
         WHERE account_id = $1 AND scim_document IS NOT NULL AND ($2 IS NULL OR id = $2) ORDER BY created_at, id",
    )
    .bind(account_id)
    .bind(id)
    .fetch_all(&mut *connection)
    .await
    .map_err(db_error("list SCIM groups"))?;
    let members = sqlx::query(
        "SELECT m.team_id, m.user_id FROM team_members m JOIN teams t ON t.id = m.team_id \
         WHERE t.account_id = $1 AND t.scim_document IS NOT NULL AND m.listed_by = 'team' AND ($2 IS NULL OR t.id = $2)",
    )
    .bind(account_id)
    .bind(id)
    .fetch_all(&mut *connection)
    .await
    .map_err(db_error("list SCIM group members"))?;
    let mut by_team: HashMap<String, Vec<String>> = HashMap::new();
    for row in &members {
        by_team
            .entry(row.get("team_id"))
            .or_default()
            .push(row.get("user_id"));
    }
    rows.iter()
        .map(|row| {
            let id: String = row.get("id");
            let mut document: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&row.get::<String, _>("scim_document"))
                    .map_err(|e| ApiError::internal("read the SCIM document", e))?;
            let mut members = by_team.remove(&id).unwrap_or_default();
            // The order the identity provider sent, then any listed since by the REST API.
            let order = document.remove("memberOrder");
            let sent: Vec<&str> = order
                .as_ref()
                .and_then(|v| v.as_array())
                .map(|ids| ids.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            members.sort_by_key(|m| sent.iter().position(|s| s == m).unwrap_or(usize::MAX));
            let created_at: i64 = row.get("created_at");
            Ok(ScimGroupRecord {
                name: row.get("name"),
                version: row.get("version"),
                modified_at: row
                    .get::<Option<i64>, _>("scim_modified_at")
                    .unwrap_or(created_at),
                created_at,
                document,
                members,
                id,
            })
        })
        .collect()
}

/// A team as SCIM writes it.
#[derive(Debug, Clone)]
pub(super) struct ScimGroup {
    pub name: String,
    /// Portal ids of users of the account.
    pub members: Vec<String>,
    /// The rest of the resource as sent.
    pub document: serde_json::Map<String, serde_json::Value>,
}

/// Creates (`id` None) or replaces a SCIM-provisioned team: its name, the users it lists (by
/// portal id, users of the account) and the document as sent. Returns the team's id.
pub(super) async fn scim_group_write(
    state: &AppState,
    principal: &Principal,
    account_id: &str,
    id: Option<&str>,
    group: ScimGroup,
    expected: &IfMatch,
) -> ApiResult<String> {
    let ScimGroup {
        name,
        members,
        mut document,
    } = group;
    let members = &members;
    let name = check_name("displayName", &name)?;
    let now = state.now();
    let mut tx = state.begin().await?;
    authorize(
        &mut tx.tx,
        principal,
        account_id,
        Permission::ServiceUsersWrite,
    )
    .await?;
    let service = AccountService::load(&mut tx.tx, account_id).await?;
    let current = match id {
        Some(id) => {
            let team = service
                .teams
                .iter()
                .find(|t| t.id == id)
                .cloned()
                .ok_or_else(|| ApiError::not_found("group", id))?;
            expected.check("group", id, team.version)?;
            Some(team)
        }
        None => None,
    };
    if service.teams.iter().any(|t| {
        t.name.to_lowercase() == name.to_lowercase()
            && Some(&t.id) != current.as_ref().map(|c| &c.id)
    }) {
        return Err(name_taken("team", &name));
    }
    for member in members {
        if !service.user_ids.contains_key(member) {
            return Err(ApiError::new(
                ProblemType::UnknownReference,
                format!("the account has no user {member:?}"),
            ));
        }
    }
    // In the order sent, each once.
    let mut seen = std::collections::HashSet::with_capacity(members.len());
    let unique: Vec<String> = members
        .iter()
        .filter(|m| seen.insert(m.as_str()))
        .cloned()
        .collect();
    document.insert("memberOrder".into(), serde_json::json!(unique));
    let document = serde_json::Value::Object(document).to_string();
    let team_id = match &current {
        None => {
            let team_id = uuid::Uuid::now_v7().to_string();
            sqlx::query(
                "INSERT INTO teams (id, account_id, name, name_canonical, channels, disabled, created_at, version, scim_document, scim_modified_at) \
                 VALUES ($1, $2, $3, $4, '[]', 0, $5, 1, $6, $5)",
            )
            .bind(&team_id)
            .bind(account_id)
            .bind(&name)
            .bind(name.to_lowercase())
            .bind(now)
            .bind(&document)
            .execute(&mut *tx.tx)
            .await
            .map_err(db_error("create the team"))?;
            team_id
        }
        Some(team) => {
            sqlx::query(
                "UPDATE teams SET name = $1, name_canonical = $2, version = version + 1, scim_document = $3, scim_modified_at = $4 \
                 WHERE id = $5 AND version = $6",
            )
            .bind(&name)
            .bind(name.to_lowercase())
            .bind(&document)
            .bind(now)
            .bind(&team.id)
            .bind(team.version)
            .execute(&mut *tx.tx)
            .await
            .map_err(db_error("update the team"))?;
            team.id.clone()
        }
    };
    write_team_links(&mut tx, &team_id, Some(&unique), None).await?;
    let service = AccountService::load(&mut tx.tx, account_id).await?;
    let team = service
        .teams
        .iter()
        .find(|t| t.id == team_id)
        .cloned()
        .expect("just written");
    let event = if current.is_some() {
        EventType::TeamUpdated
    } else {
        EventType::TeamCreated
    };
    tx.emit(team_event(event, &team), now);
    tx.commit().await.map_err(db_error("commit"))?;
    Ok(team_id)
}

/// Deletes a SCIM-provisioned team; its members stay users.
pub(super) async fn scim_group_delete(
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
    let team = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {TEAM_COLUMNS} FROM teams WHERE id = $1 AND account_id = $2 AND scim_document IS NOT NULL"
    )))
    .bind(id)
    .bind(account_id)
    .fetch_optional(&mut *tx.tx)
    .await
    .map_err(db_error("read the team"))?
    .as_ref()
    .map(TeamRow::from_row)
    .transpose()?
    .ok_or_else(|| ApiError::not_found("group", id))?;
    expected.check("group", id, team.version)?;
    remove_team(&mut tx, &team, now).await?;
    tx.commit().await.map_err(db_error("commit"))?;
    Ok(())
}
