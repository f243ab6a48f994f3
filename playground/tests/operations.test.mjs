// Every operation the pages send, checked against the real server's schema:
// the playground's example tabs (with their variables, so enum spellings and
// input shapes are right) and the dashboard's queries, mutations and
// subscriptions. An operation whose root field the server does not have at
// all is reported as skipped, naming the field; anything else that does not
// validate fails.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Kind, buildClientSchema, getIntrospectionQuery, parse, validate } from 'graphql';
import { getVariableValues } from 'graphql/execution/values.js';

import { loadModules } from './load.mjs';
import { SightlineServer } from './server.mjs';

let server;
let schema;
let examples;
let operations;

before(async () => {
  server = await new SightlineServer().start();
  schema = buildClientSchema(await server.gql(getIntrospectionQuery()));
  [examples, operations] = await loadModules('/src/playground/examples.ts', '/src/dashboard/operations.ts');
});

after(async () => {
  await server?.dispose();
});

/** Root fields an operation uses that the schema lacks entirely. */
function missingRootFields(document) {
  const missing = [];
  for (const def of document.definitions) {
    if (def.kind !== Kind.OPERATION_DEFINITION) continue;
    const root = def.operation === 'query' ? schema.getQueryType() : def.operation === 'mutation' ? schema.getMutationType() : schema.getSubscriptionType();
    for (const sel of def.selectionSet.selections) {
      if (sel.kind === Kind.FIELD && !root?.getFields()[sel.name.value]) {
        missing.push(`${def.operation} ${sel.name.value}`);
      }
    }
  }
  return missing;
}

function check(t, source, variables) {
  const document = parse(source);
  const absent = missingRootFields(document);
  if (absent.length) {
    t.skip(`not on the server yet: ${absent.join(', ')}`);
    return;
  }
  const errors = validate(schema, document).map((e) => e.message);
  assert.deepEqual(errors, [], 'the operation validates against the schema');
  if (variables !== undefined) {
    const op = document.definitions.find((d) => d.kind === Kind.OPERATION_DEFINITION);
    const coerced = getVariableValues(schema, op.variableDefinitions ?? [], variables);
    assert.deepEqual((coerced.errors ?? []).map((e) => e.message), [], 'the example variables fit');
  }
}

describe('playground examples', () => {
  test('there is one for each step a newcomer takes', () => {
    const names = examples.EXAMPLES.map((e) => /(?:query|mutation|subscription) (\w+)/.exec(e.query)?.[1]);
    assert.deepEqual(names, ['LogIn', 'Me', 'IngestEvent', 'RecentEvents', 'LiveEvents', 'OpenIncident', 'ResolveIncident']);
    assert.equal(JSON.parse(examples.DEFAULT_HEADERS).Authorization, 'Bearer ');
  });

  for (const [i, example] of [
    'LogIn', 'Me', 'IngestEvent', 'RecentEvents', 'LiveEvents', 'OpenIncident', 'ResolveIncident',
  ].entries()) {
    test(`${example} validates with its variables`, (t) => {
      const e = examples.EXAMPLES[i];
      check(t, e.query, e.variables ? JSON.parse(e.variables) : {});
    });
  }
});

const OPERATION_NAMES = [
  'ME', 'LOGOUT', 'OPEN_INCIDENTS', 'INCIDENT_CREATED', 'INCIDENT_UPDATED', 'INCIDENT_DETAIL', 'ANALYZE_INCIDENT',
  'ACKNOWLEDGE_INCIDENT', 'UPDATE_INCIDENT_STATUS', 'RESOLVE_INCIDENT', 'ADD_NOTE', 'FIRING_ALERTS',
  'ALERT_STATE_CHANGED', 'RECENT_EVENTS', 'EVENTS_AFTER', 'EVENT_CREATED', 'METRIC_NAMES', 'METRIC_SERIES',
];

describe('dashboard operations', () => {
  for (const name of OPERATION_NAMES) {
    test(`${name} validates`, (t) => {
      assert.ok(operations.ALL[name], `${name} is exported`);
      check(t, operations.ALL[name]);
    });
  }

  test('the list above covers every operation the dashboard sends', () => {
    assert.deepEqual(Object.keys(operations.ALL).sort(), [...OPERATION_NAMES].sort());
  });
});
