// A real OpenID Provider (the npm package oidc-provider) on loopback, for the single
// sign-on tests (tests/api/sso.rs, tests/api/ui.rs). It signs people in with its own
// development login form (any password; the login names one of the users below), asks for
// consent once, and puts a `groups` claim in the ID token and at the userinfo endpoint.
//
//   PGUA_OIDC_CLIENT_ID=pgua PGUA_OIDC_CLIENT_SECRET=… PGUA_OIDC_REDIRECT_URIS=a,b node provider.mjs
//
// Listens on 127.0.0.1 on a free port and prints one line of JSON, {"issuer": "http://…"},
// once it answers. Runs until killed.

import http from 'node:http';
import Provider from 'oidc-provider';

const clientId = process.env.PGUA_OIDC_CLIENT_ID ?? 'pgua';
const clientSecret = process.env.PGUA_OIDC_CLIENT_SECRET;
const redirectUris = (process.env.PGUA_OIDC_REDIRECT_URIS ?? '').split(',').filter(Boolean);
if (!clientSecret || redirectUris.length === 0) {
  console.error('set PGUA_OIDC_CLIENT_SECRET and PGUA_OIDC_REDIRECT_URIS');
  process.exit(2);
}

/** The people this provider knows, by login. */
const USERS = {
  alice: { email: 'alice@example.com', name: 'Alice Developer', groups: ['staff', 'pgua-dev'] },
  bob: { email: 'bob@example.com', name: 'Bob DBA', groups: ['pgua-dba'] },
  carol: { email: 'carol@example.com', name: 'Carol Outsider', groups: ['marketing'] },
};

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: redirectUris,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: {
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  // Claims of the scopes asked for also go into the ID token, as most company providers
  // do with groups; the relying party also reads userinfo when they are missing.
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: true } },
  pkce: { required: () => true },
  async findAccount(ctx, id) {
    const user = USERS[id];
    if (!user) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: user.email, email_verified: true, name: user.name, groups: user.groups };
      },
    };
  },
});
provider.on('server_error', (ctx, err) => console.error('provider error:', err));
server.on('request', provider.callback());
console.log(JSON.stringify({ issuer }));
