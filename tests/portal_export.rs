//! The users export (seed 003: "export to Excel format: active users, prepared users, or both")
//! over real HTTP on SQLite and PostgreSQL, read back with a real xlsx reader (calamine): the
//! header row, one row per user with what the API shows, the state filters, an empty account's
//! header-only file, and refusals as problem+json. The CLI's `export users` is in `local.rs`.

mod support;

use std::io::Cursor;

use calamine::{Reader, Xlsx, open_workbook_from_rs};
use serde_json::json;
use support::{Api, Backend, TestPortal};

on_both_backends!(
    the_export_has_a_row_per_user_and_filters_active_and_prepared,
    an_empty_account_exports_the_header_row_only,
    export_refusals_are_problems,
);

const HEADER: [&str; 21] = [
    "User ID",
    "First name",
    "Last name",
    "State",
    "Licence type",
    "Licence",
    "Mobile number",
    "Landline number",
    "Linked number",
    "Mex",
    "Display numbers",
    "Country code",
    "Roles",
    "Teams",
    "Permissions",
    "Language",
    "Time zone",
    "Provisioned by",
    "Invited at",
    "Activated at",
    "Created at",
];

/// The workbook at `path`, as rows of text, and the answer's headers.
async fn export(api: &Api, path: &str) -> (Vec<Vec<String>>, reqwest::header::HeaderMap) {
    let response = api
        .client
        .get(format!("{}{path}", api.base))
        .bearer_auth(api.key.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap().to_vec();
    assert!(bytes.starts_with(b"PK"), "an xlsx file is a zip archive");
    let mut workbook: Xlsx<_> = open_workbook_from_rs(Cursor::new(bytes)).expect("a real xlsx");
    assert_eq!(workbook.sheet_names(), vec!["Users".to_owned()]);
    let range = workbook.worksheet_range("Users").unwrap();
    let rows = range
        .rows()
        .map(|row| row.iter().map(|cell| cell.to_string()).collect())
        .collect();
    (rows, headers)
}

fn column<'a>(rows: &'a [Vec<String>], header: &str) -> Vec<&'a str> {
    let index = HEADER.iter().position(|h| *h == header).unwrap();
    rows[1..].iter().map(|row| row[index].as_str()).collect()
}

async fn account_with_subscription(portal: &TestPortal) -> String {
    let platform = portal.platform();
    let partner = platform
        .account(json!({ "type": "Partner", "displayName": "Northwind Traders, Inc." }))
        .await;
    platform
        .post(
            &format!("/v1/accounts/{partner}/subscriptions"),
            json!({ "licenseType": "Standard", "quantity": 10 }),
        )
        .await
        .expect(201);
    partner
}

async fn the_export_has_a_row_per_user_and_filters_active_and_prepared(backend: Backend) {
    let portal = TestPortal::start(backend).await;
    let platform = portal.platform();
    let account = account_with_subscription(&portal).await;
    let base = format!("/v1/accounts/{account}");
    platform
        .post(&format!("{base}/teams"), json!({ "name": "Support" }))
        .await
        .expect(201);
    platform
        .post(
            &format!("{base}/user-roles"),
            json!({ "name": "Agent", "permissions": ["call_queues.answer"], "team": "Support" }),
        )
        .await
        .expect(201);
    platform
        .post(
            &format!("{base}/users"),
            json!({ "userId": "chloe@northwind.example", "firstName": "Chloé", "lastName": "Martin",
                    "licenseType": "Standard", "mobileNumber": "+33 6 12 34 56 78",
                    "landlineNumber": "+33 1 84 88 00 10", "linkedNumber": "+33 6 12 34 56 78", "mex": true,
                    "displayNumbers": ["+33 1 84 88 00 99"], "countryCode": "+33", "roles": ["Agent"],
                    "language": "fr", "timeZone": "Europe/Paris" }),
        )
        .await
        .expect(201);
    for (user_id, first) in [
        ("+447700900123", "=SUM(A1)"),
        ("ann@northwind.example", "Ann"),
    ] {
        platform
            .post(
                &format!("{base}/users"),
                json!({ "userId": user_id, "firstName": first, "lastName": "Prepared",
                        "licenseType": "Standard", "invite": false }),
            )
            .await
            .expect(201);
    }

    let (rows, headers) = export(&platform, &format!("{base}/users/export")).await;
    assert_eq!(
        headers["content-type"],
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"users-northwind-traders-inc-all.xlsx\""
    );
    assert_eq!(headers["x-user-count"], "3");
    assert_eq!(rows[0], HEADER, "the header row");
    assert_eq!(rows.len(), 4, "one row per user: {rows:?}");
    assert_eq!(
        column(&rows, "User ID"),
        [
            "+447700900123",
            "ann@northwind.example",
            "chloe@northwind.example"
        ],
        "ordered by user ID"
    );
    let chloe = &rows[3];
    let cell = |header: &str| chloe[HEADER.iter().position(|h| *h == header).unwrap()].as_str();
    assert_eq!(cell("First name"), "Chloé");
    assert_eq!(cell("State"), "Invited");
    assert_eq!(cell("Licence type"), "Standard");
    assert_eq!(cell("Licence"), "Assigned");
    assert_eq!(cell("Mobile number"), "+33 6 12 34 56 78", "as sent");
    assert_eq!(cell("Linked number"), "+33 6 12 34 56 78");
    assert_eq!(cell("Mex"), "Yes");
    assert_eq!(cell("Display numbers"), "+33 1 84 88 00 99");
    assert_eq!(cell("Country code"), "+33");
    assert_eq!(cell("Roles"), "Agent");
    assert_eq!(cell("Teams"), "Support", "the team the role belongs to");
    assert_eq!(cell("Permissions"), "call_queues.answer");
    assert_eq!(cell("Language"), "fr");
    assert_eq!(cell("Time zone"), "Europe/Paris");
    assert_eq!(cell("Provisioned by"), "API");
    assert!(cell("Invited at").starts_with("20"), "{chloe:?}");
    assert_eq!(
        rows[1][1], "=SUM(A1)",
        "a value that looks like a formula stays text"
    );

    let (active, headers) = export(&platform, &format!("{base}/users/export?state=active")).await;
    assert_eq!(headers["x-user-count"], "1");
    assert_eq!(column(&active, "User ID"), ["chloe@northwind.example"]);
    let (prepared, _) = export(&platform, &format!("{base}/users/export?state=prepared")).await;
    assert_eq!(
        column(&prepared, "User ID"),
        ["+447700900123", "ann@northwind.example"]
    );
    assert_eq!(column(&prepared, "State"), ["Prepared", "Prepared"]);
    portal.stop().await;
}

async fn an_empty_account_exports_the_header_row_only(backend: Backend) {
    let portal = TestPortal::start(backend).await;
    let account = account_with_subscription(&portal).await;
    let (rows, headers) = export(
        &portal.platform(),
        &format!("/v1/accounts/{account}/users/export?state=prepared"),
    )
    .await;
    assert_eq!(rows, vec![HEADER.map(str::to_owned).to_vec()]);
    assert_eq!(headers["x-user-count"], "0");
    portal.stop().await;
}

async fn export_refusals_are_problems(backend: Backend) {
    let portal = TestPortal::start(backend).await;
    let platform = portal.platform();
    let account = account_with_subscription(&portal).await;
    let path = format!("/v1/accounts/{account}/users/export");
    let bad_state = platform
        .get(&format!("{path}?state=everyone"))
        .await
        .expect_problem(400, "malformed-request");
    assert!(
        bad_state.body["detail"]
            .as_str()
            .unwrap()
            .contains("everyone"),
        "{:#}",
        bad_state.body
    );
    platform
        .get(&format!("{path}?format=csv"))
        .await
        .expect_problem(400, "malformed-request");
    portal
        .anonymous()
        .get(&path)
        .await
        .expect_problem(401, "unauthenticated");
    // An admin who may not read the account's users is refused; one of another account does
    // not learn that the account exists.
    let (_, brand_key) = platform
        .admin_with_key(&account, "brand@northwind.example", &["BrandContributor"])
        .await;
    portal
        .api(&brand_key)
        .get(&path)
        .await
        .expect_problem(403, "forbidden");
    let other = platform
        .account(json!({ "type": "Partner", "displayName": "Elsewhere" }))
        .await;
    let (_, other_key) = platform
        .admin_with_key(&other, "owner@elsewhere.example", &["AccountOwner"])
        .await;
    portal
        .api(&other_key)
        .get(&path)
        .await
        .expect_problem(404, "not-found");
    portal.stop().await;
}
