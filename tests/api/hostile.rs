//! A hand-written corpus of hostile requests over GraphQL (HTTP and
//! WebSocket) and REST: malformed and truncated JSON, wrong types, huge,
//! NUL / BOM / zero-width / right-to-left strings, deep nesting, many
//! aliases, injection attempts in filters, pathological regexes, out-of-range
//! numbers and timestamps, forged cursors, oversized batches, bad ids in
//! paths, unknown routes and methods.
//!
//! Every answer must be a 4xx (or a 2xx when the input is merely odd) with a
//! JSON body carrying a stable code: GraphQL errors have `extensions.code`,
//! REST errors the `{"success": false, "error": {"code", "message"}}`
//! envelope. Never a 5xx. Afterwards the server still serves and the seeded
//! data is unchanged.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::common::TestApp;

const CODES: &[&str] = &[
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "BAD_USER_INPUT",
    "NOT_FOUND",
    "CONFLICT",
    "RATE_LIMITED",
    "UNAVAILABLE",
];

/// Who sends a case.
#[derive(Clone, Copy, Debug)]
enum As {
    Anonymous,
    Admin,
}

#[derive(Clone, Debug)]
struct Case {
    name: String,
    method: &'static str,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    who: As,
}

fn raw(name: impl Into<String>, path: &str, body: impl Into<Vec<u8>>) -> Case {
    Case {
        name: name.into(),
        method: "POST",
        path: path.to_owned(),
        content_type: Some("application/json"),
        body: body.into(),
        who: As::Admin,
    }
}

fn gql(name: impl Into<String>, query: &str, variables: Value) -> Case {
    raw(
        name,
        "/graphql",
        json!({ "query": query, "variables": variables }).to_string(),
    )
}

fn rest(name: impl Into<String>, method: &'static str, path: &str, body: Option<Value>) -> Case {
    Case {
        name: name.into(),
        method,
        path: path.to_owned(),
        content_type: body.as_ref().map(|_| "application/json"),
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        who: As::Admin,
    }
}

/// Strings no field should choke on.
fn hostile_strings() -> Vec<(&'static str, String)> {
    vec![
        ("empty", String::new()),
        ("blank", "   \t ".to_owned()),
        ("nul", "a\u{0}b".to_owned()),
        ("only-nul", "\u{0}".to_owned()),
        ("bom", "\u{feff}name".to_owned()),
        ("zero-width", "a\u{200b}\u{200d}b".to_owned()),
        ("rtl", "\u{202e}evil\u{202c}".to_owned()),
        ("control", "a\u{1}\u{7}\u{1b}[31mb\r\n".to_owned()),
        ("sql", "' OR '1'='1' --".to_owned()),
        ("sql-drop", "x'); DROP TABLE events; --".to_owned()),
        ("json-path", "$.tags[?(@.a == 1)] || a->>'b'".to_owned()),
        ("like", "%_\\%".to_owned()),
        ("long", "x".repeat(70_000)),
        ("emoji", "🔥".repeat(5_000)),
        ("non-char", "\u{fffe}\u{ffff}".to_owned()),
    ]
}

/// Regexes that are slow, invalid or huge.
fn hostile_regexes() -> Vec<String> {
    vec![
        "(a+)+$".to_owned(),
        "(?:a*)*b".to_owned(),
        "a{1000000}".to_owned(),
        "(".to_owned(),
        "[z-a]".to_owned(),
        "\\p{NoSuchClass}".to_owned(),
        "(?<n>a)(?P=n)".to_owned(),
        "(".repeat(5_000),
        ".*".repeat(10_000),
        "a\u{0}".to_owned(),
    ]
}

fn corpus() -> Vec<Case> {
    let mut cases = Vec::new();
    let me = "{ me { id } }";

    // ---- malformed HTTP/JSON on /graphql ----
    let malformed: &[(&str, &[u8])] = &[
        ("empty body", b""),
        ("open brace", b"{"),
        ("truncated", b"{\"query\": \"{ me { id } }\""),
        ("truncated string", b"{\"query\": \"{ me"),
        ("trailing garbage", b"{\"query\": \"{ me { id } }\"} x"),
        ("bare string", b"\"{ me { id } }\""),
        ("number", b"123"),
        ("true", b"true"),
        ("null", b"null"),
        (
            "NaN",
            b"{\"query\": \"{ me { id } }\", \"variables\": {\"x\": NaN}}",
        ),
        (
            "Infinity",
            b"{\"query\": \"{ me { id } }\", \"variables\": {\"x\": Infinity}}",
        ),
        (
            "huge exponent",
            b"{\"query\": \"{ me { id } }\", \"variables\": {\"x\": 1e999}}",
        ),
        ("lone surrogate", b"{\"query\": \"{ me { id } }\\ud800\"}"),
        ("invalid utf8", b"{\"query\": \"\xff\xfe\"}"),
        ("raw nul", b"{\"query\": \"{ me { id } }\0\"}"),
        ("bom prefix", b"\xef\xbb\xbf{\"query\": \"{ me { id } }\"}"),
        ("single quotes", b"{'query': '{ me { id } }'}"),
        (
            "duplicate keys",
            b"{\"query\": 1, \"query\": \"{ me { id } }\"}",
        ),
        ("empty batch", b"[]"),
        ("batch of numbers", b"[1, 2, 3]"),
        ("query number", b"{\"query\": 5}"),
        ("query null", b"{\"query\": null}"),
        ("query object", b"{\"query\": {}}"),
        (
            "variables string",
            b"{\"query\": \"{ me { id } }\", \"variables\": \"x\"}",
        ),
        (
            "variables array",
            b"{\"query\": \"{ me { id } }\", \"variables\": [1]}",
        ),
        (
            "operationName number",
            b"{\"query\": \"{ me { id } }\", \"operationName\": 1}",
        ),
        (
            "extensions string",
            b"{\"query\": \"{ me { id } }\", \"extensions\": \"x\"}",
        ),
    ];
    for (name, body) in malformed {
        cases.push(raw(format!("graphql malformed: {name}"), "/graphql", *body));
    }
    let mut c = raw(
        "graphql text/plain",
        "/graphql",
        "{\"query\": \"{ me { id } }\"}",
    );
    c.content_type = Some("text/plain");
    cases.push(c);
    let mut c = raw(
        "graphql no content type",
        "/graphql",
        "{\"query\": \"{ me { id } }\"}",
    );
    c.content_type = None;
    cases.push(c);
    cases.push(raw(
        "deeply nested JSON arrays",
        "/graphql",
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
    ));
    cases.push(raw(
        "deeply nested variables",
        "/graphql",
        format!(
            "{{\"query\": \"{{ me {{ id }} }}\", \"variables\": {{\"a\": {}1{}}}}}",
            "{\"b\": ".repeat(10_000),
            "}".repeat(10_000)
        ),
    ));
    cases.push(raw(
        "oversized body",
        "/graphql",
        format!(
            "{{\"query\": \"{{ me {{ id }} }}\", \"variables\": {{\"a\": \"{}\"}}}}",
            "x".repeat(2 * 1024 * 1024)
        ),
    ));
    let batch: Vec<Value> = (0..500).map(|_| json!({ "query": me })).collect();
    cases.push(raw(
        "batch over the limit",
        "/graphql",
        Value::Array(batch).to_string(),
    ));
    cases.push(raw(
        "batch with a bad item",
        "/graphql",
        json!([{ "query": me }, { "query": 3 }]).to_string(),
    ));

    // ---- hostile documents ----
    let mut aliases = String::from("{");
    for i in 0..5_000 {
        write!(aliases, " a{i}: me {{ id }}").unwrap();
    }
    aliases.push('}');
    cases.push(gql("5,000 aliases", &aliases, json!({})));
    let deep = format!(
        "{{ me {}id{} }}",
        "{ ... on User ".repeat(500),
        "}".repeat(500)
    );
    cases.push(gql("deep inline fragments", &deep, json!({})));
    cases.push(gql(
        "deep selection",
        &format!("{{{} }}", " me { id ".repeat(50) + &"}".repeat(50)),
        json!({}),
    ));
    cases.push(gql(
        "cyclic fragments",
        "query { me { ...A } } fragment A on User { ...B } fragment B on User { ...A }",
        json!({}),
    ));
    cases.push(gql("unbalanced braces", &"{".repeat(100_000), json!({})));
    cases.push(gql("empty document", "", json!({})));
    cases.push(gql("only comment", "# nothing", json!({})));
    cases.push(gql("unknown field", "{ nope }", json!({})));
    cases.push(gql(
        "unknown type condition",
        "{ me { ... on Nope { id } } }",
        json!({}),
    ));
    cases.push(gql(
        "huge field name",
        &format!("{{ {} }}", "a".repeat(200_000)),
        json!({}),
    ));
    cases.push(gql(
        "many operations without a name",
        "query A { me { id } } query B { me { id } }",
        json!({}),
    ));
    cases.push(gql(
        "unknown operation name",
        "query A { me { id } }",
        json!({}),
    ));
    cases.push(gql(
        "directive abuse",
        &format!("{{ me {} {{ id }} }}", "@include(if: true) ".repeat(2_000)),
        json!({}),
    ));
    cases.push(gql(
        "NaN literal",
        "{ events(first: NaN) { edges { node { id } } } }",
        json!({}),
    ));
    cases.push(gql(
        "introspection deep",
        "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { ofType { ofType { ofType { name } } } } } } } } } } } }",
        json!({}),
    ));

    // ---- wrong types for every input object ----
    let inputs = [
        ("login", "LoginInput!"),
        ("createUser", "CreateUserInput!"),
        ("createApiKey", "CreateApiKeyInput!"),
        ("createEvent", "CreateEventInput!"),
        ("createEvents", "CreateEventsInput!"),
        ("submitMetric", "SubmitMetricInput!"),
        ("submitMetrics", "SubmitMetricsInput!"),
        ("createAlertRule", "CreateAlertRuleInput!"),
        ("createSilence", "CreateSilenceInput!"),
        ("createIncident", "CreateIncidentInput!"),
        ("enqueueTask", "EnqueueTaskInput!"),
    ];
    let wrongs = [
        json!(5),
        json!("x"),
        json!([]),
        json!(null),
        json!({}),
        json!({"unknownField": 1}),
    ];
    for (field, ty) in inputs {
        for w in &wrongs {
            cases.push(gql(
                format!("{field} input = {w}"),
                &format!("mutation($i: {ty}) {{ {field}(input: $i) {{ __typename }} }}"),
                json!({ "i": w }),
            ));
        }
    }

    // ---- hostile strings in every string field of the inputs ----
    for (label, s) in hostile_strings() {
        let s = s.as_str();
        let targets: Vec<(&str, &str, Value)> = vec![
            (
                "login",
                "LoginInput!",
                json!({"username": s, "password": s}),
            ),
            (
                "createUser",
                "CreateUserInput!",
                json!({"username": s, "email": format!("{s}@example.com"), "password": s}),
            ),
            ("createApiKey", "CreateApiKeyInput!", json!({"name": s})),
            (
                "createEvent",
                "CreateEventInput!",
                json!({"eventType": "LOG", "source": s, "message": s, "level": s}),
            ),
            (
                "createEvent",
                "CreateEventInput!",
                json!({"eventType": "LOG", "source": "hostile", "tags": {s: s}, "payload": {s: [s]}}),
            ),
            (
                "submitMetric",
                "SubmitMetricInput!",
                json!({"name": s, "metricType": "GAUGE", "value": 1.0}),
            ),
            (
                "submitMetric",
                "SubmitMetricInput!",
                json!({"name": "hostile_metric", "metricType": "GAUGE", "value": 1.0, "labels": {s: s}}),
            ),
            (
                "createAlertRule",
                "CreateAlertRuleInput!",
                json!({"name": s, "query": s, "threshold": 1.0}),
            ),
            (
                "createIncident",
                "CreateIncidentInput!",
                json!({"title": s, "description": s, "sources": [s], "labels": {s: s}}),
            ),
            (
                "enqueueTask",
                "EnqueueTaskInput!",
                json!({"taskType": s, "dedupeKey": s, "payload": {"k": s}}),
            ),
            (
                "createSilence",
                "CreateSilenceInput!",
                json!({"matchers": [{"label": s, "value": s}], "endsAt": "2099-01-01T00:00:00Z", "comment": s}),
            ),
        ];
        for (field, ty, input) in targets {
            cases.push(gql(
                format!("{field} with {label} strings"),
                &format!("mutation($i: {ty}) {{ {field}(input: $i) {{ __typename }} }}"),
                json!({ "i": input }),
            ));
        }
        // Filters.
        let filters: Vec<(&str, &str, Value)> = vec![
            (
                "events",
                "query($f: EventFilter) { events(filter: $f, first: 5) { edges { node { id } } } }",
                json!({"f": {"sources": [s], "text": s, "tags": [{"key": s, "value": s}]}}),
            ),
            (
                "metrics",
                "query($f: MetricFilter) { metrics(filter: $f, first: 5) { edges { node { id } } } }",
                json!({"f": {"names": [s], "matchers": [{"label": s, "op": "EQ", "value": s}]}}),
            ),
            (
                "metricSeries",
                "query($n: String!) { metricSeries(name: $n, from: \"2026-01-01T00:00:00Z\", to: \"2026-01-01T01:00:00Z\") { labels } }",
                json!({"n": s}),
            ),
            (
                "incidents",
                "query($t: String) { incidents(filter: {text: $t}, first: 5) { edges { node { id } } } }",
                json!({"t": s}),
            ),
            (
                "alerts",
                "query($v: String!) { alerts(labels: [{label: $v, value: $v}]) { id } }",
                json!({"v": s}),
            ),
            (
                "user by id",
                "query($id: ID!) { user(id: $id) { id } }",
                json!({"id": s}),
            ),
            (
                "event by id",
                "query($id: ID!) { event(id: $id) { id } }",
                json!({"id": s}),
            ),
            (
                "incident by id",
                "query($id: ID!) { incident(id: $id) { id } }",
                json!({"id": s}),
            ),
            (
                "alertHistory",
                "query($id: ID) { alertHistory(filter: {ruleId: $id, alertId: $id}, first: 5) { edges { node { __typename } } } }",
                json!({"id": s}),
            ),
            (
                "tasks",
                "query($t: String) { tasks(filter: {taskType: $t}, first: 5) { edges { node { id } } } }",
                json!({"t": s}),
            ),
            (
                "alerts by rule",
                "query($id: ID) { alerts(ruleId: $id) { id } }",
                json!({"id": s}),
            ),
            (
                "events cursor",
                "query($c: String) { events(after: $c, first: 5) { edges { node { id } } } }",
                json!({"c": s}),
            ),
        ];
        for (name, q, vars) in filters {
            cases.push(gql(format!("{name} filter with {label} strings"), q, vars));
        }
    }

    // ---- pathological regexes ----
    for re in hostile_regexes() {
        let short: String = re.chars().take(20).collect();
        cases.push(gql(
            format!("metrics matcher regex {short:?}"),
            "query($v: String!) { metrics(filter: {matchers: [{label: \"a\", op: RE, value: $v}]}, first: 5) { edges { node { id } } } }",
            json!({"v": re}),
        ));
        cases.push(gql(
            format!("metricSeries matcher regex {short:?}"),
            "query($v: String!) { metricSeries(name: \"m\", matchers: [{label: \"a\", op: NRE, value: $v}], from: \"2026-01-01T00:00:00Z\", to: \"2026-01-01T01:00:00Z\") { labels } }",
            json!({"v": re}),
        ));
        cases.push(gql(
            format!("alerts label regex {short:?}"),
            "query($v: String!) { alerts(labels: [{label: \"a\", op: RE, value: $v}]) { id } }",
            json!({"v": re}),
        ));
        cases.push(gql(
            format!("rule expression regex {short:?}"),
            "mutation($q: String!) { createAlertRule(input: {name: \"hostile\", query: $q, threshold: 1}) { id } }",
            json!({"q": format!("avg(m{{a=~{}}}) > 1", serde_json::to_string(&re).unwrap())}),
        ));
    }
    let rule_queries = [
        "",
        "(((((((((((((((((((((((((((((((((((((((((((((((((((((((x",
        &format!("{}m{}", "(".repeat(10_000), ")".repeat(10_000)),
        &format!("{}m", "-".repeat(10_000)),
        "rate(m[0s])",
        "rate(m[99999999999999999999y])",
        "m offset -1000000000000d",
        "m > NaN",
        "m > Inf",
        "1/0",
        "sum by (",
        "m{a=\"\u{0}\"}",
        "m[5m] @ 99999999999999999999",
    ];
    for q in rule_queries {
        let short: String = q.chars().take(20).collect();
        cases.push(gql(
            format!("rule expression {short:?}"),
            "mutation($q: String!) { createAlertRule(input: {name: \"hostile-expr\", query: $q, threshold: 1}) { id } }",
            json!({"q": q}),
        ));
        cases.push(gql(
            format!("preview expression {short:?}"),
            "query($q: String!) { previewAlertRule(query: $q, threshold: 1, from: \"2026-01-01T00:00:00Z\", to: \"2026-01-01T01:00:00Z\") { __typename } }",
            json!({"q": q}),
        ));
    }

    // ---- numbers and timestamps ----
    let ints = [
        json!(-1),
        json!(0),
        json!(2_147_483_647i64),
        json!(2_147_483_648i64),
        json!(-2_147_483_649i64),
        json!(1e300),
        json!(1.5),
        json!("10"),
        json!(9_223_372_036_854_775_807i64),
    ];
    for n in &ints {
        cases.push(gql(
            format!("events first = {n}"),
            "query($n: Int) { events(first: $n) { edges { node { id } } } }",
            json!({"n": n}),
        ));
        cases.push(gql(
            format!("events last = {n}"),
            "query($n: Int) { events(last: $n) { edges { node { id } } } }",
            json!({"n": n}),
        ));
        cases.push(gql(
            format!("events offset/limit = {n}"),
            "query($n: Int) { events(offset: $n, limit: $n) { edges { node { id } } } }",
            json!({"n": n}),
        ));
        cases.push(gql(
            format!("metricSeries step = {n}"),
            "query($n: Int) { metricSeries(name: \"m\", step: $n, from: \"2026-01-01T00:00:00Z\", to: \"2026-01-02T00:00:00Z\") { labels } }",
            json!({"n": n}),
        ));
        cases.push(gql(
            format!("enqueueTask priority = {n}"),
            "mutation($n: Int) { enqueueTask(input: {taskType: \"hostile\", priority: $n, maxAttempts: $n}) { id } }",
            json!({"n": n}),
        ));
    }
    let floats = [
        json!(-0.0),
        json!(f64::MAX),
        json!(f64::MIN),
        json!(-1.0),
        json!(1e-320),
        json!("NaN"),
        json!("Infinity"),
    ];
    for f in &floats {
        cases.push(gql(
            format!("submitMetric counter value {f}"),
            "mutation($v: Float!) { submitMetric(input: {name: \"hostile_counter\", metricType: COUNTER, value: $v}) { id } }",
            json!({"v": f}),
        ));
        cases.push(gql(
            format!("alert threshold {f}"),
            "mutation($v: Float) { createAlertRule(input: {name: \"hostile-threshold\", query: \"avg(m)\", threshold: $v}) { id } }",
            json!({"v": f}),
        ));
    }
    let times = [
        "0000-01-01T00:00:00Z",
        "-000001-01-01T00:00:00Z",
        "+275760-09-13T00:00:00Z",
        "9999-12-31T23:59:59.999999999Z",
        "2026-13-45T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "not a date",
        "1700000000",
        "",
        "2026-01-01T00:00:00+99:00",
    ];
    for t in times {
        cases.push(gql(
            format!("event timestamp {t:?}"),
            "mutation($t: DateTime) { createEvent(input: {eventType: LOG, source: \"hostile\", timestamp: $t}) { id } }",
            json!({"t": t}),
        ));
        cases.push(gql(
            format!("events from/to {t:?}"),
            "query($t: DateTime) { events(filter: {from: $t, to: $t}, first: 5) { edges { node { id } } } }",
            json!({"t": t}),
        ));
        cases.push(gql(
            format!("metricSeries range {t:?}"),
            "query($t: DateTime) { metricSeries(name: \"m\", from: $t, to: \"2026-01-01T00:00:00Z\") { labels } }",
            json!({"t": t}),
        ));
        cases.push(gql(
            format!("silence endsAt {t:?}"),
            "mutation($t: DateTime!) { createSilence(input: {matchers: [{label: \"a\", value: \"b\"}], endsAt: $t, comment: \"c\"}) { id } }",
            json!({"t": t}),
        ));
    }
    cases.push(gql(
        "metricSeries reversed range",
        "{ metricSeries(name: \"m\", from: \"2026-02-01T00:00:00Z\", to: \"2026-01-01T00:00:00Z\") { labels } }",
        json!({}),
    ));
    cases.push(gql(
        "metricSeries a century at one second",
        "{ metricSeries(name: \"m\", step: 1, from: \"1990-01-01T00:00:00Z\", to: \"2090-01-01T00:00:00Z\") { labels } }",
        json!({}),
    ));

    // ---- forged cursors ----
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let forged = [
        b64.encode("{}"),
        b64.encode("{\"t\": \"9999\", \"id\": \"x\"}"),
        b64.encode("arrayconnection:-1"),
        b64.encode("arrayconnection:99999999999999999999"),
        b64.encode([0xffu8, 0, 1, 2]),
        "=".repeat(100),
        "A".repeat(100_000),
        "%00".to_owned(),
    ];
    for c in &forged {
        let short: String = c.chars().take(16).collect();
        for (conn, q) in [
            (
                "events",
                "query($c: String) { events(after: $c, first: 3) { edges { node { id } } } }",
            ),
            (
                "events before",
                "query($c: String) { events(before: $c, last: 3) { edges { node { id } } } }",
            ),
            (
                "metrics",
                "query($c: String) { metrics(after: $c, first: 3) { edges { node { id } } } }",
            ),
            (
                "incidents",
                "query($c: String) { incidents(after: $c, first: 3) { edges { node { id } } } }",
            ),
            (
                "users",
                "query($c: String) { users(after: $c, first: 3) { edges { node { id } } } }",
            ),
            (
                "alertRules",
                "query($c: String) { alertRules(after: $c, first: 3) { edges { node { id } } } }",
            ),
            (
                "alertHistory",
                "query($c: String) { alertHistory(after: $c, first: 3) { edges { node { __typename } } } }",
            ),
            (
                "silences",
                "query($c: String) { silences(after: $c, first: 3) { edges { node { id } } } }",
            ),
        ] {
            cases.push(gql(
                format!("{conn} forged cursor {short:?}"),
                q,
                json!({"c": c}),
            ));
        }
    }

    // ---- oversized batches ----
    let events: Vec<Value> = (0..1_001)
        .map(|i| json!({"eventType": "LOG", "source": format!("batch-{i}")}))
        .collect();
    cases.push(gql(
        "createEvents with 1,001 events",
        "mutation($e: [CreateEventInput!]!) { createEvents(input: {events: $e}) { __typename } }",
        json!({"e": events}),
    ));
    let samples: Vec<Value> = (0..10_001)
        .map(|i| json!({"name": "hostile_batch", "metricType": "GAUGE", "value": i}))
        .collect();
    cases.push(gql(
        "submitMetrics with 10,001 samples",
        "mutation($s: [SubmitMetricInput!]!) { submitMetrics(input: {samples: $s}) { __typename } }",
        json!({"s": samples}),
    ));
    let big_list: Vec<String> = (0..100_000).map(|i| format!("s{i}")).collect();
    cases.push(gql(
        "events filter with 100,000 sources",
        "query($s: [String!]) { events(filter: {sources: $s}, first: 1) { edges { node { id } } } }",
        json!({"s": big_list}),
    ));
    let tags: serde_json::Map<String, Value> =
        (0..1_000).map(|i| (format!("k{i}"), json!(i))).collect();
    cases.push(gql(
        "event with 1,000 tags",
        "mutation($t: JSON) { createEvent(input: {eventType: LOG, source: \"hostile\", tags: $t}) { id } }",
        json!({"t": tags}),
    ));
    let mut deep_payload = json!(1);
    for _ in 0..120 {
        deep_payload = json!({ "a": deep_payload });
    }
    cases.push(gql(
        "event with a deep payload",
        "mutation($p: JSON) { createEvent(input: {eventType: LOG, source: \"hostile\", payload: $p}) { id } }",
        json!({"p": deep_payload}),
    ));

    // ---- anonymous callers on protected fields ----
    for q in [
        "{ me { id } }",
        "{ users(first: 5) { edges { node { id } } } }",
        "{ events(first: 1) { edges { node { id } } } }",
        "mutation { createEvent(input: {eventType: LOG, source: \"anon\"}) { id } }",
        "mutation { logoutAll }",
    ] {
        let mut c = gql(format!("anonymous: {q}"), q, json!({}));
        c.who = As::Anonymous;
        cases.push(c);
    }

    // ---- REST ----
    let bad_ids = [
        "not-a-uuid",
        "%00",
        "%FF",
        "%E2%80%AE",
        "'%20OR%201=1",
        "..%2F..%2Fetc%2Fpasswd",
        "00000000-0000-0000-0000-000000000000",
        "0",
        "-1",
        "%F0%9F%94%A5",
    ];
    for id in bad_ids {
        for base in [
            "/api/v1/monitoring/events/",
            "/api/v1/monitoring/incidents/",
            "/api/v1/monitoring/alerts/",
        ] {
            cases.push(rest(
                format!("GET {base}{id}"),
                "GET",
                &format!("{base}{id}"),
                None,
            ));
        }
        cases.push(rest(
            format!("GET incident timeline {id}"),
            "GET",
            &format!("/api/v1/monitoring/incidents/{id}/timeline"),
            None,
        ));
        cases.push(rest(
            format!("PUT incident {id}"),
            "PUT",
            &format!("/api/v1/monitoring/incidents/{id}"),
            Some(json!({"status": "resolved"})),
        ));
        cases.push(rest(
            format!("DELETE alert {id}"),
            "DELETE",
            &format!("/api/v1/monitoring/alerts/{id}"),
            None,
        ));
    }
    cases.push(rest(
        "GET a 10,000-char id",
        "GET",
        &format!("/api/v1/monitoring/events/{}", "a".repeat(10_000)),
        None,
    ));
    for (method, path) in [
        ("GET", "/nope"),
        ("GET", "/api"),
        ("GET", "/api/v1"),
        ("GET", "/api/v1/nope"),
        ("POST", "/api/v1/monitoring/nope"),
        ("GET", "/%FF"),
        ("GET", "/graphql/extra"),
        ("DELETE", "/api/v1/monitoring/events"),
        ("PATCH", "/api/v1/monitoring/incidents"),
        ("PUT", "/healthz"),
        ("DELETE", "/graphql"),
        ("PATCH", "/graphql"),
        ("POST", "/readyz"),
        ("POST", "/api/v1/auth/me"),
        ("GET", "/api/v1/auth/login"),
        ("TRACE", "/api/v1/monitoring/events"),
        ("POST", "/metrics"),
    ] {
        cases.push(rest(format!("{method} {path}"), method, path, None));
    }
    let posts = [
        "/api/v1/monitoring/events",
        "/api/v1/monitoring/metrics",
        "/api/v1/monitoring/incidents",
        "/api/v1/monitoring/alerts",
        "/api/v1/auth/login",
    ];
    for path in posts {
        for (name, body) in malformed {
            let mut c = raw(format!("POST {path} {name}"), path, *body);
            c.method = "POST";
            cases.push(c);
        }
        let mut c = rest(
            format!("POST {path} text/plain"),
            "POST",
            path,
            Some(json!({})),
        );
        c.content_type = Some("text/plain");
        cases.push(c);
        cases.push(raw(
            format!("POST {path} oversized"),
            path,
            format!("{{\"a\": \"{}\"}}", "x".repeat(2 * 1024 * 1024)),
        ));
        for w in [
            json!(5),
            json!("x"),
            json!(null),
            json!({"unknown": 1}),
            json!([[]]),
        ] {
            cases.push(rest(format!("POST {path} body {w}"), "POST", path, Some(w)));
        }
    }
    for (label, s) in hostile_strings() {
        cases.push(rest(
            format!("REST event with {label}"),
            "POST",
            "/api/v1/monitoring/events",
            Some(json!({"event_type": "log", "source": s, "message": s, "tags": {s.clone(): s.clone()}})),
        ));
        cases.push(rest(
            format!("REST metric with {label}"),
            "POST",
            "/api/v1/monitoring/metrics",
            Some(json!({"name": s, "metric_type": "gauge", "value": 1, "labels": {s.clone(): s.clone()}})),
        ));
        cases.push(rest(
            format!("REST incident with {label}"),
            "POST",
            "/api/v1/monitoring/incidents",
            Some(json!({"title": s, "description": s, "severity": s})),
        ));
        cases.push(rest(
            format!("REST alert with {label}"),
            "POST",
            "/api/v1/monitoring/alerts",
            Some(json!({"name": s, "query": s, "threshold_value": 1})),
        ));
        cases.push(rest(
            format!("REST login with {label}"),
            "POST",
            "/api/v1/auth/login",
            Some(json!({"username": s, "password": s})),
        ));
    }
    for q in [
        "limit=-1",
        "limit=99999999999999999999999",
        "offset=-5",
        "offset=abc",
        "start_time=garbage",
        "start_time=9999-99-99",
        "end_time=%00",
        "tags=::,,:",
        "tags=%FF",
        "level=%E2%80%AE",
        "event_type=nope",
        "source=%27%20OR%201%3D1",
        "after=forged",
        "text=%25%5F",
        "limit=1&limit=2&limit=3",
        "a=%",
        "%=%=%",
    ] {
        for base in [
            "/api/v1/monitoring/events",
            "/api/v1/monitoring/metrics",
            "/api/v1/monitoring/incidents",
            "/api/v1/monitoring/alerts",
        ] {
            cases.push(rest(
                format!("GET {base}?{q}"),
                "GET",
                &format!("{base}?{q}"),
                None,
            ));
        }
    }
    cases
}

/// Checks one answer; `Err` says what is wrong with it.
fn judge(case: &Case, status: u16, body: &[u8]) -> Result<(), String> {
    if status >= 500 {
        return Err(format!("status {status}"));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| format!("status {status}, body is not JSON ({e}): {}", lossy(body)))?;
    if case.path == "/graphql" && case.method != "DELETE" && case.method != "PATCH" {
        let items = match &v {
            Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        };
        for item in items {
            if let Some(errors) = item.get("errors") {
                let errors = errors.as_array().ok_or("`errors` is not a list")?;
                if errors.is_empty() {
                    return Err("empty `errors`".into());
                }
                for e in errors {
                    let code = e["extensions"]["code"].as_str().unwrap_or("");
                    if !CODES.contains(&code) {
                        return Err(format!("error without a stable code: {e}"));
                    }
                    if e["message"].as_str().is_none_or(str::is_empty) {
                        return Err(format!("error without a message: {e}"));
                    }
                }
            } else if status >= 400 || item.get("data").is_none() {
                return Err(format!("status {status} without errors: {item}"));
            }
        }
        return Ok(());
    }
    if status >= 400 {
        let code = v["error"]["code"].as_str().unwrap_or("");
        let envelope = v["success"] == json!(false) && CODES.contains(&code);
        let graphql = v["errors"][0]["extensions"]["code"]
            .as_str()
            .is_some_and(|c| CODES.contains(&c));
        if !(envelope || graphql) {
            return Err(format!("status {status} without the error envelope: {v}"));
        }
        if envelope && v["error"]["message"].as_str().is_none_or(str::is_empty) {
            return Err(format!("error without a message: {v}"));
        }
    } else if v["success"] != json!(true) {
        return Err(format!("status {status} without success: {v}"));
    }
    Ok(())
}

fn lossy(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(400)]).into_owned()
}

async fn send(app: &TestApp, case: &Case) -> (u16, Vec<u8>) {
    let method = reqwest::Method::from_bytes(case.method.as_bytes()).unwrap();
    // The path is sent as written (reqwest would not re-encode `%FF`).
    let mut req = app
        .client
        .request(method, format!("{}{}", app.base, case.path))
        .body(case.body.clone());
    if let Some(ct) = case.content_type {
        req = req.header("content-type", ct);
    }
    if let As::Admin = case.who {
        req = req.header("authorization", format!("Bearer {}", app.admin_token));
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}: request failed: {e}", case.name));
    let status = resp.status().as_u16();
    let body = resp.bytes().await.expect("body").to_vec();
    (status, body)
}

/// What must not change: the seeded event, incident and user.
async fn snapshot(app: &TestApp, event: &str, incident: &str) -> Value {
    app.gql_ok(
        Some(&app.admin_token),
        "query($e: ID!, $i: ID!) {
           event(id: $e) { id source message tags payload level timestamp }
           incident(id: $i) { id title status severity }
           users(first: 100) { totalCount edges { node { id username role isActive } } }
         }",
        json!({ "e": event, "i": incident }),
    )
    .await
}

#[tokio::test]
async fn hostile_requests_get_stable_errors_and_change_nothing() {
    let app = TestApp::spawn_with(|c| {
        c.body_limit = 1024 * 1024;
        // The corpus tries many logins; the limiter must not hide answers.
        c.login_max_failures = 1_000_000;
    })
    .await;
    let seeded = app
        .gql_ok(
            Some(&app.admin_token),
            "mutation {
               createEvent(input: {eventType: LOG, source: \"seed\", message: \"kept\", tags: {a: 1}}) { id }
               createIncident(input: {title: \"seeded incident\"}) { id }
             }",
            json!({}),
        )
        .await;
    let event = seeded["createEvent"]["id"].as_str().unwrap().to_owned();
    let incident = seeded["createIncident"]["id"].as_str().unwrap().to_owned();
    let before = snapshot(&app, &event, &incident).await;

    let mut cases = corpus();
    // Real but stale or foreign cursors: an event's cursor on other
    // connections, and on events after that event is long gone from the page.
    let cursor = app
        .gql_ok(
            Some(&app.admin_token),
            "query($e: ID!) { event(id: $e) { cursor } incidents(first: 1) { edges { cursor } } }",
            json!({ "e": event }),
        )
        .await;
    let event_cursor = cursor["event"]["cursor"].as_str().unwrap().to_owned();
    let incident_cursor = cursor["incidents"]["edges"][0]["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    for (name, c) in [("event", &event_cursor), ("incident", &incident_cursor)] {
        for (conn, q) in [
            (
                "events",
                "query($c: String) { events(after: $c, first: 3) { edges { node { id } } } }",
            ),
            (
                "events before",
                "query($c: String) { events(before: $c, last: 3) { edges { node { id } } } }",
            ),
            (
                "incidents",
                "query($c: String) { incidents(after: $c, first: 3) { edges { node { id } } } }",
            ),
            (
                "users",
                "query($c: String) { users(after: $c, first: 3) { edges { node { id } } } }",
            ),
            (
                "metrics",
                "query($c: String) { metrics(after: $c, first: 3) { edges { node { id } } } }",
            ),
            (
                "tasks",
                "query($c: String) { tasks(after: $c, first: 3) { edges { node { id } } } }",
            ),
        ] {
            cases.push(gql(
                format!("{conn} with an {name} cursor"),
                q,
                json!({ "c": c }),
            ));
        }
    }
    assert!(cases.len() >= 200, "only {} cases", cases.len());
    eprintln!("hostile corpus: {} requests", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let (status, body) = send(&app, case).await;
        if let Err(why) = judge(case, status, &body) {
            failures.push(format!("{}: {why}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} hostile requests were mishandled:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let after = snapshot(&app, &event, &incident).await;
    assert_eq!(before["event"], after["event"]);
    assert_eq!(before["incident"], after["incident"]);
    // Users: the ones before are all still there, unchanged (the corpus may add
    // users with odd but valid names).
    let after_users: Vec<Value> = after["users"]["edges"].as_array().unwrap().clone();
    for u in before["users"]["edges"].as_array().unwrap() {
        assert!(after_users.contains(u), "user changed or gone: {u}");
    }
    app.login("admin", crate::common::ADMIN_PASSWORD).await;
}

#[tokio::test]
async fn hostile_websocket_frames_close_with_protocol_codes_and_the_server_keeps_serving() {
    let app = TestApp::spawn().await;
    let frames: Vec<String> = vec![
        "not json".into(),
        "{".into(),
        "null".into(),
        "[]".into(),
        "{\"type\": 5}".into(),
        "{\"type\": \"nope\"}".into(),
        "{\"type\": \"subscribe\"}".into(),
        "{\"type\": \"subscribe\", \"id\": 5, \"payload\": {}}".into(),
        "{\"type\": \"subscribe\", \"id\": \"a\u{0}\", \"payload\": {\"query\": 5}}".into(),
        format!(
            "{{\"type\": \"subscribe\", \"id\": \"{}\", \"payload\": {{\"query\": \"subscription {{ x }}\"}}}}",
            "i".repeat(100_000)
        ),
        format!(
            "{{\"type\": \"connection_init\", \"payload\": {}1{}}}",
            "[".repeat(10_000),
            "]".repeat(10_000)
        ),
    ];
    for (i, frame) in frames.iter().enumerate() {
        let mut ws = app.ws(Some(&app.admin_token)).await;
        ws.send_text(frame).await;
        match ws.recv().await {
            Some(crate::common::WsEvent::Closed(Some(code), _)) => {
                assert!((4400..4500).contains(&code), "frame {i}: close code {code}");
            }
            Some(crate::common::WsEvent::Json(v)) => {
                // An `error` message for the operation is fine too.
                assert_eq!(v["type"], "error", "frame {i}: {v}");
                let errors = v["payload"].as_array().cloned().unwrap_or_default();
                for e in errors {
                    assert!(
                        e["extensions"]["code"]
                            .as_str()
                            .is_some_and(|c| CODES.contains(&c)),
                        "frame {i}: error without a code: {e}"
                    );
                }
            }
            other => panic!("frame {i}: {other:?}"),
        }
    }
    // Before the handshake, too.
    let mut ws = app.ws_raw("graphql-transport-ws").await;
    ws.send_text("{\"type\": \"connection_init\", \"payload\": \"x\"}")
        .await;
    let code = ws.closed_code().await;
    assert!(code.is_some_and(|c| (4400..4500).contains(&c)), "{code:?}");
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
}

#[tokio::test]
async fn known_hostile_inputs_get_the_documented_answers() {
    let app = TestApp::spawn().await;
    let c = &app.client;
    let admin = format!("Bearer {}", app.admin_token);

    let r = c.get(app.url("/no/such/route")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["success"], false);
    assert_eq!(v["error"]["code"], "NOT_FOUND");

    let r = c
        .delete(app.url("/api/v1/monitoring/events"))
        .header("authorization", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert!(r.headers().get("allow").is_some(), "405 keeps Allow");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "BAD_USER_INPUT");

    let r = c.put(app.url("/graphql")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");

    for id in ["%FF", "not-a-uuid"] {
        for base in [
            "/api/v1/monitoring/events/",
            "/api/v1/monitoring/alerts/",
            "/api/v1/monitoring/incidents/",
        ] {
            let r = c
                .get(app.url(&format!("{base}{id}")))
                .header("authorization", &admin)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 400, "{base}{id}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "BAD_USER_INPUT", "{base}{id}: {v}");
        }
    }

    for name in ["a\u{0}b", "bell\u{7}", "line\nbreak", "esc\u{1b}[31m"] {
        let v = app
            .gql(
                Some(&app.admin_token),
                "mutation($n: String!) { createApiKey(input: {name: $n}) { __typename } }",
                json!({ "n": name }),
            )
            .await;
        assert_eq!(
            crate::common::error_code(&v),
            "BAD_USER_INPUT",
            "{name:?}: {v}"
        );
        let field = v["errors"][0]["extensions"]["field"].as_str().unwrap_or("");
        assert!(field.ends_with("name"), "{v}");
    }

    let v = app
        .gql(
            None,
            "mutation($u: String!) { login(input: {username: $u, password: \"x\"}) { token } }",
            json!({ "u": "admin\u{0}" }),
        )
        .await;
    assert_eq!(crate::common::error_code(&v), "UNAUTHENTICATED", "{v}");

    for name in ["m\u{0}", &"m".repeat(1001), ""] {
        let v = app
            .gql(
                Some(&app.admin_token),
                "query($n: String!) { metricSeries(name: $n) { labels } }",
                json!({ "n": name }),
            )
            .await;
        assert_eq!(crate::common::error_code(&v), "BAD_USER_INPUT", "{v}");
    }
}
