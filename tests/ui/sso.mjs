// Drives the /ui web console's single sign-on in Debian's chromium through playwright-core,
// against the test OpenID Provider (tests/oidc/provider.mjs) that tests/api/ui.rs starts:
// sign in as alice (group pgua-dev: read and create devqa users in dev), see only what
// that allows, create a user, check that a cross-site form post and a call without the
// CSRF token are refused, sign out, and check that the old session cookie no longer works.
//
// Environment: PGUA_UI_BASE_URL, PGUA_UI_USER and PGUA_UI_PASS (Basic, to check results
// behind the page's back), PGUA_UI_SCREENSHOTS, PGUA_CHROMIUM. Exits non-zero on the first
// failed check.

import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { launch } from './launch.mjs';

const base = process.env.PGUA_UI_BASE_URL;
const basic = `Basic ${Buffer.from(`${process.env.PGUA_UI_USER}:${process.env.PGUA_UI_PASS}`).toString('base64')}`;
const shots = process.env.PGUA_UI_SCREENSHOTS ?? 'ui-screenshots';
const username = `sso_${Date.now().toString(36)}_${process.pid}`;
const forged = `${username}_csrf`;
const started = Date.now();

function step(text) {
  console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${text}`);
}

/** Whether `name` exists in dev/dev, asked with Basic credentials. */
async function exists(name) {
  const res = await fetch(`${base}/api/v1/users/find?env=dev&database=dev&username=${name}`, { headers: { Authorization: basic } });
  assert.equal(res.status, 200);
  return (await res.json()).found;
}

// Another site: a page on `localhost` (the console is on 127.0.0.1) whose form posts to the
// console's API by itself, as an attacker's page would.
const evil = http.createServer((req, res) => {
  res.setHeader('Content-Type', 'text/html');
  res.end(`<!doctype html><form id="f" method="post" action="${base}/api/v1/users/devqa">
    <input name="env" value="dev"><input name="database" value="dev"><input name="username" value="${forged}">
    </form><script>document.getElementById('f').submit()</script>`);
});
await new Promise((resolve) => evil.listen(0, '127.0.0.1', resolve));
const evilUrl = `http://localhost:${evil.address().port}/`;

await mkdir(shots, { recursive: true });
const browser = await launch();
const problems = [];
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  page.on('pageerror', (e) => problems.push(`uncaught: ${e.message}`));
  page.on('console', (m) => {
    if (page.url().startsWith(base) && /Content Security Policy|Refused to/i.test(m.text())) problems.push(`CSP: ${m.text()}`);
  });
  const shot = (name) => page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
  const text = (selector) => page.locator(selector).innerText();

  step('the console offers "Sign in with Test IdP" beside the key/Basic form');
  await page.goto(`${base}/ui`);
  await page.locator('#sso').waitFor({ state: 'visible' });
  assert.equal(await text('#sso-sign-in'), 'Sign in with Test IdP');
  assert.ok(await page.locator('#sign-in-form').isVisible(), 'the key/Basic form stays');
  await shot('08-sso-offered');

  step('sign in through the provider as alice');
  await page.click('#sso-sign-in');
  await page.locator('input[name="login"]').waitFor();
  await page.fill('input[name="login"]', 'alice');
  await page.fill('input[name="password"]', 'anything');
  const loginPage = page.url();
  await page.click('button[type="submit"]');
  // The provider asks for consent once, on a page of its own.
  await page.waitForURL((u) => u.href !== loginPage && (u.href.startsWith(base) || u.pathname.startsWith('/interaction/')));
  if (!page.url().startsWith(base)) {
    await page.locator('button[type="submit"]').click();
  }
  await page.waitForURL(`${base}/ui/`);
  await page.locator('#registry').waitFor({ state: 'visible' });
  assert.equal(await text('#principal'), 'oidc:alice@example.com');

  step('only what the group allows is offered');
  assert.deepEqual(await page.locator('#nav button').allInnerTexts(), ['Registry', 'Users', 'Create']);
  const envs = await page.locator('#registry-table tbody tr td:first-child').allInnerTexts();
  assert.ok(envs.length > 0 && envs.every((e) => e === 'dev'), `dev entries only: ${envs}`);
  assert.deepEqual(
    await page.evaluate(() => [localStorage.length, sessionStorage.length, document.cookie]),
    [0, 0, ''],
    'no token in storage, and the session cookie is HttpOnly',
  );
  const [cookie] = (await context.cookies(base)).filter((c) => c.name === 'pgua_session');
  assert.ok(cookie, 'a session cookie is set');
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, 'Strict');
  assert.equal(cookie.path, '/');
  await shot('09-sso-signed-in');

  step(`create devqa user ${username}`);
  await page.click('#nav-create');
  await page.locator('#create').waitFor({ state: 'visible' });
  assert.deepEqual(await page.locator('#create-profile option').allInnerTexts(), ['devqa']);
  await page.selectOption('#create-target', { label: 'dev / dev' });
  await page.fill('#param-username', username);
  await page.click('#create-button');
  await page.locator('#secret-dialog[open]').waitFor();
  await page.click('#secret-done');
  assert.ok(await exists(username), 'the user was created');
  await shot('10-sso-created');

  step('a call from the page without the CSRF token is refused');
  const status = await page.evaluate(async (u) => (await fetch(
    `/api/v1/users/devqa?env=dev&database=dev&username=${u}`, { credentials: 'same-origin' },
  )).status, forged);
  assert.equal(status, 403);

  step('a cross-site form post is refused');
  const posted = context.waitForEvent('response', (r) => r.url().startsWith(`${base}/api/v1/users/devqa`));
  const other = await context.newPage();
  await other.goto(evilUrl);
  const response = await posted;
  assert.ok([401, 403].includes(response.status()), `cross-site post answered ${response.status()}`);
  await other.close();
  assert.equal(await exists(forged), false, 'nothing was created by the forged calls');

  step('sign out; the old session cookie no longer works');
  await page.click('#sign-out');
  await page.locator('#sign-in').waitFor({ state: 'visible' });
  assert.ok(await page.locator('#sso').isVisible());
  const old = await fetch(`${base}/api/v1/me`, { headers: { Cookie: `pgua_session=${cookie.value}` } });
  assert.equal(old.status, 401, 'the ended session is refused');
  await page.reload();
  await page.locator('#sso').waitFor({ state: 'visible' });
  assert.equal(await page.locator('#nav button').count(), 0, 'a reload after sign-out stays signed out');
  await shot('11-sso-signed-out');

  assert.deepEqual(problems, [], 'no script errors or CSP violations on the console');
  step('all single sign-on checks passed');
} finally {
  await browser.close();
  evil.close();
}
