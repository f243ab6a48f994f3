// Unit tests of the dashboard's pure logic (src/dashboard/model.ts) and the
// playground's header clean-up (src/playground/headers.ts).
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import { loadModules } from './load.mjs';

let m;
let headers;

before(async () => {
  [m, headers] = await loadModules('/src/dashboard/model.ts', '/src/playground/headers.ts');
});

const incident = (id, severity, status = 'OPEN', startedAt = '2026-11-28T10:00:00Z') => ({
  id,
  title: `incident ${id}`,
  severity,
  status,
  startedAt,
  acknowledgedAt: null,
  resolvedAt: null,
  assignedTo: null,
});

const event = (id, timestamp, extra = {}) => ({
  id,
  cursor: `c-${id}`,
  receivedAt: timestamp,
  timestamp,
  eventType: 'LOG',
  source: 'api',
  level: 'INFO',
  message: `event ${id}`,
  ...extra,
});

describe('open incidents', () => {
  test('an incident seen twice is listed once, in its newest version', () => {
    let list = m.upsertIncidents([], [incident('a', 'LOW')]);
    list = m.upsertIncidents(list, [{ ...incident('a', 'LOW'), title: 'renamed' }]);
    assert.equal(list.length, 1);
    assert.equal(list[0].title, 'renamed');
  });

  test('a resolved or closed incident leaves the open list', () => {
    let list = m.upsertIncidents([], [incident('a', 'HIGH'), incident('b', 'HIGH')]);
    list = m.upsertIncidents(list, [incident('a', 'HIGH', 'RESOLVED'), incident('b', 'HIGH', 'CLOSED')]);
    assert.deepEqual(list, []);
  });

  test('an incident created already resolved never enters the list', () => {
    assert.deepEqual(m.upsertIncidents([], [incident('a', 'LOW', 'RESOLVED')]), []);
  });

  test('incidents are ordered by severity, then newest first', () => {
    const list = m.upsertIncidents([], [
      incident('low', 'LOW'),
      incident('old-critical', 'CRITICAL', 'OPEN', '2026-11-28T09:00:00Z'),
      incident('new-critical', 'CRITICAL', 'INVESTIGATING', '2026-11-28T11:00:00Z'),
      incident('medium', 'MEDIUM'),
    ]);
    assert.deepEqual(list.map((i) => i.id), ['new-critical', 'old-critical', 'medium', 'low']);
  });

  test('grouping lists every severity, most urgent first, with its open incidents', () => {
    const groups = m.groupBySeverity([incident('a', 'HIGH'), incident('b', 'HIGH'), incident('c', 'LOW')]);
    assert.deepEqual(groups.map((g) => g.severity), ['CRITICAL', 'HIGH', 'MEDIUM', 'LOW']);
    assert.deepEqual(groups.map((g) => g.incidents.length), [0, 2, 0, 1]);
  });
});

describe('event tail', () => {
  test('a catch-up page overlapping live rows adds no duplicates', () => {
    const live = [event('1', '2026-11-28T10:00:00Z'), event('2', '2026-11-28T10:00:01Z')];
    let tail = m.mergeEvents([], live, 100);
    tail = m.mergeEvents(tail, [event('2', '2026-11-28T10:00:01Z'), event('3', '2026-11-28T10:00:02Z')], 100);
    assert.deepEqual(tail.map((e) => e.id), ['3', '2', '1']);
  });

  test('rows are newest first by timestamp, then id, whatever the arrival order', () => {
    const tail = m.mergeEvents(
      [],
      [event('b', '2026-11-28T10:00:00Z'), event('c', '2026-11-28T09:00:00Z'), event('a', '2026-11-28T10:00:00Z')],
      100,
    );
    assert.deepEqual(tail.map((e) => e.id), ['b', 'a', 'c']);
  });

  test('the tail keeps at most its cap, dropping the oldest', () => {
    const many = Array.from({ length: 10 }, (_, i) => event(String(i), new Date(Date.UTC(2026, 10, 28, 10, 0, i)).toISOString()));
    const tail = m.mergeEvents([], many, 3);
    assert.deepEqual(tail.map((e) => e.id), ['9', '8', '7']);
  });

  test('resuming starts after the row received last, not the one with the newest timestamp', () => {
    const tail = [
      event('new', '2026-11-28T10:00:05Z'),
      { ...event('backdated', '2026-11-28T09:00:00Z'), receivedAt: '2026-11-28T10:00:07Z' },
      event('old', '2026-11-28T10:00:00Z'),
    ];
    assert.equal(m.resumeCursor(tail), 'c-backdated');
    assert.equal(m.resumeCursor([]), null);
  });

  test('each metric type is charted with the aggregation that suits it', () => {
    assert.equal(m.aggregationFor('COUNTER').aggregation, 'RATE');
    assert.equal(m.aggregationFor('GAUGE').aggregation, 'AVG');
    assert.equal(m.aggregationFor('HISTOGRAM').aggregation, 'P95');
    assert.equal(m.aggregationFor('SUMMARY').aggregation, 'P95');
  });

  test('the filter keeps listed sources at or above the minimum level', () => {
    const e = event('1', '2026-11-28T10:00:00Z', { source: 'api', level: 'WARN' });
    assert.equal(m.matchesFilter(e, [], null), true);
    assert.equal(m.matchesFilter(e, ['api'], 'WARN'), true);
    assert.equal(m.matchesFilter(e, ['web'], null), false);
    assert.equal(m.matchesFilter(e, [], 'ERROR'), false);
    assert.equal(m.matchesFilter({ ...e, level: null }, [], 'TRACE'), false);
  });

  test('sources typed as a list are trimmed, de-duplicated and blanks dropped', () => {
    assert.deepEqual(m.parseSources(' api, web ,,api, '), ['api', 'web']);
    assert.deepEqual(m.parseSources(''), []);
  });
});

describe('chart', () => {
  const from = Date.UTC(2026, 10, 28, 10, 0, 0);
  const to = from + 3600_000;
  const at = (minutes) => new Date(from + minutes * 60_000).toISOString();

  test('points are scaled into the plot with zero at the bottom for positive data', () => {
    const g = m.chartGeometry([{ labels: { host: 'a' }, points: [{ timestamp: at(0), value: 0 }, { timestamp: at(60), value: 100 }] }], from, to, 600, 200, 3600_000);
    assert.equal(g.empty, false);
    assert.equal(g.paths[0].d, 'M0.0,200.0L600.0,0.0');
    assert.equal(g.paths[0].last, 100);
    assert.deepEqual(g.paths[0].lastAt, { x: 600, y: 0 });
    assert.equal(g.yTicks[0].label, '0');
    assert.equal(g.yTicks.at(-1).label, '100');
  });

  test('a gap longer than the step breaks the line instead of bridging it', () => {
    const g = m.chartGeometry([{ labels: {}, points: [
      { timestamp: at(0), value: 1 }, { timestamp: at(1), value: 1 }, { timestamp: at(30), value: 1 },
    ] }], from, to, 600, 200, 60_000);
    assert.equal(g.paths[0].d, 'M0.0,0.0L10.0,0.0M300.0,0.0h0');
  });

  test('points outside the window and non-finite values are left out', () => {
    const g = m.chartGeometry([{ labels: {}, points: [
      { timestamp: at(-5), value: 1 }, { timestamp: at(10), value: Number.NaN }, { timestamp: at(20), value: 2 },
    ] }], from, to, 600, 200, 60_000);
    assert.equal(g.paths[0].d, 'M200.0,0.0h0', 'only the point at minute 20, as a dot');
  });

  test('a flat or empty series still gets a usable axis', () => {
    const flat = m.chartGeometry([{ labels: {}, points: [{ timestamp: at(5), value: -3 }] }], from, to, 600, 200, 60_000);
    assert.ok(flat.yTicks.length >= 2);
    assert.ok(flat.yTicks.every((t) => Number.isFinite(t.y)));
    const empty = m.chartGeometry([], from, to, 600, 200, 60_000);
    assert.equal(empty.empty, true);
    assert.equal(empty.xTicks.length, 5, 'a tick every 15 minutes');
  });
});

describe('formatting', () => {
  test('labels print sorted, Prometheus style', () => {
    assert.equal(m.formatLabels({ job: 'api', env: 'prod' }), '{env="prod", job="api"}');
    assert.equal(m.formatLabels({}), '');
  });

  test('an alert is keyed by its rule and its label set, in any label order', () => {
    assert.equal(m.alertKey('r', { b: '2', a: '1' }), m.alertKey('r', { a: '1', b: '2' }));
    assert.notEqual(m.alertKey('r', { a: '1' }), m.alertKey('s', { a: '1' }));
  });

  test('ages and durations read as a person would say them', () => {
    const now = Date.parse('2026-11-28T12:00:00Z');
    assert.equal(m.timeAgo('2026-11-28T11:59:30Z', now), '30 s ago');
    assert.equal(m.timeAgo('2026-11-28T11:45:00Z', now), '15 min ago');
    assert.equal(m.timeAgo('2026-11-28T09:00:00Z', now), '3 h ago');
    assert.equal(m.timeAgo('2026-11-25T12:00:00Z', now), '3 d ago');
    assert.equal(m.timeAgo('2026-11-28T12:00:10Z', now), '0 s ago', 'a clock slightly ahead is not negative');
    assert.equal(m.formatDuration(42), '42 s');
    assert.equal(m.formatDuration(3900), '1 h 5 min');
    assert.equal(m.formatDuration(null), '—');
  });
});

describe('playground headers', () => {
  test('an Authorization holding only the scheme is dropped, a real one kept', () => {
    assert.deepEqual(headers.withoutEmptyAuthorization({ Authorization: 'Bearer ', 'X-Other': '1' }), { 'X-Other': '1' });
    assert.deepEqual(headers.withoutEmptyAuthorization({ authorization: '  bearer' }), {});
    assert.deepEqual(headers.withoutEmptyAuthorization({ Authorization: 'Bearer abc' }), { Authorization: 'Bearer abc' });
    assert.equal(headers.withoutEmptyAuthorization(undefined), undefined);
  });
});
