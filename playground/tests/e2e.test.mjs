// End-to-end tests of the playground (`/`) and the dashboard (`/dashboard`)
// in a real headless Chromium against the real server. Any request a page
// makes to another host than the server fails the test. Screenshots go to
// playground/screenshots/ (or $SCREENSHOT_DIR).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { buildClientSchema, getIntrospectionQuery } from 'graphql';

import { launch, watchedContext } from './browser.mjs';
import { ADMIN_PASSWORD, PLAYGROUND_DIR, SightlineServer, waitFor } from './server.mjs';

const SHOTS = process.env.SCREENSHOT_DIR ?? join(PLAYGROUND_DIR, 'screenshots');
mkdirSync(SHOTS, { recursive: true });

let server;
let browser;
let schema;
let adminToken;

/** Whether the server's schema has `Type.field` (a feature that has landed). */
function has(type, field) {
  const t = schema.getType(type);
  return Boolean(t && 'getFields' in t && t.getFields()[field]);
}

function missing(...pairs) {
  const absent = pairs.filter(([t, f]) => !has(t, f)).map(([t, f]) => `${t}.${f}`);
  return absent.length ? `the server has no ${absent.join(', ')} yet` : false;
}

function assertClean(watch) {
  assert.deepEqual(watch.foreign, [], 'requests to hosts other than the server');
  assert.deepEqual(watch.problems, [], 'page errors, CSP violations or failed requests');
}

before(async () => {
  server = await new SightlineServer().start();
  await server.checkEmbeddedAssets();
  const data = await server.gql(getIntrospectionQuery());
  schema = buildClientSchema(data);
  adminToken = await server.login();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  if (server) {
    if (process.env.E2E_SERVER_LOG === undefined && process.exitCode) process.stderr.write(server.log);
    await server.dispose();
  }
});

// ---------------------------------------------------------------- playground

/** Replaces the content of the Monaco editor inside `container`. */
async function setEditor(page, container, text) {
  await container.locator('.monaco-editor').first().click();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  await page.keyboard.insertText(text);
}

async function responseText(page) {
  return (await page.locator('.graphiql-response').innerText()).replace(/\u00a0/g, ' ');
}

async function editorText(page) {
  return (await page.locator('.graphiql-query-editor').innerText()).replace(/\s+/g, ' ');
}

async function openTab(page, name) {
  // On a cold page the tab bar can switch before the query editor does (it
  // may still be starting and keep the first document); running then would
  // send the previous document under this operation name. So the tab counts
  // as open once the editor shows its document, clicking it again if not.
  let clickedAt = 0;
  await waitFor(
    `the ${name} tab with its document in the query editor`,
    async () => {
      const active = (await page.locator('.graphiql-tab-active').innerText()).startsWith(name);
      const text = await editorText(page);
      if (active && text.includes(name)) return true;
      if (Date.now() - clickedAt > 3_000) {
        await page.locator('.graphiql-tab-button').getByText(name, { exact: true }).click();
        clickedAt = Date.now();
      }
      throw new Error(`active tab ${active ? name : 'another'}; editor shows: ${text.slice(0, 200)}`);
    },
    { timeout: 30_000 },
  );
}

/**
 * Presses the execute button until `done` says the run it starts was seen.
 * Under load a press can land while the editors are still settling and start
 * nothing; it is pressed again only when nothing is running (the button
 * offers "Execute", not "Stop") and nothing came of the last press for 3 s.
 * Every run here is a read or a subscription, safe to start again.
 */
async function executeUntil(page, what, done) {
  const button = page.locator('.graphiql-execute-button');
  let pressedAt = 0;
  await waitFor(
    what,
    async () => {
      if (await done()) return true;
      const idle = ((await button.getAttribute('aria-label')) ?? '').startsWith('Execute');
      if (idle && Date.now() - pressedAt > 3_000) {
        await button.click();
        pressedAt = Date.now();
      }
      return false;
    },
    { timeout: 30_000 },
  );
}

function headersEditor(page) {
  return page.locator('section.graphiql-editor-tool[aria-label="Headers"] .graphiql-editor:not(.hidden)');
}

async function openPlayground() {
  const watch = await watchedContext(browser, server.origin);
  const page = await watch.context.newPage();
  const initPayloads = [];
  page.on('websocket', (ws) => {
    ws.on('framesent', (frame) => {
      try {
        const msg = JSON.parse(String(frame.payload));
        if (msg.type === 'connection_init') initPayloads.push(msg.payload);
      } catch {
        // Not JSON: not ours to check.
      }
    });
  });
  await page.goto(`${server.origin}/`);
  await page.locator('.graphiql-container').waitFor();
  // The editors are up once the first tab's document is on screen.
  await waitFor('the query editor to show the first document', async () =>
    (await editorText(page)).includes('Welcome'),
  );
  return { watch, page, initPayloads };
}

describe('playground', () => {
  test('runs `me` with the token from the headers editor', async () => {
    const { watch, page } = await openPlayground();
    // The headers editor starts with the Authorization template.
    await waitFor('the prefilled headers', async () =>
      (await headersEditor(page).innerText()).replace(/\u00a0/g, ' ').includes('"Authorization": "Bearer "'),
    );

    // `me` without a token: a clear error, not a crash.
    await openTab(page, 'Me');
    await executeUntil(page, 'the unauthenticated answer', async () =>
      (await responseText(page)).includes('UNAUTHENTICATED'),
    );

    // `me` with the token pasted into the headers editor.
    await setEditor(page, headersEditor(page), `{"Authorization": "Bearer ${adminToken}"}`);
    await executeUntil(page, '`me` to answer admin', async () => {
      const text = await responseText(page);
      return text.includes('"username": "admin"') && text.includes('"role": "ADMIN"');
    });
    await page.screenshot({ path: join(SHOTS, 'playground.png') });
    assertClean(watch);
    await watch.context.close();
  });

  test('streams an event created by another client on a subscription', async (t) => {
    const skip = missing(['Subscription', 'eventCreated'], ['Mutation', 'createEvent']);
    if (skip) {
      t.skip(skip);
      return;
    }
    const { watch, page, initPayloads } = await openPlayground();
    // The preloaded subscription tab, with the token in its headers.
    await openTab(page, 'LiveEvents');
    await setEditor(page, headersEditor(page), `{"Authorization": "Bearer ${adminToken}"}`);
    await executeUntil(page, 'the connection_init carrying the token', async () =>
      initPayloads.some((p) => p && p.Authorization === `Bearer ${adminToken}`),
    );

    // Another client ingests events until one shows up (the subscription may
    // need a moment to be registered after connection_init).
    const marker = `e2e-${randomUUID()}`;
    let sent = 0;
    await waitFor(
      'the event to appear in the subscription',
      async () => {
        if ((await responseText(page)).includes(marker)) return true;
        sent += 1;
        await server.gql(
          'mutation($input: CreateEventInput!) { createEvent(input: $input) { id } }',
          { input: { eventType: 'LOG', source: 'e2e-playground', level: 'ERROR', message: `${marker} #${sent}` } },
          adminToken,
        );
        return false;
      },
      { timeout: 15_000, interval: 700 },
    );
    await page.screenshot({ path: join(SHOTS, 'playground-subscription.png') });
    await page.locator('.graphiql-execute-button').click(); // stop the subscription
    assertClean(watch);
    await watch.context.close();
  });
});

// ----------------------------------------------------------------- dashboard

async function logIn(page) {
  await page.goto(`${server.origin}/dashboard`);
  await page.locator('input[name=username]').fill('admin');
  await page.locator('input[name=password]').fill(ADMIN_PASSWORD);
  await page.getByRole('button', { name: 'Log in' }).click();
  await waitFor('the live badge', async () =>
    (await page.getByTestId('link-state').innerText()) === 'live',
  );
}

async function createIncident(title, severity = 'HIGH') {
  const data = await server.gql(
    'mutation($input: CreateIncidentInput!) { createIncident(input: $input) { id } }',
    { input: { title, severity, description: 'opened by the browser test', sources: ['e2e-dashboard'] } },
    adminToken,
  );
  return data.createIncident.id;
}

async function createEvent(message, source = 'e2e-dashboard', level = 'WARN') {
  const data = await server.gql(
    'mutation($input: CreateEventInput!) { createEvent(input: $input) { id } }',
    { input: { eventType: 'LOG', source, level, message } },
    adminToken,
  );
  return data.createEvent.id;
}

describe('dashboard', () => {
  test('logs in, shows a new incident without reload, and resolves it from the page', async (t) => {
    const skip = missing(
      ['Query', 'incidents'],
      ['Subscription', 'incidentCreated'],
      ['Subscription', 'incidentUpdated'],
      ['Mutation', 'createIncident'],
      ['Mutation', 'resolveIncident'],
    );
    const watch = await watchedContext(browser, server.origin);
    const page = await watch.context.newPage();
    await page.goto(`${server.origin}/dashboard`);
    await page.screenshot({ path: join(SHOTS, 'dashboard-login.png') });
    await logIn(page);
    assert.ok(
      await page.evaluate(() => Boolean(sessionStorage.getItem('sightline.token'))),
      'the token is kept in sessionStorage',
    );
    if (skip) {
      await page.screenshot({ path: join(SHOTS, 'dashboard.png'), fullPage: true });
      assertClean(watch);
      await watch.context.close();
      t.skip(skip);
      return;
    }
    await page.getByText('No open incidents.').waitFor();

    const title = `Checkout failing ${randomUUID().slice(0, 8)}`;
    const id = await createIncident(title, 'CRITICAL');
    const row = page.locator(`[data-incident-id="${id}"]`);
    await row.waitFor({ timeout: 10_000 });
    assert.match(await row.innerText(), new RegExp(title));
    assert.equal(
      await page.locator('[data-severity="CRITICAL"] [data-incident-id]').count(),
      1,
      'the incident is listed under its severity',
    );
    await page.screenshot({ path: join(SHOTS, 'dashboard.png'), fullPage: true });

    await row.click();
    const detail = page.getByTestId('incident-detail');
    await detail.waitFor();
    await waitFor('the detail to load', async () =>
      (await detail.getByTestId('incident-status').innerText()).toLowerCase() === 'open',
    );
    // Acknowledge it and leave a note: both show in the panel and its timeline.
    await detail.getByRole('button', { name: 'Acknowledge' }).click();
    await detail.getByRole('button', { name: 'Acknowledged' }).waitFor();
    await detail.locator('textarea[name=note]').fill('rolling back the payment client');
    await detail.getByRole('button', { name: 'Add note' }).click();
    await detail.locator('.notes li', { hasText: 'rolling back the payment client' }).waitFor();
    await detail.locator('.timeline .kind-note').first().waitFor();
    // The list follows incidentUpdated: the row now says acknowledged.
    await row.locator('.ack').waitFor();

    await detail.locator('input[name=rootCause]').fill('payment provider outage');
    await detail.getByRole('button', { name: 'Resolve' }).click();
    await waitFor('the detail to show the incident resolved', async () =>
      (await detail.getByTestId('incident-status').innerText()).toLowerCase() === 'resolved',
    );
    assert.match(await detail.innerText(), /payment provider outage/);
    // The open list follows through incidentUpdated: the incident leaves it.
    await waitFor('the incident to leave the open list', async () => (await row.count()) === 0);
    await page.screenshot({ path: join(SHOTS, 'incident.png'), fullPage: true });

    assertClean(watch);
    await watch.context.close();
  });

  test('reconnects after a server restart and resumes without duplicate rows', async (t) => {
    const skip = missing(['Query', 'events'], ['Subscription', 'eventCreated'], ['Mutation', 'createEvent']);
    if (skip) {
      t.skip(skip);
      return;
    }
    const watch = await watchedContext(browser, server.origin);
    const page = await watch.context.newPage();
    await logIn(page);
    const tail = page.locator('.event-table tbody');
    const rowCount = (id) => tail.locator(`[data-event-id="${id}"]`).count();
    const created = [];
    // Creates events until one of them shows up live (the subscription may
    // need a moment to be registered once the socket is up).
    const createUntilShown = async (label) => {
      const mine = [];
      await waitFor(
        label,
        async () => {
          for (const id of mine) if ((await rowCount(id)) > 0) return true;
          const id = await createEvent(`${label} #${mine.length + 1}`);
          mine.push(id);
          created.push(id);
          return false;
        },
        { interval: 700 },
      );
    };
    const expectEachOnce = (what) =>
      waitFor(what, async () => {
        for (const id of created) if ((await rowCount(id)) !== 1) return false;
        return true;
      });

    // Only warnings and worse from the test's own source.
    await page.locator('input[name=sources]').fill('e2e-dashboard');
    await page.locator('select[name=level]').selectOption('WARN');
    await page.getByRole('button', { name: 'Filter' }).click();

    await createUntilShown(`before restart ${randomUUID().slice(0, 8)}`);
    // Filtered out: too low a level, another source. Later events showing up
    // live proves these had their chance to arrive.
    const filteredOut = [
      await createEvent('below the level filter', 'e2e-dashboard', 'INFO'),
      await createEvent('another source', 'e2e-elsewhere', 'ERROR'),
    ];
    await createUntilShown(`still before restart ${randomUUID().slice(0, 8)}`);
    await expectEachOnce('the events from before the restart');
    for (const id of filteredOut) assert.equal(await rowCount(id), 0, 'filtered-out event shown');

    await server.stop();
    await waitFor('the dashboard to notice', async () =>
      (await page.getByTestId('link-state').innerText()) !== 'live',
    );
    await server.start();
    // Written while the dashboard is still reconnecting: it comes back
    // through the catch-up query (events(after:)), not the subscription.
    created.push(await createEvent(`during reconnect ${randomUUID().slice(0, 8)}`));
    await waitFor(
      'the dashboard to reconnect',
      async () => (await page.getByTestId('link-state').innerText()) === 'live',
      { timeout: 20_000 },
    );
    await expectEachOnce('the event written while reconnecting');

    await createUntilShown(`after restart ${randomUUID().slice(0, 8)}`);
    await expectEachOnce('every event exactly once after the restart');
    const ids = await tail
      .locator('tr[data-event-id]')
      .evaluateAll((rows) => rows.map((r) => r.getAttribute('data-event-id')));
    assert.equal(new Set(ids).size, ids.length, 'no duplicate rows');
    assert.equal(ids.length, created.length, 'every event created is shown, once');
    await page.screenshot({ path: join(SHOTS, 'dashboard-after-restart.png'), fullPage: true });

    assertClean(watch);
    await watch.context.close();
  });

  const submitMetric = (name, value) =>
    server.gql(
      'mutation($input: SubmitMetricInput!) { submitMetric(input: $input) { id } }',
      { input: { name, metricType: 'GAUGE', value, labels: { host: 'web-1' } } },
      adminToken,
    );

  test("draws a metric's last hour and follows new samples", async (t) => {
    const skip = missing(['Mutation', 'submitMetric'], ['Query', 'metricNames'], ['Query', 'metricSeries']);
    if (skip) {
      t.skip(skip);
      return;
    }
    const metric = `e2e_queue_depth_${randomUUID().slice(0, 8)}`;
    await submitMetric(metric, 3);
    const watch = await watchedContext(browser, server.origin);
    const page = await watch.context.newPage();
    await logIn(page);

    const picker = page.locator('.metric select');
    await waitFor('the metric in the picker', async () => {
      await picker.focus(); // re-reads the names
      return (await picker.locator(`option[value="${metric}"]`).count()) === 1;
    });
    await picker.selectOption(metric);
    const line = page.locator('.metric path.series');
    await waitFor('a line for the metric', async () => ((await line.getAttribute('d')) ?? '').startsWith('M'));
    assert.match(await page.locator('.metric .legend').innerText(), /host="web-1"/);
    const lastValue = async () =>
      Number((await page.locator('.metric .legend li .muted').first().innerText()).trim());
    assert.equal(await lastValue(), 3);

    // The chart re-reads its sliding window: the last point takes the 42 in.
    await submitMetric(metric, 42);
    await waitFor('the chart to take the new sample in', async () => (await lastValue()) > 3, {
      timeout: 25_000,
      interval: 500,
    });
    await page.screenshot({ path: join(SHOTS, 'dashboard-metric.png'), fullPage: true });
    assertClean(watch);
    await watch.context.close();
  });

  test('shows an alert as it starts firing', async (t) => {
    const skip = missing(
      ['Mutation', 'createAlertRule'],
      ['Mutation', 'submitMetric'],
      ['Query', 'alerts'],
      ['Subscription', 'alertStateChanged'],
    );
    if (skip) {
      t.skip(skip);
      return;
    }
    const metric = `e2e_error_rate_${randomUUID().slice(0, 8)}`;
    await submitMetric(metric, 1);
    const watch = await watchedContext(browser, server.origin);
    const page = await watch.context.newPage();
    await logIn(page);
    const alerts = page.locator('.alerts');
    await alerts.getByText('Nothing is firing.').waitFor();

    // A rule that fires at once on the next sample; the panel follows alertStateChanged.
    const rule = `Error rate too high ${randomUUID().slice(0, 8)}`;
    await server.gql(
      'mutation($input: CreateAlertRuleInput!) { createAlertRule(input: $input) { id } }',
      { input: { name: rule, query: `${metric} > 10`, severity: 'CRITICAL', evaluationInterval: 1 } },
      adminToken,
    );
    await submitMetric(metric, 42);
    await alerts.locator('li', { hasText: rule }).waitFor({ timeout: 20_000 });
    assert.match(await alerts.innerText(), /host="web-1"/);
    await page.screenshot({ path: join(SHOTS, 'dashboard-alerts.png'), fullPage: true });
    assertClean(watch);
    await watch.context.close();
  });

  test('is usable on a narrow screen', async () => {
    const watch = await watchedContext(browser, server.origin, { viewport: { width: 390, height: 844 } });
    const page = await watch.context.newPage();
    await logIn(page);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow}px`);
    await page.screenshot({ path: join(SHOTS, 'dashboard-narrow.png'), fullPage: true });
    assertClean(watch);
    await watch.context.close();
  });
});
