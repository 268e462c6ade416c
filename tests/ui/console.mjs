// Drives the /ui web console in Debian's chromium through playwright-core and checks what a
// user sees: sign-in, registry, create with the password shown once, lookup, lock/unlock,
// reset, audit filter and CSV download, and a read-only key's reduced view.
//
//   node console.mjs BASE_URL USER PASSWORD SCREENSHOT_DIR
//
// or the same through PGUA_UI_BASE_URL, PGUA_UI_USER, PGUA_UI_PASS, PGUA_UI_SCREENSHOTS
// (tests/api/ui.rs uses the environment, which keeps the password out of `ps`).
// Exits non-zero on the first failed check.

import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { launch } from './launch.mjs';

const [base, user, pass, shots] = [
  process.argv[2] ?? process.env.PGUA_UI_BASE_URL,
  process.argv[3] ?? process.env.PGUA_UI_USER,
  process.argv[4] ?? process.env.PGUA_UI_PASS,
  process.argv[5] ?? process.env.PGUA_UI_SCREENSHOTS ?? 'ui-screenshots',
];
if (!base || !user || !pass) {
  console.error('usage: node console.mjs BASE_URL USER PASSWORD [SCREENSHOT_DIR]');
  process.exit(2);
}
const started = Date.now();
const basic = `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
const username = `ui_${Date.now().toString(36)}_${process.pid}`;

function step(text) {
  console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${text}`);
}

await mkdir(shots, { recursive: true });
const browser = await launch();
const problems = [];
try {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 860 } });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  page.on('pageerror', (e) => problems.push(`uncaught: ${e.message}`));
  page.on('console', (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) problems.push(`CSP: ${m.text()}`);
  });
  // Any request that leaves the server under test would break "works offline".
  page.on('request', (r) => {
    const url = r.url();
    if (!url.startsWith(base) && !url.startsWith('blob:') && !url.startsWith('data:')) problems.push(`external request: ${url}`);
  });

  const shot = (name) => page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
  const text = (selector) => page.locator(selector).innerText();
  const messageContains = (fragment, kind) => page.waitForFunction(
    ([f, k]) => {
      const m = document.getElementById('message');
      return !m.hidden && m.textContent.includes(f) && (!k || m.classList.contains(k));
    },
    [fragment, kind],
  );
  const target = async (select, env, db) => page.selectOption(select, { label: `${env} / ${db}` });
  const nav = async (id) => {
    await page.click(`#nav-${id}`);
    await page.locator(`#${id}`).waitFor({ state: 'visible' });
  };
  /** Waits for the one-time password dialog, checks it, copies, dismisses; returns the password. */
  const oncePassword = async () => {
    await page.locator('#secret-dialog[open]').waitFor();
    const password = (await text('#secret-value')).trim();
    assert.match(password, /^[A-Za-z0-9_-]{20,}$/, 'a generated password is shown');
    assert.ok(await page.locator('#secret-copy').isVisible(), 'a Copy button is offered');
    assert.ok(await page.getByText('This password will not be shown again.').isVisible(), 'the one-time warning is visible');
    await page.click('#secret-copy');
    await page.waitForFunction(() => document.getElementById('secret-copied').textContent !== '');
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), password, 'Copy puts the password on the clipboard');
    return password;
  };
  const dismiss = async (password) => {
    await page.click('#secret-done');
    await page.locator('#secret-dialog').waitFor({ state: 'hidden' });
    assert.ok(!(await page.content()).includes(password), 'after dismissal the password is nowhere in the page');
  };

  step('(a) a wrong password shows an error');
  const response = await page.goto(`${base}/ui`);
  assert.equal(response.status(), 200);
  assert.match(response.headers()['content-security-policy'] ?? '', /script-src 'self'/);
  await page.check('input[name="method"][value="basic"]');
  await page.fill('#basic-user', user);
  await page.fill('#basic-pass', `${pass}-wrong`);
  await page.click('#sign-in-button');
  await messageContains('Sign-in failed', 'error');
  await shot('01-sign-in');
  assert.ok(await page.locator('#sign-in').isVisible(), 'still on the sign-in form');
  assert.equal(await page.locator('#nav button').count(), 0, 'no section is offered before sign-in');

  step('(b) Basic sign-in shows every section');
  await page.fill('#basic-pass', pass);
  await page.click('#sign-in-button');
  await page.locator('#registry').waitFor({ state: 'visible' });
  assert.equal(await text('#principal'), user);
  assert.deepEqual(await page.locator('#nav button').allInnerTexts(), ['Registry', 'Users', 'Create', 'Audit log']);
  assert.ok(await page.locator('#message').isHidden(), 'the sign-in error is cleared');
  assert.equal(await page.inputValue('#basic-pass'), '', 'the password field is emptied');
  assert.deepEqual(
    await page.evaluate(() => [localStorage.length, sessionStorage.length, document.cookie]),
    [0, 0, ''],
    'credentials are kept in memory only',
  );

  step('(c) the registry lists the registered databases');
  const registry = await page.locator('#registry-table tbody tr').evaluateAll(
    (rows) => rows.map((r) => [...r.cells].slice(0, 5).map((c) => c.textContent)),
  );
  for (const [env, db, active] of [['dev', 'dev', 'yes'], ['prod', 'prod', 'yes'], ['dev', 'archive', 'no']]) {
    assert.ok(registry.some((r) => r[0] === env && r[1] === db && r[4] === active), `registry shows ${env}/${db}: ${JSON.stringify(registry)}`);
  }
  await shot('02-registry');

  step(`(d) create devqa user ${username} in dev/dev: the password is shown once`);
  await nav('create');
  await page.selectOption('#create-profile', 'devqa');
  await target('#create-target', 'dev', 'dev');
  await page.fill('#param-username', username);
  await page.click('#create-button');
  const first = await oncePassword();
  await shot('03-create-password-shown');
  await messageContains(`${username}: user created`, 'ok');
  await dismiss(first);
  // An existing name is reported, and no password appears.
  await page.fill('#param-username', username);
  await page.click('#create-button');
  await messageContains(`${username}: user already exists`);
  assert.ok(await page.locator('#secret-dialog').isHidden());

  step('(e) look the user up: found, with its privileges');
  await nav('users');
  await target('#lookup-target', 'dev', 'dev');
  await page.fill('#lookup-username', username);
  await page.click('#lookup-button');
  await page.locator('#user-card').waitFor();
  assert.equal(await text('#user-card .badge'), 'found');
  const privileges = await text('#privileges');
  assert.match(privileges, /Database privileges[\s\S]*CONNECT/, privileges);
  assert.match(privileges, /20 connections/, privileges);
  assert.match(privileges, /devqa@/, 'the creating profile is shown');
  assert.match(privileges, /search_path=public/, privileges);
  assert.ok((await page.locator('#schemas-table tbody tr').count()) >= 1, 'schemas are listed');
  await shot('04-user-lookup');

  step('(f) lock, unlock, reset');
  await page.click('#action-lock');
  await messageContains(`${username}: user locked`, 'ok');
  assert.match(await text('#privileges'), /Cannot login/);
  assert.ok(await page.locator('#action-lock').isDisabled(), 'a locked user cannot be locked again');
  await page.click('#action-unlock');
  await messageContains(`${username}: user unlocked`, 'ok');
  assert.doesNotMatch(await text('#privileges'), /Cannot login/);
  assert.ok(await page.locator('#action-unlock').isDisabled(), 'an unlocked user cannot be unlocked again');
  await page.click('#action-reset');
  const second = await oncePassword();
  assert.notEqual(second, first, 'reset gives a new password');
  await messageContains(`${username}: password reset`, 'ok');
  await dismiss(second);

  step('(g) audit: filter by the user, download CSV');
  await nav('audit');
  await page.fill('#audit-username', username);
  await page.click('#audit-search');
  await page.waitForFunction(
    (u) => [...document.querySelectorAll('#audit-table tbody tr')].every((r) => r.querySelector('.audit-username')?.textContent === u),
    username,
  );
  const cells = await page.locator('#audit-table tbody td.audit-username').allInnerTexts();
  assert.ok(cells.length > 0, 'the user has audit records');
  assert.ok(cells.every((c) => c === username), `every row is the user's: ${cells}`);
  const operations = await page.locator('#audit-table tbody tr').evaluateAll((rows) => rows.map((r) => r.cells[6].textContent));
  for (const op of ['create:devqa', 'lock', 'unlock', 'reset']) assert.ok(operations.includes(op), `audit shows ${op}: ${operations}`);
  await shot('05-audit');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#audit-csv')]);
  assert.equal(download.suggestedFilename(), 'audit.csv');
  const csv = (await readFile(await download.path(), 'utf8')).trimEnd().split('\n');
  assert.match(csv[0], /^id,performed_at,request_id,principal,/, 'CSV header row');
  assert.equal(csv.length - 1, cells.length, 'one CSV row per record shown');
  assert.ok(csv.slice(1).every((line) => line.includes(`,${username},`)), 'every CSV row is the user\'s');

  step('(h) a read-only API key sees no create, reset, lock or audit');
  const keyName = `ui-read-${process.pid}-${Date.now()}`;
  const created = await fetch(`${base}/api/v1/keys/create`, {
    method: 'POST',
    headers: { Authorization: basic, 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: keyName, owner: 'ui-test', environments: 'dev', operations: 'read' }),
  });
  assert.equal(created.status, 200, await created.clone().text());
  const { key } = await created.json();
  await page.click('#sign-out');
  await page.locator('#sign-in').waitFor({ state: 'visible' });
  assert.equal(await page.locator('#nav button').count(), 0);
  await page.check('input[name="method"][value="key"]');
  await page.fill('#api-key', key);
  await page.click('#sign-in-button');
  await page.locator('#registry').waitFor({ state: 'visible' });
  assert.equal(await text('#principal'), `key:${keyName}`);
  assert.deepEqual(await page.locator('#nav button').allInnerTexts(), ['Registry', 'Users']);
  const envs = await page.locator('#registry-table tbody tr td:first-child').allInnerTexts();
  assert.ok(envs.length > 0 && envs.every((e) => e === 'dev'), `a dev-scoped key sees dev entries only: ${envs}`);
  await nav('users');
  await target('#lookup-target', 'dev', 'dev');
  await page.fill('#lookup-username', username);
  await page.click('#lookup-button');
  await page.locator('#user-card').waitFor();
  assert.equal(await text('#user-card .badge'), 'found');
  for (const control of ['#nav-create', '#nav-audit', '#action-reset', '#action-lock', '#action-unlock', '#user-actions']) {
    assert.equal(await page.locator(control).count(), 0, `${control} is not offered`);
  }
  await shot('06-read-only');

  step('reloading the page signs out');
  await page.reload();
  assert.ok(await page.locator('#sign-in').isVisible());
  assert.equal(await page.locator('#nav button').count(), 0);

  step('the API documentation renders from the binary alone');
  await page.goto(`${base}/docs/`);
  await page.locator('.swagger-ui .info .title').filter({ hasText: 'pg-user-api' }).waitFor();
  await page.locator('#operations-users-reset').waitFor();
  assert.ok(await page.locator('#operations-users-create_devqa').isVisible(), 'each profile has its path');
  await shot('07-api-docs');

  assert.deepEqual(problems, [], 'no script errors, CSP violations or external requests');
  step(`all checks passed; screenshots in ${shots}`);
} finally {
  await browser.close();
}
