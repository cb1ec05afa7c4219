//! A folder of manifests as the converge driver's host: Accounts as this run left them (or as
//! an earlier apply recorded them), links in 0600 files under `links/`, the system clock; and
//! what each kind shows in the table beyond its outcome.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kube::ResourceExt;

use super::state::write_private;
use crate::api::time::{Clock, SystemClock};
use crate::controller::Managed;
use crate::crd::{
    Account, AccountManager, AdminInvitation, RoleBinding, Subscription, Team, User, UserRole,
};
use crate::reconcile::driver::{Host, Kind};
use crate::reconcile::{Outcome, refs};

pub(super) struct Folder<'a> {
    /// Whether plans are carried out (`apply`) or only shown (`diff`, `status`).
    pub(super) acts: bool,
    pub(super) state_dir: &'a Path,
    /// The Accounts of this run with the status they reached, as the rest of the run sees them.
    pub(super) accounts: BTreeMap<String, Arc<Account>>,
    /// Portal ids an earlier apply recorded, by Account name (for cleanup of what an Account no
    /// longer in the manifests made).
    pub(super) recorded_portal_ids: BTreeMap<String, String>,
    /// Links written this run: (namespace/name, file, link).
    pub(super) links: Mutex<Vec<(String, PathBuf, String)>>,
}

impl Folder<'_> {
    fn link_file<K: Kind>(&self, object: &K) -> PathBuf {
        self.state_dir
            .join("links")
            .join(object.namespace().unwrap_or_default())
            .join(format!("{}.link", object.name_any()))
    }
}

impl Host for Folder<'_> {
    type Error = std::io::Error;

    fn now_millis(&self) -> i64 {
        SystemClock.now_millis()
    }

    fn acts(&self) -> bool {
        self.acts
    }

    fn account(&self, name: &str) -> Option<Arc<Account>> {
        self.accounts.get(name).cloned()
    }

    fn account_portal_id(&self, name: &str) -> Option<String> {
        refs::portal_id(self.accounts.get(name).map(Arc::as_ref))
            .or_else(|| self.recorded_portal_ids.get(name).cloned())
    }

    async fn link_stored<K: Kind>(&self, object: &K) -> std::io::Result<bool> {
        self.link_file(object).try_exists()
    }

    async fn store_link<K: Kind>(&self, object: &K, link: &str) -> std::io::Result<()> {
        let file = self.link_file(object);
        std::fs::create_dir_all(file.parent().expect("a link file has a folder"))?;
        write_private(&file, link)?;
        let name = format!(
            "{}/{}",
            object.namespace().unwrap_or_default(),
            object.name_any()
        );
        self.links
            .lock()
            .expect("links")
            .push((name, file, link.to_owned()));
        Ok(())
    }

    async fn forget_link<K: Kind>(&self, object: &K) -> std::io::Result<()> {
        match std::fs::remove_file(self.link_file(object)) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }
}

/// What a kind shows in the table and the plan beyond its outcome.
pub(super) trait Shown: Managed {
    /// The PHASE column, where the status names one.
    fn phase(status: &<Self as Kind>::Status, outcome: &Outcome) -> Option<String>;
    /// The PHASE of an object `diff` would change that the portal does not have yet.
    const NOT_MADE: &'static str;
    /// What the object asks for, said before what it needs exists ("invite ann@…").
    fn intent(&self) -> String;
}

impl Shown for Account {
    fn phase(status: &crate::crd::AccountStatus, outcome: &Outcome) -> Option<String> {
        (status.portal_id.is_some() && matches!(outcome, Outcome::Ready { .. }))
            .then(|| "Ready".to_owned())
    }
    const NOT_MADE: &'static str = "NotCreated";
    fn intent(&self) -> String {
        format!(
            "create {:?} account {:?} under {}",
            self.spec.account_type,
            self.spec.display_name,
            self.spec
                .parent_ref
                .as_ref()
                .map(|p| p.name.as_str())
                .unwrap_or_default()
        )
    }
}

impl Shown for AdminInvitation {
    /// The phase, and what went wrong while in it (a pending invitation whose last attempt to
    /// accept failed: `Pending (WrongTenant)`).
    fn phase(status: &crate::crd::AdminInvitationStatus, outcome: &Outcome) -> Option<String> {
        let reason = outcome.reason();
        status.phase.map(|phase| {
            let phase = format!("{phase:?}");
            if *reason == phase {
                phase
            } else {
                format!("{phase} ({reason})")
            }
        })
    }
    const NOT_MADE: &'static str = "NotSent";
    fn intent(&self) -> String {
        format!("invite {}", self.spec.email)
    }
}

impl Shown for RoleBinding {
    fn phase(_status: &crate::crd::RoleBindingStatus, _outcome: &Outcome) -> Option<String> {
        None
    }
    const NOT_MADE: &'static str = "NotGranted";
    fn intent(&self) -> String {
        format!(
            "grant {}",
            self.spec
                .roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

impl Shown for Subscription {
    fn phase(_status: &crate::crd::SubscriptionStatus, _outcome: &Outcome) -> Option<String> {
        None
    }
    const NOT_MADE: &'static str = "NotCreated";
    fn intent(&self) -> String {
        format!(
            "create a {} subscription of {} licences",
            self.spec.license_type, self.spec.quantity
        )
    }
}

impl Shown for UserRole {
    fn phase(_status: &crate::crd::UserRoleStatus, _outcome: &Outcome) -> Option<String> {
        None
    }
    const NOT_MADE: &'static str = "NotCreated";
    fn intent(&self) -> String {
        format!("create user role {}", self.spec.display_name)
    }
}

impl Shown for Team {
    fn phase(_status: &crate::crd::TeamStatus, _outcome: &Outcome) -> Option<String> {
        None
    }
    const NOT_MADE: &'static str = "NotCreated";
    fn intent(&self) -> String {
        format!("create team {}", self.spec.display_name)
    }
}

impl Shown for User {
    /// The phase, or why the user is not in the portal yet (`LicenseExhausted`).
    fn phase(status: &crate::crd::UserStatus, outcome: &Outcome) -> Option<String> {
        match status.phase {
            Some(phase) => Some(format!("{phase:?}")),
            None => status
                .license
                .as_ref()
                .filter(|l| !l.assigned)
                .map(|_| outcome.reason().to_owned()),
        }
    }
    const NOT_MADE: &'static str = "NotCreated";
    fn intent(&self) -> String {
        format!("create user {}", self.spec.user_id)
    }
}

impl Shown for AccountManager {
    fn phase(status: &crate::crd::AccountManagerStatus, _outcome: &Outcome) -> Option<String> {
        status.phase.map(|phase| format!("{phase:?}"))
    }
    const NOT_MADE: &'static str = "NotCreated";
    fn intent(&self) -> String {
        format!("create account manager {}", self.spec.email)
    }
}
