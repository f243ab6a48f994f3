//! The access matrix, generated from the schema: every root query, mutation
//! and subscription field is called as anonymous, user, moderator and admin
//! with well-typed dummy arguments, and the outcome is compared with the one
//! table below. A field without a row (or a row without a field) fails the
//! test, so every new field has its access rule written down.
//!
//! "Allowed" means the call got past authorisation: it may still fail for
//! other reasons (the dummy ids do not exist), but never with
//! `UNAUTHENTICATED` or `FORBIDDEN`. "Denied" means exactly one of those two.

use std::collections::{BTreeMap, BTreeSet};

use async_graphql::parser::types::{BaseType, Type, TypeKind, TypeSystemDefinition};
use futures_util::{FutureExt as _, StreamExt as _};
use serde_json::{Value, json};

use crate::common::TestApp;

/// The least role that may call a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Min {
    Anonymous,
    User,
    Moderator,
    Admin,
}

use Min::{Admin, Anonymous, Moderator, User};

/// The matrix: `Root.field` and the least role allowed to call it.
/// Add a row here for every new root field.
const RULES: &[(&str, Min)] = &[
    // Queries.
    ("Query.me", User),
    ("Query.users", Admin),
    ("Query.user", Moderator),
    ("Query.apiKeys", User),
    ("Query.event", User),
    ("Query.events", User),
    ("Query.metrics", User),
    ("Query.metricNames", User),
    ("Query.metricSeries", User),
    ("Query.alertRules", User),
    ("Query.alertRule", User),
    ("Query.alerts", User),
    ("Query.alert", User),
    ("Query.alertHistory", User),
    ("Query.silences", User),
    ("Query.previewAlertRule", User),
    ("Query.incidents", User),
    ("Query.incident", User),
    ("Query.tasks", Moderator),
    ("Query.task", Moderator),
    ("Query.taskStats", Moderator),
    ("Query.monitoringStats", Moderator),
    // Mutations.
    ("Mutation.login", Anonymous),
    ("Mutation.logout", User),
    ("Mutation.logoutAll", User),
    ("Mutation.changePassword", User),
    ("Mutation.createUser", Admin),
    ("Mutation.setUserRole", Admin),
    ("Mutation.deactivateUser", Admin),
    ("Mutation.reactivateUser", Admin),
    ("Mutation.forcePasswordReset", Moderator),
    ("Mutation.createApiKey", User),
    ("Mutation.revokeApiKey", User),
    ("Mutation.createEvent", User),
    ("Mutation.createEvents", User),
    ("Mutation.submitMetric", User),
    ("Mutation.submitMetrics", User),
    ("Mutation.createAlertRule", Moderator),
    ("Mutation.updateAlertRule", Moderator),
    ("Mutation.deleteAlertRule", Moderator),
    ("Mutation.setAlertRuleEnabled", Moderator),
    ("Mutation.createSilence", Moderator),
    ("Mutation.expireSilence", Moderator),
    ("Mutation.acknowledgeAlert", User),
    ("Mutation.createIncident", User),
    ("Mutation.updateIncident", User),
    ("Mutation.assignIncident", User),
    ("Mutation.acknowledgeIncident", User),
    ("Mutation.resolveIncident", User),
    ("Mutation.closeIncident", User),
    ("Mutation.reopenIncident", User),
    ("Mutation.addIncidentNote", User),
    ("Mutation.updateIncidentNote", User),
    ("Mutation.deleteIncidentNote", User),
    ("Mutation.analyzeIncident", User),
    ("Mutation.enqueueTask", Moderator),
    ("Mutation.retryTask", Moderator),
    ("Mutation.cancelTask", Moderator),
    // Subscriptions.
    ("Subscription.eventCreated", User),
    ("Subscription.alertStateChanged", User),
    ("Subscription.incidentCreated", User),
    ("Subscription.incidentUpdated", User),
];

/// A root field: its name, its required arguments and its type.
type RootField = (String, Vec<(String, Type)>, Type);

/// The schema's definitions, by type name.
struct Sdl {
    types: BTreeMap<String, TypeKind>,
}

impl Sdl {
    fn load() -> Sdl {
        let doc = async_graphql::parser::parse_schema(sightline::graphql::export_sdl())
            .expect("the exported SDL parses");
        let mut types = BTreeMap::new();
        for def in doc.definitions {
            if let TypeSystemDefinition::Type(t) = def {
                types.insert(t.node.name.node.to_string(), t.node.kind);
            }
        }
        Sdl { types }
    }

    /// `(field, [(argument, type)], return type)` of a root type.
    fn root_fields(&self, root: &str) -> Vec<RootField> {
        let Some(TypeKind::Object(obj)) = self.types.get(root) else {
            return Vec::new();
        };
        obj.fields
            .iter()
            .map(|f| {
                let args = f
                    .node
                    .arguments
                    .iter()
                    // Only required arguments; the rest keep their defaults.
                    .filter(|a| !a.node.ty.node.nullable && a.node.default_value.is_none())
                    .map(|a| (a.node.name.node.to_string(), a.node.ty.node.clone()))
                    .collect();
                (f.node.name.node.to_string(), args, f.node.ty.node.clone())
            })
            .collect()
    }

    /// A well-typed dummy value: random ids, short strings, the first enum
    /// value, required input fields only.
    fn dummy(&self, ty: &Type, field: &str) -> Value {
        match &ty.base {
            BaseType::List(inner) => json!([self.dummy(inner, field)]),
            BaseType::Named(name) => match name.as_str() {
                "ID" => json!(uuid::Uuid::new_v4().to_string()),
                "String" => json!(format!("rbac-{field}")),
                "Int" => json!(1),
                "Float" => json!(1.0),
                "Boolean" => json!(false),
                "DateTime" => json!((chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()),
                "JSON" => json!({}),
                other => match self.types.get(other) {
                    Some(TypeKind::Enum(e)) => json!(e.values[0].node.value.node.to_string()),
                    Some(TypeKind::InputObject(io)) => {
                        let mut map = serde_json::Map::new();
                        for f in &io.fields {
                            if !f.node.ty.node.nullable && f.node.default_value.is_none() {
                                let name = f.node.name.node.to_string();
                                map.insert(name.clone(), self.dummy(&f.node.ty.node, &name));
                            }
                        }
                        Value::Object(map)
                    }
                    _ => panic!("no dummy value for type {other}"),
                },
            },
        }
    }

    fn is_composite(&self, ty: &Type) -> bool {
        match &ty.base {
            BaseType::List(inner) => self.is_composite(inner),
            BaseType::Named(name) => matches!(
                self.types.get(name.as_str()),
                Some(TypeKind::Object(_) | TypeKind::Interface(_) | TypeKind::Union(_))
            ),
        }
    }

    /// The document and variables calling one root field.
    fn call(
        &self,
        root: &str,
        field: &str,
        args: &[(String, Type)],
        ret: &Type,
    ) -> (String, Value) {
        let op = match root {
            "Query" => "query",
            "Mutation" => "mutation",
            _ => "subscription",
        };
        let decls: Vec<String> = args.iter().map(|(a, t)| format!("${a}: {t}")).collect();
        let uses: Vec<String> = args.iter().map(|(a, _)| format!("{a}: ${a}")).collect();
        let mut vars = serde_json::Map::new();
        for (a, t) in args {
            vars.insert(a.clone(), self.dummy(t, a));
        }
        let decls = if decls.is_empty() {
            String::new()
        } else {
            format!("({})", decls.join(", "))
        };
        let uses = if uses.is_empty() {
            String::new()
        } else {
            format!("({})", uses.join(", "))
        };
        let selection = if self.is_composite(ret) {
            " { __typename }"
        } else {
            ""
        };
        (
            format!("{op} RbacCheck{decls} {{ {field}{uses}{selection} }}"),
            Value::Object(vars),
        )
    }
}

/// Whether an answer was refused by authorisation.
fn denied(errors: &[Value]) -> bool {
    errors.iter().any(|e| {
        matches!(
            e["extensions"]["code"].as_str(),
            Some("UNAUTHENTICATED" | "FORBIDDEN")
        )
    })
}

const ROLES: [Min; 4] = [Anonymous, User, Moderator, Admin];

#[test]
fn every_root_field_has_exactly_one_rule() {
    let sdl = Sdl::load();
    let mut fields = BTreeSet::new();
    for root in ["Query", "Mutation", "Subscription"] {
        for (name, _, _) in sdl.root_fields(root) {
            fields.insert(format!("{root}.{name}"));
        }
    }
    let mut rows = BTreeSet::new();
    for (name, _) in RULES {
        assert!(rows.insert(name.to_string()), "{name} has two rows");
    }
    let missing: Vec<_> = fields.difference(&rows).collect();
    let stale: Vec<_> = rows.difference(&fields).collect();
    assert!(
        missing.is_empty(),
        "root fields without an access rule in tests/api/rbac.rs RULES: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "rules for fields that do not exist: {stale:?}"
    );
}

#[tokio::test]
async fn every_root_field_admits_exactly_the_roles_in_the_table() {
    let sdl = Sdl::load();
    let rules: BTreeMap<&str, Min> = RULES.iter().copied().collect();
    let app = TestApp::spawn().await;
    let user = app.create_user("USER").await;
    let moderator = app.create_user("MODERATOR").await;
    let schema = sightline::graphql::build_schema(app.state.clone());
    let limits = sightline::graphql::Limits::from_config(&app.state.config);

    let mut wrong = Vec::new();
    let mut checked = 0;
    for root in ["Query", "Mutation", "Subscription"] {
        for (field, args, ret) in sdl.root_fields(root) {
            let key = format!("{root}.{field}");
            let Some(min) = rules.get(key.as_str()).copied() else {
                continue; // reported by the other test
            };
            let (doc, vars) = sdl.call(root, &field, &args, &ret);
            for role in ROLES {
                // A fresh session per call: a call may end its own session
                // (logout, logoutAll) or change the caller.
                let token = match role {
                    Anonymous => None,
                    User => Some(app.login(&user.username, &user.password).await),
                    Moderator => Some(app.login(&moderator.username, &moderator.password).await),
                    Admin => Some(app.login("admin", crate::common::ADMIN_PASSWORD).await),
                };
                let errors: Vec<Value> = if root == "Subscription" {
                    let header = token.as_ref().map(|t| format!("Bearer {t}"));
                    let auth = sightline::auth::service::authenticate_header(
                        &app.state,
                        header.as_deref(),
                    )
                    .await
                    .expect("authenticate");
                    let ctx = sightline::auth::RequestContext::internal(auth);
                    let request = async_graphql::Request::new(doc.clone())
                        .variables(async_graphql::Variables::from_json(vars.clone()));
                    let request = sightline::graphql::prepare_request(request, &app.state, ctx);
                    let mut stream = sightline::graphql::execute_stream(&schema, &limits, request);
                    // Authorisation is decided on the first poll, without
                    // waiting for data; a stream still waiting was admitted.
                    let mut first = None;
                    for _ in 0..100 {
                        if let Some(item) = stream.next().now_or_never() {
                            first = item;
                            break;
                        }
                        tokio::task::yield_now().await;
                    }
                    match first {
                        Some(resp) => {
                            let v = serde_json::to_value(&resp).unwrap();
                            v["errors"].as_array().cloned().unwrap_or_default()
                        }
                        None => Vec::new(),
                    }
                } else {
                    let v = app.gql(token.as_deref(), &doc, vars.clone()).await;
                    v["errors"].as_array().cloned().unwrap_or_default()
                };
                checked += 1;
                let expect_denied = role < min;
                if denied(&errors) != expect_denied {
                    wrong.push(format!(
                        "{key} as {role:?}: expected {}, got {}",
                        if expect_denied { "denied" } else { "allowed" },
                        if errors.is_empty() {
                            "no error".to_owned()
                        } else {
                            Value::Array(errors.clone()).to_string()
                        }
                    ));
                }
            }
        }
    }
    assert!(checked >= RULES.len() * 4);
    assert!(
        wrong.is_empty(),
        "access matrix mismatches:\n{}",
        wrong.join("\n")
    );
}
