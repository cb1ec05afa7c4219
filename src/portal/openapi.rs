//! The OpenAPI 3 document of the portal API, served at `GET /openapi.json`.
//!
//! Generated from the code: operations come from [`OPERATIONS`] and every body schema from the
//! Rust type the handler reads or writes (schemars). A committed copy (`docs/openapi.json`) is
//! compared with this output by a test, and another test calls every documented operation to
//! prove the router serves it.

use axum::Json;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use crate::api::problem::{Problem, ProblemType, TYPE_BASE};
use crate::api::{
    Page, account_managers as managers, accounts, events, grants, invitations, keys, subscriptions,
    teams, users,
};
use crate::domain::{EffectiveAccess, RoleSpec};

type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// One documented operation.
pub struct Operation {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub tag: &'static str,
    /// Needs `Authorization: Bearer pk_…`.
    pub authenticated: bool,
    pub request: Option<SchemaFn>,
    pub status: u16,
    pub response: Option<SchemaFn>,
    /// The query parameters: the type the handler parses them into (so the document says what
    /// is required, typed and bounded exactly as the handler enforces it).
    pub query: Option<SchemaFn>,
    /// Extra request headers: (name, description, required).
    pub headers: &'static [(&'static str, &'static str, bool)],
    /// The problems this operation answers besides those every operation of its shape can
    /// (see [`Operation::problems`]).
    pub specific_problems: &'static [ProblemType],
}

impl Operation {
    /// Every problem the operation can answer: what its shape implies (an API key: 401 and
    /// 403; a path parameter: 404; query parameters: 400; a body: 400, 413, 415 and 422; an
    /// `Idempotency-Key`: its reuse; `If-Match`: 412 and 428), then its own, in the order
    /// [`ProblemType::ALL`] lists them.
    pub fn problems(&self) -> Vec<ProblemType> {
        use ProblemType as P;
        let mut implied = Vec::new();
        if self.authenticated {
            implied.extend([P::Unauthenticated, P::Forbidden]);
        }
        if self.path.contains('{') {
            implied.push(P::NotFound);
        }
        if self.query.is_some() {
            implied.push(P::MalformedRequest);
        }
        if self.request.is_some() {
            implied.extend([
                P::MalformedRequest,
                P::PayloadTooLarge,
                P::UnsupportedMediaType,
                P::ValidationFailed,
            ]);
        }
        for (header, _, _) in self.headers {
            match *header {
                "Idempotency-Key" => implied.extend([P::ValidationFailed, P::IdempotencyKeyReused]),
                "If-Match" => implied.extend([P::PreconditionFailed, P::PreconditionRequired]),
                _ => {}
            }
        }
        ProblemType::ALL
            .iter()
            .copied()
            .filter(|p| implied.contains(p) || self.specific_problems.contains(p))
            .collect()
    }
}

const IDEMPOTENCY: (&str, &str, bool) = (
    "Idempotency-Key",
    "Replays the first successful response for the same key and body; 422 for the same key with another body. The response is recorded in the same transaction as the write, so a request that committed replays even if its first response was lost. Of concurrent requests with one key, the first to commit wins and the others answer with its response. A refused request is not recorded and may be retried with the same key.",
    false,
);
const IF_MATCH: (&str, &str, bool) = ("If-Match", "The ETag of the version read; required.", true);
/// A query type's own schema, inline (its properties become the operation's parameters).
fn query<T: JsonSchema>(_generator: &mut SchemaGenerator) -> Schema {
    // Inline: a parameter's schema (an enum of states, say) cannot point into a document of
    // its own.
    let mut settings = SchemaSettings::openapi3();
    settings.inline_subschemas = true;
    SchemaGenerator::new(settings).into_root_schema_for::<T>()
}

macro_rules! op {
    ($method:literal $path:literal, $tag:literal, $summary:literal, auth: $auth:literal,
     request: $request:expr, $status:literal => $response:expr
     $(, query: $query:ty)? $(, headers: $headers:expr)?
     $(, problems: [$($problem:ident),* $(,)?])?) => {
        Operation {
            method: $method,
            path: $path,
            summary: $summary,
            tag: $tag,
            authenticated: $auth,
            request: $request,
            status: $status,
            response: $response,
            query: op!(@none $($query)?),
            headers: op!(@or $($headers)?),
            specific_problems: &[$($(ProblemType::$problem),*)?],
        }
    };
    (@or $value:expr) => { $value };
    (@or) => { &[] };
    (@none $value:ty) => { Some(query::<$value>) };
    (@none) => { None };
}

/// Every operation of the API.
pub static OPERATIONS: &[Operation] = &[
    op!("get" "/healthz", "Service", "Liveness and database reachability", auth: false, request: None, 200 => None),
    op!("get" "/metrics", "Service", "Prometheus metrics", auth: false, request: None, 200 => None),
    op!("get" "/openapi.json", "Service", "This document", auth: false, request: None, 200 => None),
    op!("get" "/v1/roles", "Access", "The admin role catalog", auth: false, request: None, 200 => Some(schema::<Vec<RoleSpec>>)),
    op!("get" "/v1/whoami", "Access", "The principal this API key acts as", auth: true,
        request: None, 200 => Some(schema::<grants::Whoami>)),
    op!("get" "/v1/access", "Access", "What a subject may do on an account, and the path that gives each permission", auth: true,
        request: None, 200 => Some(schema::<EffectiveAccess>),
        query: super::grants::AccessQuery,
        problems: [NotFound, SubjectNotFound]),
    op!("post" "/v1/accounts", "Accounts", "Create an account (top-level: platform principal only)", auth: true,
        request: Some(schema::<accounts::CreateAccount>), 201 => Some(schema::<accounts::AccountView>), headers: &[IDEMPOTENCY],
        problems: [NotFound, ExternalIdConflict, ExternalRefConflict, AccountTree]),
    op!("get" "/v1/accounts", "Accounts", "Find by externalId, list the children of parentId, or list your accounts", auth: true,
        request: None, 200 => Some(schema::<Page<accounts::AccountView>>),
        query: super::accounts::ListQuery,
        problems: [NotFound]),
    op!("get" "/v1/accounts/{id}", "Accounts", "Read an account (ETag header)", auth: true, request: None, 200 => Some(schema::<accounts::AccountView>)),
    op!("patch" "/v1/accounts/{id}", "Accounts", "Change displayName, tenantId, subContract or externalId", auth: true,
        request: Some(schema::<accounts::UpdateAccount>), 200 => Some(schema::<accounts::AccountView>), headers: &[IF_MATCH],
        problems: [ExternalIdConflict, AccountTree]),
    op!("delete" "/v1/accounts/{id}", "Accounts", "Delete an account (refused while not empty unless cascade=true)", auth: true,
        request: None, 204 => None, query: super::accounts::DeleteQuery,
        problems: [AccountNotEmpty]),
    op!("post" "/v1/accounts/{id}/grants", "Grants", "Grant roles to an existing admin", auth: true,
        request: Some(schema::<grants::CreateGrants>), 201 => Some(schema::<Page<grants::GrantView>>), headers: &[IDEMPOTENCY],
        problems: [SubjectNotFound, UnknownRole, RoleNotAssignable, EscalationDenied, ExternalRefConflict]),
    op!("get" "/v1/accounts/{id}/grants", "Grants", "List the grants made on an account", auth: true,
        request: None, 200 => Some(schema::<Page<grants::GrantView>>),
        query: super::grants::ListGrantsQuery),
    op!("delete" "/v1/accounts/{id}/grants", "Grants", "Revoke the grants one source made on an account", auth: true,
        request: None, 200 => Some(schema::<grants::RevokedGrants>), query: super::grants::RevokeBySourceQuery,
        problems: [LastOwner]),
    op!("delete" "/v1/grants/{id}", "Grants", "Revoke one grant", auth: true, request: None, 204 => None,
        problems: [LastOwner]),
    op!("get" "/v1/accounts/{id}/admins", "Admins", "List the admins of an account with their roles there", auth: true,
        request: None, 200 => Some(schema::<Page<grants::AdminView>>), query: super::json::PageQuery),
    op!("post" "/v1/accounts/{id}/admins", "Admins", "Provision an admin directly (platform principal only)", auth: true,
        request: Some(schema::<grants::CreateAdmin>), 201 => Some(schema::<grants::AdminView>), headers: &[IDEMPOTENCY],
        problems: [UnknownRole, RoleNotAssignable, EscalationDenied, ExternalRefConflict]),
    op!("delete" "/v1/accounts/{id}/admins/{admin}", "Admins", "Remove an admin from an account (all its grants there)", auth: true,
        request: None, 204 => None,
        problems: [LastOwner]),
    op!("post" "/v1/accounts/{id}/invitations", "Invitations", "Invite an administrator by email or by link", auth: true,
        request: Some(schema::<invitations::CreateInvitation>), 201 => Some(schema::<invitations::InvitationView>), headers: &[IDEMPOTENCY],
        problems: [UnknownRole, RoleNotAssignable, EscalationDenied, ExternalRefConflict]),
    op!("get" "/v1/accounts/{id}/invitations", "Invitations", "List invitations (Pending and Expired by default)", auth: true,
        request: None, 200 => Some(schema::<Page<invitations::InvitationView>>),
        query: super::invitations::ListQuery,
        problems: [ValidationFailed]),
    op!("get" "/v1/invitations/{id}", "Invitations", "Read an invitation (ETag header)", auth: true,
        request: None, 200 => Some(schema::<invitations::InvitationView>)),
    op!("patch" "/v1/invitations/{id}", "Invitations", "Change a pending invitation's roles", auth: true,
        request: Some(schema::<invitations::UpdateInvitation>), 200 => Some(schema::<invitations::InvitationView>), headers: &[IF_MATCH],
        problems: [UnknownRole, RoleNotAssignable, EscalationDenied, InvitationNotPending]),
    op!("delete" "/v1/invitations/{id}", "Invitations", "Revoke a pending or expired invitation", auth: true, request: None, 204 => None,
        problems: [InvitationNotPending]),
    op!("post" "/v1/invitations/{id}/resend", "Invitations", "Issue a new token and send the invitation again", auth: true,
        request: None, 200 => Some(schema::<invitations::InvitationView>), headers: &[IDEMPOTENCY],
        problems: [InvitationNotPending, InvitationExpired]),
    op!("post" "/v1/invitations/accept", "Invitations", "Accept an invitation with an ID token of the configured issuer", auth: false,
        request: Some(schema::<invitations::AcceptInvitation>), 200 => Some(schema::<invitations::Accepted>),
        problems: [NotFound, InvalidToken, WrongTenant, IdpRefused, InvitationAlreadyUsed, InvitationNotPending, InvitationExpired, TooManyRequests, ServiceUnavailable]),
    op!("post" "/v1/accounts/{id}/account-managers", "Account managers", "Add an account manager (activation email)", auth: true,
        request: Some(schema::<managers::CreateAccountManager>), 201 => Some(schema::<managers::AccountManagerView>), headers: &[IDEMPOTENCY],
        problems: [EmailConflict, ExternalRefConflict]),
    op!("get" "/v1/accounts/{id}/account-managers", "Account managers", "List an account's account managers", auth: true,
        request: None, 200 => Some(schema::<Page<managers::AccountManagerView>>),
        query: super::account_managers::ListQuery),
    op!("get" "/v1/account-managers/{id}", "Account managers", "Read an account manager", auth: true,
        request: None, 200 => Some(schema::<managers::AccountManagerView>)),
    op!("delete" "/v1/account-managers/{id}", "Account managers", "Remove an account manager", auth: true, request: None, 204 => None),
    op!("post" "/v1/account-managers/{id}/resend-activation", "Account managers", "Issue a new temporary password", auth: true,
        request: None, 200 => Some(schema::<managers::AccountManagerView>), headers: &[IDEMPOTENCY],
        problems: [AlreadyActive]),
    op!("post" "/v1/account-managers/activate", "Account managers", "First sign-in: trade the temporary password for your own", auth: false,
        request: Some(schema::<managers::Activate>), 200 => Some(schema::<managers::AccountManagerView>),
        problems: [InvalidCredentials, AlreadyActive, ActivationExpired, TooManyRequests]),
    op!("get" "/v1/license-types", "Subscriptions", "The licence-type catalog", auth: false, request: None, 200 => Some(schema::<Vec<subscriptions::LicenseTypeView>>)),
    op!("post" "/v1/accounts/{id}/subscriptions", "Subscriptions", "Add a subscription (one per licence type; subscriptions.write, a financial change)", auth: true,
        request: Some(schema::<subscriptions::CreateSubscription>), 201 => Some(schema::<subscriptions::SubscriptionView>), headers: &[IDEMPOTENCY],
        problems: [SubscriptionExists, ExternalRefConflict]),
    op!("get" "/v1/accounts/{id}/subscriptions", "Subscriptions", "List an account's subscriptions with assigned and free licences", auth: true,
        request: None, 200 => Some(schema::<Page<subscriptions::SubscriptionView>>), query: super::subscriptions::ListQuery),
    op!("get" "/v1/subscriptions/{id}", "Subscriptions", "Read a subscription (ETag header)", auth: true,
        request: None, 200 => Some(schema::<subscriptions::SubscriptionView>)),
    op!("patch" "/v1/subscriptions/{id}", "Subscriptions", "Change the quantity (never below what is assigned)", auth: true,
        request: Some(schema::<subscriptions::UpdateSubscription>), 200 => Some(schema::<subscriptions::SubscriptionView>), headers: &[IF_MATCH],
        problems: [LicenseInUse]),
    op!("delete" "/v1/subscriptions/{id}", "Subscriptions", "Delete a subscription no user holds a licence of", auth: true, request: None, 204 => None,
        problems: [LicenseInUse]),
    op!("get" "/v1/user-permissions", "Users", "The end-user and team permission catalogs", auth: false, request: None, 200 => Some(schema::<users::PermissionCatalog>)),
    op!("post" "/v1/accounts/{id}/users", "Users", "Create a user (takes a licence; invited at once unless invite is false)", auth: true,
        request: Some(schema::<users::CreateUser>), 201 => Some(schema::<users::UserView>), headers: &[IDEMPOTENCY],
        problems: [UserIdConflict, LicenseExhausted, UnknownReference, ExternalRefConflict]),
    op!("get" "/v1/accounts/{id}/users", "Users", "List an account's users", auth: true,
        request: None, 200 => Some(schema::<Page<users::UserView>>), query: super::users::ListQuery),
    op!("get" "/v1/accounts/{id}/users/export", "Users", "The account's users as an Excel workbook (.xlsx): active, prepared or all", auth: true,
        request: None, 200 => None, query: super::export::ExportQuery),
    op!("post" "/v1/accounts/{id}/users/send-invitations", "Users", "Invite prepared users, all or none", auth: true,
        request: Some(schema::<users::SendInvitations>), 200 => Some(schema::<Page<users::UserView>>), headers: &[IDEMPOTENCY],
        problems: [UserNotPrepared, LicenseExhausted, UnknownReference]),
    op!("get" "/v1/users/{id}", "Users", "Read a user (ETag header)", auth: true, request: None, 200 => Some(schema::<users::UserView>)),
    op!("patch" "/v1/users/{id}", "Users", "Change a user's settings, licence type or disabled flag", auth: true,
        request: Some(schema::<users::UpdateUser>), 200 => Some(schema::<users::UserView>), headers: &[IF_MATCH],
        problems: [UserIdConflict, LicenseExhausted, UnknownReference]),
    op!("delete" "/v1/users/{id}", "Users", "Delete a user and give its licence back. This cannot be undone.", auth: true, request: None, 204 => None),
    op!("post" "/v1/users/{id}/resend-activation", "Users", "Issue a new temporary password to an invited user", auth: true,
        request: None, 200 => Some(schema::<users::UserView>), headers: &[IDEMPOTENCY],
        problems: [AlreadyActive, UserNotPrepared]),
    op!("post" "/v1/users/activate", "Users", "A user's first sign-in: trade the temporary password for your own", auth: false,
        request: Some(schema::<managers::Activate>), 200 => Some(schema::<users::UserView>),
        problems: [InvalidCredentials, AlreadyActive, ActivationExpired, TooManyRequests]),
    op!("post" "/v1/accounts/{id}/user-roles", "Teams and user roles", "Create a user role (permissions, the team it belongs to, team permissions)", auth: true,
        request: Some(schema::<teams::CreateUserRole>), 201 => Some(schema::<teams::UserRoleView>), headers: &[IDEMPOTENCY],
        problems: [NameConflict, UnknownReference, ExternalRefConflict]),
    op!("get" "/v1/accounts/{id}/user-roles", "Teams and user roles", "List an account's user roles with their holders", auth: true,
        request: None, 200 => Some(schema::<Page<teams::UserRoleView>>), query: super::teams::ListQuery),
    op!("get" "/v1/user-roles/{id}", "Teams and user roles", "Read a user role (ETag header)", auth: true, request: None, 200 => Some(schema::<teams::UserRoleView>)),
    op!("patch" "/v1/user-roles/{id}", "Teams and user roles", "Change a user role", auth: true,
        request: Some(schema::<teams::UpdateUserRole>), 200 => Some(schema::<teams::UserRoleView>), headers: &[IF_MATCH],
        problems: [NameConflict, UnknownReference]),
    op!("delete" "/v1/user-roles/{id}", "Teams and user roles", "Delete a user role: removed from every user, with the team memberships that came only from it", auth: true,
        request: None, 200 => Some(schema::<teams::DeletedUserRole>)),
    op!("post" "/v1/accounts/{id}/teams", "Teams and user roles", "Create a team (members, roles, channels, avatar)", auth: true,
        request: Some(schema::<teams::CreateTeam>), 201 => Some(schema::<teams::TeamView>), headers: &[IDEMPOTENCY],
        problems: [NameConflict, UnknownReference, ExternalRefConflict]),
    op!("get" "/v1/accounts/{id}/teams", "Teams and user roles", "List an account's teams with their effective members", auth: true,
        request: None, 200 => Some(schema::<Page<teams::TeamView>>), query: super::teams::ListQuery),
    op!("get" "/v1/teams/{id}", "Teams and user roles", "Read a team (ETag header)", auth: true, request: None, 200 => Some(schema::<teams::TeamView>)),
    op!("patch" "/v1/teams/{id}", "Teams and user roles", "Change a team (disabled: invisible to its members until enabled)", auth: true,
        request: Some(schema::<teams::UpdateTeam>), 200 => Some(schema::<teams::TeamView>), headers: &[IF_MATCH],
        problems: [NameConflict, UnknownReference]),
    op!("delete" "/v1/teams/{id}", "Teams and user roles", "Delete a team", auth: true, request: None, 204 => None),
    op!("get" "/v1/teams/{id}/avatar", "Teams and user roles", "The team's avatar image (image/png or image/jpeg)", auth: true, request: None, 200 => None),
    op!("post" "/v1/accounts/{id}/scim-tokens", "API keys", "Mint a SCIM token for the account's identity provider (shown once; acts only at /scim/v2, only on this account)", auth: true,
        request: Some(schema::<keys::CreateScimToken>), 201 => Some(schema::<keys::KeyView>), headers: &[IDEMPOTENCY],
        problems: [ExternalRefConflict]),
    op!("get" "/v1/accounts/{id}/scim-tokens", "API keys", "The account's SCIM tokens (never their secrets)", auth: true,
        request: None, 200 => Some(schema::<Page<keys::KeyView>>)),
    op!("delete" "/v1/accounts/{id}/scim-tokens/{token}", "API keys", "Revoke one of the account's SCIM tokens", auth: true, request: None, 204 => None),
    op!("post" "/v1/api-keys", "API keys", "Issue an API key (shown once)", auth: true,
        request: Some(schema::<keys::CreateKey>), 201 => Some(schema::<keys::KeyView>), headers: &[IDEMPOTENCY],
        problems: [ExternalRefConflict]),
    op!("get" "/v1/api-keys", "API keys", "List your API keys (never their secret)", auth: true, request: None, 200 => Some(schema::<Page<keys::KeyView>>)),
    op!("delete" "/v1/api-keys/{id}", "API keys", "Revoke an API key", auth: true, request: None, 204 => None,
        problems: [LastPlatformKey]),
    op!("get" "/v1/events", "Change feed", "Server-sent events (or a JSON page with Accept: application/json), resumable from Last-Event-ID", auth: true,
        request: None, 200 => Some(schema::<events::EventPage>),
        query: super::feed::FeedQuery,
        headers: &[("Last-Event-ID", "Resume after this event id.", false)],
        problems: [ValidationFailed]),
    op!("get" "/v1/outbox", "Mail", "Messages sent or waiting (platform principal only)", auth: true,
        request: None, 200 => Some(schema::<Page<keys::OutboxMessage>>), query: super::json::PageQuery),
];

/// Builds the document.
pub fn document() -> Value {
    let mut generator = SchemaGenerator::new(SchemaSettings::openapi3());
    let problem = schema::<Problem>(&mut generator);
    let mut paths = Map::new();
    for operation in OPERATIONS {
        let mut parameters: Vec<Value> = operation
            .path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        if let Some(query) = operation.query {
            let schema = serde_json::to_value(query(&mut generator)).expect("schemas serialize");
            let required: Vec<&str> = schema["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            for (name, property) in schema["properties"].as_object().into_iter().flatten() {
                let mut property = property.clone();
                let description = property
                    .as_object_mut()
                    .and_then(|p| p.remove("description"))
                    .unwrap_or(Value::Null);
                // A query parameter is absent rather than null.
                if let Some(types) = property["type"].as_array() {
                    let single: Vec<Value> =
                        types.iter().filter(|t| *t != "null").cloned().collect();
                    if single.len() == 1 {
                        property["type"] = single[0].clone();
                    }
                }
                if let Some(object) = property.as_object_mut() {
                    object.remove("nullable");
                    object.remove("default");
                }
                parameters.push(json!({
                    "name": name,
                    "in": "query",
                    "required": required.contains(&name.as_str()),
                    "description": description,
                    "schema": property,
                }));
            }
        }
        parameters.extend(operation.headers.iter().map(|(name, description, required)| {
            json!({ "name": name, "in": "header", "required": required, "description": description, "schema": { "type": "string" } })
        }));
        let mut responses = Map::new();
        let mut success = match operation.response {
            Some(response) => json!({
                "description": "Success",
                "content": { "application/json": { "schema": response(&mut generator) } },
            }),
            None => json!({ "description": "Success" }),
        };
        if let Some((media_type, description)) = binary_response(operation.path) {
            success["content"] = json!({
                media_type: { "schema": { "type": "string", "format": "binary", "description": description } }
            });
        }
        if operation.path == "/v1/events" {
            // By default the feed is a stream of server-sent events, one JSON event per `data:`
            // line with its sequence number as the `id:`; a JSON page only when asked.
            success["content"]["text/event-stream"] = json!({
                "schema": {
                    "type": "string",
                    "description": "Server-sent events: per event `id: <seq>`, `event: <type>` and `data: <Event as JSON>`; a comment line every 15 s keeps the connection alive."
                }
            });
        }
        responses.insert(operation.status.to_string(), success);
        let mut by_status: std::collections::BTreeMap<u16, Vec<ProblemType>> = Default::default();
        for problem in operation.problems() {
            by_status.entry(problem.status()).or_default().push(problem);
        }
        for (status, types) in by_status {
            let listed: Vec<String> = types
                .iter()
                .map(|p| format!("`{}` ({})", p.slug(), p.title()))
                .collect();
            responses.insert(
                status.to_string(),
                json!({
                    "description": format!("A problem (RFC 9457) whose `type` ends in {}", listed.join(", ")),
                    "content": { "application/problem+json": { "schema": problem.clone() } },
                    "x-problem-types": types.iter().map(|p| p.slug()).collect::<Vec<_>>(),
                }),
            );
        }
        responses.insert(
            "default".into(),
            json!({
                "description": "A fault of the server itself (`internal`, 500: its storage failed); nothing was changed, retry later. No other status is answered.",
                "content": { "application/problem+json": { "schema": problem.clone() } },
            }),
        );
        let mut entry = json!({
            "summary": operation.summary,
            "tags": [operation.tag],
            "operationId": operation_id(operation),
            "parameters": parameters,
            "responses": responses,
        });
        if let Some(request) = operation.request {
            entry["requestBody"] = json!({
                "required": true,
                "content": { "application/json": { "schema": request(&mut generator) } },
            });
        }
        if !operation.authenticated {
            entry["security"] = json!([]);
        }
        paths
            .entry(operation.path.to_owned())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("path items are objects")
            .insert(operation.method.to_owned(), entry);
    }
    let schemas: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "portal-operator reference portal API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!(
                "Accounts, admins, invitations, role grants and account managers of a multi-tenant admin portal. \
                 Errors are application/problem+json; their `type` is {TYPE_BASE} followed by one of: {}.",
                ProblemType::ALL
                    .iter()
                    // A storage fault is not a cause a client acts on.
                    .filter(|t| **t != ProblemType::Internal)
                    .map(|t| t.slug())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
        "security": [{ "apiKey": [] }],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "apiKey": { "type": "http", "scheme": "bearer", "description": "An API key, pk_<id>_<secret>." },
            },
            "schemas": schemas,
        },
    })
}

/// Operations that answer a file rather than JSON: its media type and what it holds.
fn binary_response(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/v1/accounts/{id}/users/export" => Some((
            super::export::XLSX_MEDIA_TYPE,
            "One sheet, Users: a header row, then one row per user (user ID, names, state, licence, numbers, roles, teams, permissions, language, time zone, provisioned by, dates), ordered by user ID.",
        )),
        "/v1/teams/{id}/avatar" => Some((
            "image/*",
            "The avatar as uploaded: image/png or image/jpeg.",
        )),
        _ => None,
    }
}

fn operation_id(operation: &Operation) -> String {
    let mut id = operation.method.to_owned();
    for segment in operation
        .path
        .split('/')
        .filter(|s| !s.is_empty() && *s != "v1")
    {
        let word = segment.trim_start_matches('{').trim_end_matches('}');
        let mut capitalised = true;
        for c in word.chars() {
            if c.is_ascii_alphanumeric() {
                if capitalised {
                    id.extend(c.to_uppercase());
                } else {
                    id.push(c);
                }
                capitalised = false;
            } else {
                capitalised = true;
            }
        }
        if segment.starts_with('{') {
            id.push_str("Param");
        }
    }
    id
}

pub async fn serve() -> Json<Value> {
    Json(document())
}
