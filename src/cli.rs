//! The `portal-operator` command line.

use std::io::Write;

use clap::{Parser, Subcommand, ValueEnum};

use crate::domain::{Account, AccountTree, Grant, ImplicationScope, Role, effective_access};

/// Declarative admin access for multi-tenant telephony admin portals.
///
/// Accounts, admin invitations, role bindings and account managers are written as Kubernetes
/// custom resources and reconciled against the portal's HTTP API.
#[derive(Debug, Parser)]
#[command(name = "portal-operator", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the admin role catalog: what each role implies and the permissions it grants.
    Roles(RolesArgs),
}

#[derive(Debug, clap::Args)]
pub struct RolesArgs {
    /// Show one role in full: every permission it grants on the account it is granted on and on
    /// the client accounts below it, and the path that gives each.
    pub role: Option<Role>,

    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table, env = "PORTAL_OUTPUT")]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

impl Cli {
    pub fn run(self, out: &mut impl Write) -> anyhow::Result<()> {
        match self.command {
            Command::Roles(args) => roles(args, out),
        }
    }
}

fn roles(args: RolesArgs, out: &mut impl Write) -> anyhow::Result<()> {
    match (args.role, args.output) {
        (None, Output::Json) => {
            serde_json::to_writer_pretty(&mut *out, crate::domain::CATALOG)?;
            writeln!(out)?;
        }
        (None, Output::Table) => {
            writeln!(out, "{:<24} {:<48} PERMISSIONS", "ROLE", "IMPLIES")?;
            for spec in crate::domain::CATALOG {
                let implies: Vec<String> = spec
                    .implies
                    .iter()
                    .map(|i| match i.scope {
                        ImplicationScope::Everywhere => i.role.to_string(),
                        ImplicationScope::ChildAccountsOnly => {
                            format!("{} (child accounts only)", i.role)
                        }
                    })
                    .collect();
                let implies = if implies.is_empty() {
                    "-".to_owned()
                } else {
                    implies.join(", ")
                };
                let permissions: Vec<&str> = spec.permissions.iter().map(|p| p.as_str()).collect();
                writeln!(
                    out,
                    "{:<24} {:<48} {}",
                    spec.role,
                    implies,
                    permissions.join(" ")
                )?;
            }
        }
        (Some(role), output) => {
            // A partner with one client with no sub-contract shows the seeds' rules at work:
            // child-only implications and roles that do not function on such a client.
            let tree = AccountTree::new([
                Account::partner("partner"),
                Account::client("client", "partner"),
            ])
            .expect("a partner with one client is a valid tree");
            let grants = [Grant::new("admin", "partner", role)];
            let views = ["partner", "client"].map(|account| {
                effective_access(&grants, &tree, &"admin".into(), &account.into())
                    .expect("both accounts are in the tree")
            });
            if output == Output::Json {
                serde_json::to_writer_pretty(&mut *out, &views)?;
                writeln!(out)?;
                return Ok(());
            }
            writeln!(out, "{role} granted on a partner account:")?;
            for (view, label) in views
                .iter()
                .zip(["on the partner", "on a client below it (no sub-contract)"])
            {
                writeln!(out, "\n  {label}:")?;
                if view.permissions.is_empty() {
                    writeln!(out, "    (nothing)")?;
                }
                for (permission, paths) in &view.permissions {
                    writeln!(out, "    {:<30} via {}", permission.as_str(), paths[0])?;
                }
                for inert in &view.inert {
                    writeln!(out, "    inert: {}", inert.reason)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> String {
        let cli =
            Cli::try_parse_from(std::iter::once("portal-operator").chain(args.iter().copied()))
                .unwrap();
        let mut out = Vec::new();
        cli.run(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn roles_table_lists_every_role() {
        let table = run(&["roles"]);
        for role in Role::ALL {
            assert!(
                table.contains(role.as_str()),
                "{role} missing from\n{table}"
            );
        }
        assert!(
            table.contains("AccountOwner (child accounts only)"),
            "{table}"
        );
    }

    #[test]
    fn one_role_shows_child_only_owner_and_inert_subscription_roles() {
        let text = run(&["roles", "SubscriptionContributor"]);
        let (partner, client) = text.split_once("on a client below it").unwrap();
        assert!(partner.contains("subscriptions.write"), "{text}");
        assert!(!partner.contains("api_keys.write"), "{text}");
        assert!(client.contains("api_keys.write"), "{text}");
        assert!(
            client.contains("inert: SubscriptionContributor does not function"),
            "{text}"
        );
    }

    #[test]
    fn roles_json_is_the_catalog() {
        let json: serde_json::Value =
            serde_json::from_str(&run(&["roles", "--output", "json"])).unwrap();
        assert_eq!(json.as_array().map(Vec::len), Some(Role::ALL.len()));
        assert_eq!(json[1]["implies"][1]["scope"], "ChildAccountsOnly");
    }

    #[test]
    fn unknown_role_is_a_usage_error() {
        let error = Cli::try_parse_from(["portal-operator", "roles", "Owner"]).unwrap_err();
        assert!(error.to_string().contains("unknown role"), "{error}");
    }
}
