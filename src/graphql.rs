//! The GraphQL schema, assembled in one place from the domains' parts, with
//! the limits that keep hostile queries cheap.
//!
//! [`build_schema_bare`] needs no database and is what `export-schema` and the
//! drift test use; [`build_schema`] adds the app state for serving.

use std::future::Future;
use std::sync::Arc;

use async_graphql::dataloader::DataLoader;
use async_graphql::futures_util::future::BoxFuture;
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, Selection, SelectionSet,
};
use async_graphql::{
    Context, ID, MergedObject, MergedSubscription, Object, Response, Schema, SchemaBuilder,
    ServerError,
};
use uuid::Uuid;

use crate::alerts::graphql::{AlertMutation, AlertQuery, AlertSubscription};
use crate::auth::graphql::{AuthMutation, AuthQuery};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::events::graphql::{EventMutation, EventQuery, EventSubscription};
use crate::incidents::graphql::{IncidentMutation, IncidentQuery, IncidentSubscription};
use crate::metrics::graphql::{MetricMutation, MetricQuery};
use crate::state::AppState;
use crate::stats::graphql::StatsQuery;
use crate::tasks::graphql::{TaskMutation, TaskQuery};

/// The root query type.
#[derive(MergedObject, Default)]
pub struct Query(
    AuthQuery,
    EventQuery,
    MetricQuery,
    AlertQuery,
    IncidentQuery,
    TaskQuery,
    StatsQuery,
);

/// The root mutation type.
#[derive(MergedObject, Default)]
pub struct Mutation(
    AuthMutation,
    EventMutation,
    MetricMutation,
    AlertMutation,
    IncidentMutation,
    TaskMutation,
);

/// The root subscription type.
#[derive(MergedSubscription, Default)]
pub struct Subscription(EventSubscription, AlertSubscription, IncidentSubscription);

/// The schema type.
pub type AppSchema = Schema<Query, Mutation, Subscription>;

/// Limits applied to every document.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deepest nesting.
    pub max_depth: usize,
    /// Highest complexity.
    pub max_complexity: usize,
    /// Most aliased fields in one document.
    pub max_aliases: usize,
    /// Most root fields in one operation.
    pub max_root_fields: usize,
    /// Whether introspection is allowed.
    pub introspection: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 15,
            max_complexity: 20_000,
            max_aliases: 30,
            max_root_fields: 20,
            introspection: true,
        }
    }
}

/// The schema without runtime data: for SDL export and tests.
pub fn build_schema_bare() -> SchemaBuilder<Query, Mutation, Subscription> {
    build_with_limits(Limits::default())
}

fn build_with_limits(limits: Limits) -> SchemaBuilder<Query, Mutation, Subscription> {
    let mut builder = Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .limit_depth(limits.max_depth)
    .limit_complexity(limits.max_complexity)
    .limit_recursive_depth(64)
    .limit_directives(16);
    if !limits.introspection {
        builder = builder.disable_introspection();
    }
    builder
}

/// The schema for serving, with the app state attached.
pub fn build_schema(state: AppState) -> AppSchema {
    let limits = Limits::from_config(&state.config);
    build_with_limits(limits).data(state).finish()
}

impl Limits {
    /// The limits a configuration sets.
    pub fn from_config(c: &crate::config::Config) -> Limits {
        Limits {
            max_depth: c.graphql_max_depth,
            max_complexity: c.graphql_max_complexity,
            max_aliases: c.graphql_max_aliases,
            max_root_fields: c.graphql_max_root_fields,
            introspection: c.graphql_introspection,
        }
    }
}

/// Executes a request after the document checks of [`check_document`].
pub async fn execute(
    schema: &AppSchema,
    limits: &Limits,
    mut request: async_graphql::Request,
) -> Response {
    if let Err(e) = check_document(limits, &mut request) {
        return Response::from_errors(vec![e]);
    }
    schema.execute(request).await
}

/// Streams a subscription (or any operation) after the document checks of
/// [`check_document`].
pub fn execute_stream(
    schema: &AppSchema,
    limits: &Limits,
    mut request: async_graphql::Request,
) -> futures_util::stream::BoxStream<'static, Response> {
    use futures_util::StreamExt;
    if let Err(e) = check_document(limits, &mut request) {
        return futures_util::stream::once(async move { Response::from_errors(vec![e]) }).boxed();
    }
    schema.execute_stream(request).boxed()
}

/// The SDL as written to `schema.graphql`.
pub fn export_sdl() -> String {
    let sdl = build_schema_bare().finish().sdl();
    format!("{}\n", sdl.trim_end())
}

/// Adds the per-request data every resolver may use: the caller and a fresh
/// set of DataLoaders (so caches never outlive a request).
pub fn prepare_request(
    request: async_graphql::Request,
    state: &AppState,
    ctx: crate::auth::RequestContext,
) -> async_graphql::Request {
    let request = crate::incidents::loader::attach(request, &state.db);
    let request = crate::alerts::loader::attach(request, &state.db);
    request.data(ctx).data(DataLoader::new(
        crate::auth::loader::UserLoader::new(state.db.clone()),
        tokio::spawn,
    ))
}

/// Gives every error a code: errors raised by our resolvers carry one
/// already; the rest come from parsing, validation or input coercion and are
/// the client's to fix.
pub fn normalize_errors(response: &mut Response) {
    for error in &mut response.errors {
        let has_code = error
            .extensions
            .as_ref()
            .is_some_and(|e| e.get("code").is_some());
        if !has_code {
            error
                .extensions
                .get_or_insert_with(Default::default)
                .set("code", ErrorCode::BadUserInput.as_str());
        }
    }
}

/// Parses a GraphQL `ID` holding a UUID.
pub fn parse_id(field: &str, id: &ID) -> AppResult<Uuid> {
    Uuid::parse_str(id.as_str())
        .map_err(|_| AppError::bad_input(field, format!("{field} is not a valid id")))
}

type CountFn = dyn Fn(AppState) -> BoxFuture<'static, AppResult<u64>> + Send + Sync;

/// The `totalCount` of a connection, computed only when a client asks for it.
pub struct TotalCount(Arc<CountFn>);

impl TotalCount {
    /// A count computed by `f` on demand.
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: Fn(AppState) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = AppResult<u64>> + Send + 'static,
    {
        TotalCount(Arc::new(move |s| Box::pin(f(s))))
    }
}

#[Object]
impl TotalCount {
    /// How many items match, ignoring pagination (computed only when selected).
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<u64> {
        let state = ctx.data_unchecked::<AppState>().clone();
        Ok((self.0)(state).await?)
    }
}

fn introspects(set: &SelectionSet, doc: &ExecutableDocument, depth: usize) -> bool {
    depth <= 8
        && set.items.iter().any(|item| match &item.node {
            Selection::Field(f) => matches!(f.node.name.node.as_str(), "__schema" | "__type"),
            Selection::InlineFragment(f) => introspects(&f.node.selection_set.node, doc, depth + 1),
            Selection::FragmentSpread(s) => doc
                .fragments
                .get(&s.node.fragment_name.node)
                .is_some_and(|f| introspects(&f.node.selection_set.node, doc, depth + 1)),
        })
}

fn count_aliases(set: &SelectionSet) -> usize {
    set.items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(f) => {
                usize::from(f.node.alias.is_some()) + count_aliases(&f.node.selection_set.node)
            }
            Selection::InlineFragment(f) => count_aliases(&f.node.selection_set.node),
            Selection::FragmentSpread(_) => 0,
        })
        .sum()
}

fn count_root_fields(set: &SelectionSet, doc: &ExecutableDocument, depth: usize) -> usize {
    if depth > 8 {
        return 0;
    }
    set.items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(_) => 1,
            Selection::InlineFragment(f) => {
                count_root_fields(&f.node.selection_set.node, doc, depth + 1)
            }
            Selection::FragmentSpread(s) => doc
                .fragments
                .get(&s.node.fragment_name.node)
                .map(|f| count_root_fields(&f.node.selection_set.node, doc, depth + 1))
                .unwrap_or(0),
        })
        .sum()
}

fn limit_error(message: String) -> ServerError {
    let mut e = ServerError::new(message, None);
    e.extensions
        .get_or_insert_with(Default::default)
        .set("code", ErrorCode::BadUserInput.as_str());
    e
}

/// Refuses documents with too many aliases or root fields (and, when
/// introspection is off, documents that introspect) before execution. The
/// document is parsed here once and kept in the request for execution. This
/// is deliberately not an async-graphql extension: with any extension
/// installed, async-graphql resolves every field of every response on a
/// slower path (measured at about a third of the time of a 100-event page).
/// Unparseable documents pass, and execution reports the syntax error.
pub fn check_document(
    limits: &Limits,
    request: &mut async_graphql::Request,
) -> Result<(), ServerError> {
    let Ok(doc) = request.parsed_query() else {
        return Ok(());
    };
    let operations: Vec<&SelectionSet> = match &doc.operations {
        DocumentOperations::Single(op) => vec![&op.node.selection_set.node],
        DocumentOperations::Multiple(ops) => {
            ops.values().map(|op| &op.node.selection_set.node).collect()
        }
    };
    let aliases: usize = operations.iter().map(|s| count_aliases(s)).sum::<usize>()
        + doc
            .fragments
            .values()
            .map(|f| count_aliases(&f.node.selection_set.node))
            .sum::<usize>();
    if aliases > limits.max_aliases {
        return Err(limit_error(format!(
            "the document has {aliases} aliases; at most {} are allowed",
            limits.max_aliases
        )));
    }
    for set in operations {
        if !limits.introspection && introspects(set, doc, 0) {
            return Err(limit_error(
                "introspection is disabled on this server".to_owned(),
            ));
        }
        let roots = count_root_fields(set, doc, 0);
        if roots > limits.max_root_fields {
            return Err(limit_error(format!(
                "an operation selects {roots} root fields; at most {} are allowed",
                limits.max_root_fields
            )));
        }
    }
    Ok(())
}
