//! The resources the double serves: custom resources from CRD documents, and a few built-in
//! kinds the operator uses (Secrets, Namespaces, Leases, Events).

use serde_json::{Value, json};

/// One served resource (one group/version/plural).
#[derive(Debug, Clone)]
pub struct Resource {
    /// "" for the core group.
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    pub status_subresource: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// `openAPIV3Schema` of a custom resource; built-ins are not validated. Shared: a request
    /// takes its own copy of the resource, and a deep copy of the schema per request was most
    /// of the double's copying.
    pub schema: Option<std::sync::Arc<Value>>,
    pub custom: bool,
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    fn builtin(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> Resource {
        Resource {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            singular: kind.to_ascii_lowercase(),
            kind: kind.into(),
            list_kind: format!("{kind}List"),
            namespaced,
            status_subresource: plural == "namespaces",
            short_names: if plural == "namespaces" {
                vec!["ns".into()]
            } else {
                vec![]
            },
            categories: vec![],
            schema: None,
            custom: false,
        }
    }

    pub fn builtins() -> Vec<Resource> {
        vec![
            Resource::builtin("", "v1", "namespaces", "Namespace", false),
            Resource::builtin("", "v1", "secrets", "Secret", true),
            Resource::builtin("coordination.k8s.io", "v1", "leases", "Lease", true),
            Resource::builtin("events.k8s.io", "v1", "events", "Event", true),
        ]
    }

    /// The resources of one CustomResourceDefinition document (one per served version).
    pub fn from_crd(crd: &Value) -> Result<Vec<Resource>, String> {
        let spec = crd.get("spec").ok_or("a CRD needs a spec")?;
        let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
        let group = text(spec, "group").ok_or("spec.group is required")?;
        let names = spec.get("names").ok_or("spec.names is required")?;
        let plural = text(names, "plural").ok_or("spec.names.plural is required")?;
        let kind = text(names, "kind").ok_or("spec.names.kind is required")?;
        let singular = text(names, "singular").unwrap_or_else(|| kind.to_ascii_lowercase());
        let list_kind = text(names, "listKind").unwrap_or_else(|| format!("{kind}List"));
        let strings = |key: &str| -> Vec<String> {
            names
                .get(key)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let namespaced = text(spec, "scope").as_deref() != Some("Cluster");
        let versions = spec
            .get("versions")
            .and_then(Value::as_array)
            .ok_or("spec.versions is required")?;
        let mut resources = Vec::new();
        for version in versions {
            if version.get("served").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            resources.push(Resource {
                group: group.clone(),
                version: text(version, "name").ok_or("spec.versions[].name is required")?,
                plural: plural.clone(),
                singular: singular.clone(),
                kind: kind.clone(),
                list_kind: list_kind.clone(),
                namespaced,
                status_subresource: version.pointer("/subresources/status").is_some(),
                short_names: strings("shortNames"),
                categories: strings("categories"),
                schema: version
                    .pointer("/schema/openAPIV3Schema")
                    .cloned()
                    .map(std::sync::Arc::new),
                custom: true,
            });
        }
        Ok(resources)
    }

    /// This resource's entry in an APIResourceList.
    pub fn discovery_entry(&self) -> Vec<Value> {
        let verbs = json!([
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch"
        ]);
        let mut entries = vec![json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": verbs,
            "shortNames": self.short_names,
            "categories": self.categories,
        })];
        if self.status_subresource {
            entries.push(json!({
                "name": format!("{}/status", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        entries
    }
}
