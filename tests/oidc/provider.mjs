// A real OpenID Provider (the `oidc-provider` package) for plinth's tests,
// on loopback, with test-only controls under /_test/ that a real provider
// would never have: who signs in next and with which claims, key rotation,
// the ID token's algorithm, a patched discovery document, failing
// endpoints, a shifted clock, and a count of requests per path.
//
//   node provider.mjs --redirect-uri URL --client-secret S
//
// prints `listening http://127.0.0.1:PORT` once it serves. The login and
// consent screens finish by themselves as the next account set by
// POST /_test/login.

import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import { generateKeyPair, exportJWK } from 'jose';
import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    'redirect-uri': { type: 'string', multiple: true },
    'client-secret': { type: 'string' },
    'client-id': { type: 'string', default: 'plinth' },
  },
});

const realNow = Date.now;
const state = {
  // The account the next sign-in finishes as.
  next: { sub: 'user-1', email: 'user1@example.com', email_verified: true, name: 'User One' },
  accounts: new Map(),
  keys: [],
  alg: 'RS256',
  // Fields replaced in (or, when null, removed from) the discovery document.
  discovery: {},
  // Path → status answered instead of the provider's.
  failing: new Map(),
  requests: new Map(),
  // Seconds added to the provider's clock.
  clockOffset: 0,
};

async function newKey(alg) {
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(privateKey);
  return { ...jwk, alg, use: 'sig', kid: `${alg.toLowerCase()}-${Math.random().toString(36).slice(2, 10)}` };
}

async function findAccount(ctx, sub) {
  const claims = state.accounts.get(sub);
  if (!claims) return undefined;
  return { accountId: sub, claims: async () => ({ ...claims }) };
}

let issuer;
let provider;

function build() {
  provider = new Provider(issuer, {
    clients: [{
      client_id: args['client-id'],
      client_secret: args['client-secret'],
      redirect_uris: args['redirect-uri'],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: state.alg,
    }],
    pkce: { required: () => true },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    conformIdTokenClaims: false,
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    cookies: { keys: ['plinth-test-cookie-key'] },
    jwks: { keys: state.keys },
    enabledJWA: { idTokenSigningAlgValues: ['RS256', 'PS256', 'ES256', 'HS256'] },
    findAccount,
  });
}

// Login and consent finish at once, as the account set for the next sign-in.
async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  if (prompt.name === 'login') {
    const account = { ...state.next };
    state.accounts.set(account.sub, account);
    return provider.interactionFinished(req, res, { login: { accountId: account.sub } }, {
      mergeWithLastSubmission: false,
    });
  }
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

async function body(req) {
  let text = '';
  for await (const chunk of req) text += chunk;
  return text ? JSON.parse(text) : {};
}

function json(res, status, value) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(value));
}

// Test-only controls.
const controls = {
  async login(input) {
    state.next = input;
    state.accounts.set(input.sub, input);
  },
  // Replaces the signing key: tokens from now on name a kid the old key set lacks.
  async rotate() {
    state.keys = [await newKey(state.alg === 'HS256' ? 'RS256' : state.alg)];
    build();
  },
  // Signs ID tokens with `alg` from now on (HS256: with the client secret).
  async alg({ alg }) {
    state.alg = alg;
    if (alg !== 'HS256' && !state.keys.some((k) => k.alg === alg)) state.keys.push(await newKey(alg));
    build();
  },
  async discovery(patch) {
    state.discovery = patch;
  },
  async fail({ path, status, error }) {
    if (status) state.failing.set(path, { status, error: error || 'temporarily_unavailable' });
    else state.failing.delete(path);
  },
  async clock({ offset }) {
    state.clockOffset = offset;
  },
};

Date.now = () => realNow() + state.clockOffset * 1000;

const server = createServer(async (req, res) => {
  const path = new URL(req.url, issuer).pathname;
  if (path.startsWith('/_test/')) {
    const name = path.slice('/_test/'.length);
    if (name === 'requests') return json(res, 200, Object.fromEntries(state.requests));
    if (req.method !== 'POST' || !controls[name]) return json(res, 404, { error: 'no such control' });
    await controls[name](await body(req));
    return json(res, 200, { ok: true });
  }
  if (req.headers['x-plinth-unpatched']) return provider.callback()(req, res);
  state.requests.set(path, (state.requests.get(path) || 0) + 1);
  const failing = state.failing.get(path) ?? state.failing.get('*');
  if (failing) return json(res, failing.status, { error: failing.error });
  try {
    if (path.startsWith('/interaction/')) return await interaction(req, res);
    if (path === '/.well-known/openid-configuration' && Object.keys(state.discovery).length) {
      // The provider's own document, patched.
      const own = await fetch(new URL(path, `http://127.0.0.1:${server.address().port}`), {
        headers: { 'x-plinth-unpatched': '1' },
      });
      const document = await own.json();
      for (const [field, value] of Object.entries(state.discovery)) {
        if (value === null) delete document[field];
        else document[field] = value;
      }
      return json(res, 200, document);
    }
    return provider.callback()(req, res);
  } catch (error) {
    return json(res, 500, { error: 'server_error', error_description: String(error) });
  }
});

server.listen(0, '127.0.0.1', async () => {
  issuer = `http://127.0.0.1:${server.address().port}`;
  state.keys = [await newKey('RS256')];
  build();
  console.log(`listening ${issuer}`);
});
