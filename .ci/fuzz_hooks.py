"""Schemathesis hooks for Sightline's GraphQL API (loaded by extra-fuzz.sh
through SCHEMATHESIS_HOOKS): a strategy for the `JSON` scalar, and the check
that decides what a failure is: any 5xx, a body that is not JSON, or any
GraphQL error without a stable `extensions.code`. (Schemathesis's own
`not_a_server_error` counts every error with a `path` as a server error, but
here such errors are ordinary answers: NOT_FOUND, BAD_USER_INPUT, ...)"""

import json

import graphql
import schemathesis
from hypothesis import strategies as st
from schemathesis.graphql import nodes

_keys = st.text(max_size=20)
_leaf = st.one_of(
    st.text(max_size=50).map(nodes.String),
    st.integers().map(nodes.Int),
    st.floats(allow_nan=False, allow_infinity=False).map(nodes.Float),
    st.booleans().map(nodes.Boolean),
)


def _object(values):
    return st.lists(st.tuples(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True), values), max_size=5).map(
        lambda pairs: nodes.Object(
            [graphql.ObjectFieldNode(name=graphql.NameNode(value=k), value=v) for k, v in dict(pairs).items()]
        )
    )


schemathesis.graphql.scalar(
    "JSON",
    st.recursive(_leaf, lambda inner: st.one_of(_object(inner), st.lists(inner, max_size=5).map(nodes.List)), max_leaves=10),
)

CODES = {
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "BAD_USER_INPUT",
    "NOT_FOUND",
    "CONFLICT",
    "RATE_LIMITED",
    "UNAVAILABLE",
}


@schemathesis.check
def graphql_errors_have_codes(ctx, response, case):
    if response.status_code >= 500:
        raise AssertionError(f"server error: status {response.status_code}")
    try:
        body = json.loads(response.content or b"null")
    except ValueError:
        raise AssertionError(f"status {response.status_code}: the body is not JSON")
    items = body if isinstance(body, list) else [body]
    for item in items:
        if not isinstance(item, dict):
            raise AssertionError(f"not a GraphQL response: {item!r}")
        for error in item.get("errors") or []:
            code = (error.get("extensions") or {}).get("code")
            if code not in CODES:
                where = "with a path" if error.get("path") else "without a path"
                raise AssertionError(
                    f"error {where} has no stable code ({code!r}): {error.get('message')!r}"
                )
