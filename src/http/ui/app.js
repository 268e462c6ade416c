// The pg-user-api web console. Plain ES module, no dependencies.
//
// Key and Basic credentials live in `session` only (never in storage or cookies), so
// reloading the page signs out. After single sign-on the credential is the server's
// HttpOnly session cookie, which this script never sees; it only holds the session's CSRF
// token (from /api/v1/me) and sends it with every call. Every value from the API reaches
// the page through textContent, never as HTML.

const AUDIT_PAGE = 100;

/** The signed-in caller: { authorization, principal, scopes } or, after single sign-on,
 * { csrf, principal, scopes }; null when signed out. */
let session = null;
/** Active registry entries the caller may see. */
let targets = [];
/** Profiles the caller may create. */
let profiles = [];
/** The user shown in the lookup panel: { env, database, username }. */
let current = null;
/** Audit paging: cursors (after_id) of the pages before the one shown, and of the next. */
let audit = { filters: {}, cursors: [], after: 0, next: null };
/** Counts audit requests, so that an answer overtaken by a newer one is dropped. */
let auditRequests = 0;

const $ = (id) => document.getElementById(id);

/** An element with properties and children (strings become text nodes). */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'class') node.className = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node[key] = value;
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** An error the API answered, with its `error` text. */
class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Calls the API with the session's credentials; GET for reads, POST (JSON) for changes. */
async function call(path, params = {}, { method = 'GET', raw = false, authorization } = {}) {
  const url = new URL(path, location.origin);
  const body = {};
  for (const [key, value] of Object.entries(params)) {
    if (value === '' || value === null || value === undefined) continue;
    if (method === 'GET') url.searchParams.set(key, value);
    else body[key] = value;
  }
  const cookie = authorization === undefined && session?.csrf !== undefined;
  // Key or Basic: credentials 'omit', so no cookie rides along and a 401 never opens the
  // browser's own Basic prompt. Single sign-on: the session cookie, and its CSRF token.
  const headers = cookie
    ? { 'X-CSRF-Token': session.csrf }
    : { Authorization: authorization ?? session?.authorization ?? '' };
  const init = { method, headers, cache: 'no-store', credentials: cookie ? 'same-origin' : 'omit' };
  if (method !== 'GET') {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(url, init);
  if (!res.ok) {
    let message = `${res.status} ${res.statusText}`;
    try {
      const json = await res.json();
      message = json.error ?? json.status ?? message;
    } catch {
      // Not JSON: keep the status line.
    }
    throw new ApiError(res.status, message);
  }
  return raw ? res : res.json();
}

function can(operation) {
  return session?.scopes.operations.includes(operation) ?? false;
}

function allows(list, item) {
  return list.includes('*') || list.includes(item);
}

function say(text, kind = 'info') {
  const box = $('message');
  box.textContent = text;
  box.className = `message ${kind}`;
  box.hidden = false;
}

function quiet() {
  $('message').hidden = true;
  $('message').textContent = '';
}

/** Runs an action, showing any error in the message area and disabling `button` meanwhile. */
async function guarded(button, action) {
  quiet();
  if (button) button.disabled = true;
  try {
    await action();
  } catch (e) {
    say(e instanceof ApiError ? e.message : `Request failed: ${e.message}`, 'error');
  } finally {
    if (button) button.disabled = false;
  }
}

// ---- sign-in -------------------------------------------------------------------------

function method() {
  return document.querySelector('input[name="method"]:checked').value;
}

function showMethod() {
  $('key-fields').hidden = method() !== 'key';
  $('basic-fields').hidden = method() !== 'basic';
}

function authorization() {
  if (method() === 'key') return `Bearer ${$('api-key').value.trim()}`;
  const bytes = new TextEncoder().encode(`${$('basic-user').value}:${$('basic-pass').value}`);
  return `Basic ${btoa(String.fromCharCode(...bytes))}`;
}

async function signIn(event) {
  event.preventDefault();
  quiet();
  const header = authorization();
  const button = $('sign-in-button');
  button.disabled = true;
  try {
    const me = await call('/api/v1/me', {}, { authorization: header });
    session = { authorization: header, principal: me.principal, scopes: me.scopes };
    for (const id of ['api-key', 'basic-user', 'basic-pass']) $(id).value = '';
    await start();
  } catch (e) {
    session = null;
    const text = e instanceof ApiError && e.status === 401
      ? 'Sign-in failed: wrong API key or user name and password.'
      : `Sign-in failed: ${e.message}`;
    say(text, 'error');
  } finally {
    button.disabled = false;
  }
}

/** Fixed texts for the callback's `sso_error` codes (never text from the URL). */
const SSO_ERRORS = {
  'no-group': 'Single sign-on worked, but you are in no group that may use pg-user-api.',
  refused: 'Single sign-on was refused; please try again.',
  provider: 'The identity provider cannot be reached; please try again later.',
  unavailable: 'Signing in is not possible right now; please try again later.',
};

/** Offers single sign-on when configured, and resumes a session the cookie still holds. */
async function offerSso() {
  const error = new URLSearchParams(location.search).get('sso_error');
  if (error !== null) {
    history.replaceState(null, '', location.pathname);
    say(SSO_ERRORS[error] ?? SSO_ERRORS.refused, 'error');
  }
  let info;
  try {
    const res = await fetch('/auth/oidc', { cache: 'no-store', credentials: 'same-origin' });
    info = await res.json();
  } catch {
    return;
  }
  if (!info.enabled) return;
  $('sso-provider').textContent = info.provider;
  $('sso').hidden = false;
  if (!info.signed_in) return;
  const res = await fetch('/api/v1/me', { cache: 'no-store', credentials: 'same-origin' });
  if (!res.ok) return;
  const me = await res.json();
  session = { csrf: me.csrf_token, principal: me.principal, scopes: me.scopes };
  await start();
}

async function signOut() {
  if (session?.csrf !== undefined) {
    // Ends the session in the store, on every replica; the server clears the cookie.
    try {
      await call('/auth/oidc/logout', {}, { method: 'POST' });
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 401)) {
        say(`Sign-out failed: ${e.message}`, 'error');
        return;
      }
    }
  }
  session = null;
  targets = [];
  profiles = [];
  current = null;
  audit = { filters: {}, cursors: [], after: 0, next: null };
  auditRequests += 1; // an audit page still on its way is dropped
  dismissSecret();
  for (const form of document.querySelectorAll('form')) form.reset();
  for (const id of ['registry-table', 'audit-table']) $(id).tBodies[0].replaceChildren();
  for (const id of ['lookup-result', 'create-params', 'nav']) $(id).replaceChildren();
  for (const section of document.querySelectorAll('main > section')) section.hidden = true;
  $('whoami').hidden = true;
  $('nav').hidden = true;
  $('sign-in').hidden = false;
  showMethod();
  say('Signed out.');
}

// ---- sections ------------------------------------------------------------------------

const SECTIONS = [
  { id: 'registry', label: 'Registry', allowed: () => can('read') },
  { id: 'users', label: 'Users', allowed: () => can('read') },
  { id: 'create', label: 'Create', allowed: () => can('read') && can('create') },
  { id: 'audit', label: 'Audit log', allowed: () => can('audit-read') },
];

async function start() {
  $('sign-in').hidden = true;
  $('principal').textContent = session.principal;
  $('whoami').hidden = false;
  const offered = SECTIONS.filter((s) => s.allowed());
  $('nav').replaceChildren(
    ...offered.map((s) =>
      el('button', { type: 'button', id: `nav-${s.id}`, dataset: { section: s.id }, onclick: () => show(s.id) }, s.label)),
  );
  $('nav').hidden = false;
  if (offered.length === 0) {
    say(`'${session.principal}' has no scope this console can use.`, 'error');
    return;
  }
  if (can('read')) await loadRegistry();
  if (can('read') && can('create')) await loadProfiles();
  show(offered[0].id);
}

async function show(id) {
  for (const s of SECTIONS) $(s.id).hidden = s.id !== id;
  for (const button of $('nav').children) {
    button.classList.toggle('active', button.dataset.section === id);
  }
  if (id === 'audit' && audit.next === null && $('audit-table').tBodies[0].rows.length === 0) {
    await guarded(null, () => searchAudit());
  }
}

// ---- registry ------------------------------------------------------------------------

async function loadRegistry() {
  await guarded(null, async () => {
    const { databases } = await call('/api/v1/registry');
    const rows = databases.map((d) =>
      el('tr', { class: d.active ? '' : 'inactive' },
        el('td', {}, d.env), el('td', {}, d.db_name), el('td', {}, d.hostname),
        el('td', {}, d.port), el('td', {}, d.active ? 'yes' : 'no'), el('td', {}, d.notes ?? '')));
    $('registry-table').tBodies[0].replaceChildren(...rows);
    targets = databases.filter((d) => d.active && allows(session.scopes.environments, d.env));
    for (const select of document.querySelectorAll('select.target')) {
      select.replaceChildren(...targets.map((t, i) => el('option', { value: i }, `${t.env} / ${t.db_name}`)));
    }
  });
}

function target(select) {
  const t = targets[Number(select.value)];
  return t ? { env: t.env, database: t.db_name } : {};
}

// ---- users: lookup and actions --------------------------------------------------------

async function lookUp(event) {
  event?.preventDefault();
  const username = $('lookup-username').value.trim();
  if (!username) return;
  await guarded($('lookup-button'), () => refresh({ ...target($('lookup-target')), username }));
}

async function refresh(who) {
  const found = await call('/api/v1/users/find', who);
  current = { ...who, username: found.username };
  let report = null;
  if (found.found) report = await call('/api/v1/users/privileges', current);
  renderUser(found, report);
}

function list(items) {
  if (!items || items.length === 0) return el('span', { class: 'muted' }, 'none');
  return el('ul', { class: 'chips' }, items.map((i) => el('li', {}, i)));
}

function renderUser(found, report) {
  const box = $('lookup-result');
  const where = `${found.env} / ${found.database} on ${found.hostname}:${found.port}`;
  if (!found.found) {
    box.replaceChildren(el('div', { class: 'result', id: 'user-card' },
      el('h3', {}, found.username, ' ', el('span', { class: 'badge missing' }, 'not found')),
      el('p', { class: 'muted' }, where)));
    return;
  }
  const actions = [];
  if (can('reset')) actions.push(el('button', { type: 'button', id: 'action-reset', onclick: (e) => act(e.target, 'reset') }, 'Reset password'));
  if (can('lock')) {
    // Offer the one that changes something; the other stays visible, disabled.
    const locked = report.attributes.includes('Cannot login');
    actions.push(el('button', { type: 'button', id: 'action-lock', class: 'secondary', disabled: locked, onclick: (e) => act(e.target, 'lock') }, 'Lock'));
    actions.push(el('button', { type: 'button', id: 'action-unlock', class: 'secondary', disabled: !locked, onclick: (e) => act(e.target, 'unlock') }, 'Unlock'));
  }
  const schemaRows = report.schemas.map((s) =>
    el('tr', {}, el('td', {}, s.schema), el('td', {}, s.usage ? 'yes' : 'no'), el('td', {}, s.create ? 'yes' : 'no'),
      el('td', {}, `${s.select} / ${s.tables}`), el('td', {}, `${s.insert} / ${s.tables}`),
      el('td', {}, `${s.update} / ${s.tables}`), el('td', {}, `${s.delete} / ${s.tables}`)));
  const defaults = report.default_privileges.map((d) =>
    `${d.privilege} on future ${d.objects}${d.schema ? ` in ${d.schema}` : ''} of ${d.owner}`);
  box.replaceChildren(el('div', { class: 'result', id: 'user-card' },
    el('h3', {}, found.username, ' ', el('span', { class: 'badge found' }, 'found')),
    el('p', { class: 'muted' }, where),
    actions.length ? el('div', { class: 'buttons', id: 'user-actions' }, actions) : null,
    el('dl', { id: 'privileges' },
      el('dt', {}, 'Attributes'), el('dd', {}, list(report.attributes)),
      el('dt', {}, 'Created by profile'), el('dd', {}, report.profile ?? '—'),
      el('dt', {}, 'Member of'), el('dd', {}, list(report.member_of.map((m) => m.admin ? `${m.role} (admin)` : m.role))),
      el('dt', {}, 'Database privileges'), el('dd', {}, list(report.database_privileges)),
      el('dt', {}, 'Default privileges'), el('dd', {}, list(defaults)),
      el('dt', {}, 'Settings in this database'), el('dd', {}, list(report.settings.database)),
      el('dt', {}, 'Settings everywhere'), el('dd', {}, list(report.settings.all))),
    el('h4', {}, 'Schemas'),
    schemaRows.length
      ? el('table', { id: 'schemas-table' },
        el('thead', {}, el('tr', {}, ['Schema', 'Usage', 'Create', 'Select', 'Insert', 'Update', 'Delete'].map((h) => el('th', {}, h)))),
        el('tbody', {}, schemaRows))
      : el('p', { class: 'muted' }, 'No schema it can see.')));
}

async function act(button, operation) {
  const who = { ...current };
  await guarded(button, async () => {
    const res = await call(`/api/v1/users/${operation}`, who, { method: 'POST' });
    if (res.password) showSecret(res.username, `${res.env} / ${res.database}`, res.password);
    await refresh(who);
    const sessions = res.sessions_terminated ? ` (${res.sessions_terminated} sessions ended)` : '';
    say(`${res.username}: ${res.status}${sessions}.`, 'ok');
  });
}

// ---- create --------------------------------------------------------------------------

async function loadProfiles() {
  await guarded(null, async () => {
    const all = (await call('/api/v1/profiles')).profiles;
    profiles = all.filter((p) => allows(session.scopes.profiles, p.name));
    $('create-profile').replaceChildren(...profiles.map((p) => el('option', { value: p.name }, p.name)));
    renderParams();
  });
}

function renderParams() {
  const profile = profiles.find((p) => p.name === $('create-profile').value);
  $('create-description').textContent = profile ? `${profile.description} — name: ${profile.template}` : 'No profile is in your scope.';
  $('create-button').disabled = !profile;
  const inputs = Object.entries(profile?.params ?? {}).map(([name, kind]) =>
    el('label', {}, name,
      el('input', {
        type: kind === 'port' ? 'number' : 'text', name, id: `param-${name}`, required: true,
        spellcheck: false, ...(kind === 'port' ? { min: 1, max: 65535 } : {}),
      })));
  $('create-params').replaceChildren(...inputs);
}

async function create(event) {
  event.preventDefault();
  const profile = $('create-profile').value;
  const params = { ...target($('create-target')) };
  for (const input of $('create-params').querySelectorAll('input')) params[input.name] = input.value.trim();
  await guarded($('create-button'), async () => {
    const res = await call(`/api/v1/users/${encodeURIComponent(profile)}`, params, { method: 'POST' });
    if (res.password) {
      showSecret(res.username, `${res.env} / ${res.database}`, res.password);
      say(`${res.username}: ${res.status}.`, 'ok');
      for (const input of $('create-params').querySelectorAll('input')) input.value = '';
    } else {
      say(`${res.username}: ${res.status}; its password was not changed.`, 'info');
    }
  });
}

// ---- the password, shown once --------------------------------------------------------

function showSecret(username, where, password) {
  $('secret-for').textContent = `New password for ${username} (${where}):`;
  $('secret-value').textContent = password;
  $('secret-copied').textContent = '';
  $('secret-dialog').showModal();
}

function dismissSecret() {
  $('secret-value').textContent = '';
  $('secret-for').textContent = '';
  $('secret-copied').textContent = '';
  if ($('secret-dialog').open) $('secret-dialog').close();
}

async function copySecret() {
  const text = $('secret-value').textContent;
  try {
    await navigator.clipboard.writeText(text);
    $('secret-copied').textContent = 'Copied to the clipboard.';
  } catch {
    const range = document.createRange();
    range.selectNodeContents($('secret-value'));
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    $('secret-copied').textContent = 'Selected: press Ctrl+C (⌘C) to copy.';
  }
}

// ---- audit ---------------------------------------------------------------------------

function auditFilters() {
  const filters = {};
  for (const [key, value] of new FormData($('audit-form'))) {
    if (String(value).trim()) filters[key] = String(value).trim();
  }
  return filters;
}

async function searchAudit() {
  audit = { filters: auditFilters(), cursors: [], after: 0, next: null };
  await loadAudit();
}

async function loadAudit() {
  const mine = ++auditRequests;
  const res = await call('/api/v1/audit', { ...audit.filters, format: 'json', limit: AUDIT_PAGE, after_id: audit.after || '' }, { raw: true });
  const next = res.headers.get('x-next-after-id');
  const { records } = await res.json();
  if (mine !== auditRequests) return;
  audit.next = next ? Number(next) : null;
  const rows = records.map((r) =>
    el('tr', { class: `outcome-${r.status}` },
      el('td', {}, r.id), el('td', { class: 'nowrap' }, r.performed_at.replace('T', ' ').replace(/\.\d+Z$/, '')),
      el('td', {}, r.principal), el('td', {}, r.env), el('td', {}, r.db_name),
      el('td', { class: 'audit-username' }, r.pg_username), el('td', {}, r.operation),
      el('td', {}, el('span', { class: `badge ${r.status}` }, r.status)),
      el('td', {}, r.error ?? r.detail)));
  $('audit-table').tBodies[0].replaceChildren(...rows);
  if (rows.length === 0) {
    $('audit-table').tBodies[0].append(el('tr', {}, el('td', { colSpan: 9, class: 'muted' }, 'No records match.')));
  }
  $('audit-prev').disabled = audit.cursors.length === 0;
  $('audit-next').disabled = audit.next === null;
  $('audit-page').textContent = `Page ${audit.cursors.length + 1} · ${records.length} records`;
}

async function pageAudit(forward) {
  if (forward && audit.next !== null) {
    audit.cursors.push(audit.after);
    audit.after = audit.next;
  } else if (!forward && audit.cursors.length) {
    audit.after = audit.cursors.pop();
  }
  await loadAudit();
}

/** Every matching record as one CSV file, fetched page by page with the credentials. */
async function downloadCsv() {
  const filters = auditFilters();
  let after = 0;
  const parts = [];
  for (;;) {
    const res = await call('/api/v1/audit', { ...filters, format: 'csv', limit: 10000, after_id: after || '' }, { raw: true });
    const text = await res.text();
    // Later pages repeat the header row; the header has no quoted newlines.
    parts.push(parts.length ? text.slice(text.indexOf('\n') + 1) : text);
    const next = res.headers.get('x-next-after-id');
    if (!next) break;
    after = Number(next);
  }
  const url = URL.createObjectURL(new Blob(parts, { type: 'text/csv' }));
  const link = el('a', { href: url, download: 'audit.csv', hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// ---- wiring --------------------------------------------------------------------------

for (const radio of document.querySelectorAll('input[name="method"]')) radio.addEventListener('change', showMethod);
$('sign-in-form').addEventListener('submit', signIn);
$('sign-out').addEventListener('click', signOut);
$('lookup-form').addEventListener('submit', lookUp);
$('create-profile').addEventListener('change', renderParams);
$('create-form').addEventListener('submit', create);
$('secret-copy').addEventListener('click', copySecret);
$('secret-done').addEventListener('click', dismissSecret);
$('secret-dialog').addEventListener('cancel', dismissSecret);
$('audit-form').addEventListener('submit', (e) => {
  e.preventDefault();
  guarded($('audit-search'), searchAudit);
});
$('audit-next').addEventListener('click', (e) => guarded(e.target, () => pageAudit(true)));
$('audit-prev').addEventListener('click', (e) => guarded(e.target, () => pageAudit(false)));
$('audit-csv').addEventListener('click', (e) => guarded(e.target, downloadCsv));
showMethod();
offerSso();
