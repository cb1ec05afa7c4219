//! What a run reports: a row per object, printed as a table or as the plan.

use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use crate::reconcile;

/// One row of the result.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub kind: String,
    pub name: String,
    pub phase: String,
    pub ready: String,
    pub message: String,
    /// What was (or would be) done in the portal.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    /// What is (or would be) changed in place in the portal.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub updates: Vec<String>,
    /// What waits on something outside the manifests (e.g. an invitee accepting).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waiting: Vec<String>,
    /// What removing an object no longer in the manifests does (or would do) in the portal.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removals: Vec<String>,
    /// The object as the operator would record it, status included, as compact JSON (a run
    /// of 10,000 objects keeps every row until the end; a `Value` each would be most of its
    /// memory). `None` for rows of objects no longer in the manifests.
    #[serde(skip)]
    pub object: Option<String>,
    /// Whether that object is Stalled (a spec the portal refused).
    #[serde(skip)]
    pub stalled: bool,
    /// Whether the row is of an object in the manifests (not one only an earlier apply made).
    #[serde(skip)]
    pub in_manifests: bool,
}

/// The outcome of a run.
pub struct Report {
    pub rows: Vec<Row>,
    /// Where links were written this run.
    pub links: Vec<(String, PathBuf, String)>,
    pub failures: usize,
    /// `status` only: per Account of the manifests, the users an identity provider
    /// provisioned there through SCIM (which no manifest describes).
    pub provisioned: Vec<ProvisionedUsers>,
}

/// Users of an account that an identity provider provisioned through SCIM.
pub struct ProvisionedUsers {
    pub account: String,
    /// Their user IDs, in order.
    pub user_ids: Vec<String>,
    pub waiting_for_license: usize,
}

/// The lines `status` adds about SCIM-provisioned users (empty when there are none).
pub fn provisioned_text(provisioned: &[ProvisionedUsers]) -> String {
    const SHOWN: usize = 5;
    let mut text = String::new();
    for account in provisioned.iter().filter(|a| !a.user_ids.is_empty()) {
        if text.is_empty() {
            text.push_str(
                "\nProvisioned through SCIM by an identity provider (not in these manifests):\n",
            );
        }
        let shown: Vec<&str> = account
            .user_ids
            .iter()
            .take(SHOWN)
            .map(String::as_str)
            .collect();
        let more = account.user_ids.len().saturating_sub(SHOWN);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        let waiting = match account.waiting_for_license {
            0 => String::new(),
            n => format!("; {n} waiting for a licence"),
        };
        text.push_str(&format!(
            "  {}: {} user(s): {}{more}{waiting}\n",
            account.account,
            account.user_ids.len(),
            shown.join(", ")
        ));
    }
    text
}

impl Report {
    /// Objects whose portal side changes (or would): made, changed or removed.
    pub fn changed(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| !r.changes.is_empty() || !r.updates.is_empty() || !r.removals.is_empty())
            .count()
    }

    /// Objects in the manifests (rows for objects no longer in them aside).
    pub fn in_manifests(&self) -> usize {
        self.rows.iter().filter(|r| r.in_manifests).count()
    }
}

/// The table: KIND, NAME, PHASE, READY, MESSAGE. On a terminal `width` columns wide, long
/// messages are cut to fit (with `…`); piped or redirected (`width` none), nothing is cut.
pub fn table(rows: &[Row], width: Option<usize>) -> String {
    let headers = ["KIND", "NAME", "PHASE", "READY", "MESSAGE"];
    let mut cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.kind.clone(),
                r.name.clone(),
                r.phase.clone(),
                r.ready.clone(),
                r.message.replace('\n', " "),
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in &cells {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    if let Some(width) = width {
        let before: usize = widths[..4].iter().map(|w| w + 2).sum();
        let room = width.saturating_sub(before).max(40);
        for row in &mut cells {
            if row[4].chars().count() > room {
                row[4] = row[4].chars().take(room - 1).collect::<String>() + "…";
            }
        }
    }
    let line = |cells: [&str; 5]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i == 4 {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        text.trim_end().to_owned() + "\n"
    };
    let mut text = line(headers);
    for row in &cells {
        text.push_str(&line([&row[0], &row[1], &row[2], &row[3], &row[4]]));
    }
    text
}

/// The plan, object by object: what `diff` prints.
pub fn plan_text(rows: &[Row]) -> String {
    let mut text = String::new();
    for row in rows.iter().filter(|r| {
        !r.changes.is_empty()
            || !r.updates.is_empty()
            || !r.waiting.is_empty()
            || !r.removals.is_empty()
    }) {
        text.push_str(&format!("{} {}\n", row.kind, row.name));
        for change in &row.changes {
            text.push_str(&format!("  + {change}\n"));
        }
        for update in &row.updates {
            text.push_str(&format!("  ~ {update}\n"));
        }
        for removal in &row.removals {
            text.push_str(&format!("  - {removal}\n"));
        }
        for waiting in &row.waiting {
            text.push_str(&format!("  … {waiting} (no change until then)\n"));
        }
    }
    text
}

/// Whether an object (as recorded) is Stalled: a spec the portal refused.
pub fn is_stalled(object: &Value) -> bool {
    object["status"]["conditions"]
        .as_array()
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c["type"] == reconcile::STALLED && c["status"] == "True")
        })
}
