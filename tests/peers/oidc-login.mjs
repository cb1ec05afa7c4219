// A certified OpenID Connect provider (node oidc-provider) with a real login form, for the
// browser tests: the portal sends the invitee here with the authorization code flow and PKCE,
// the invitee types a username and password into the form below, and the provider redirects
// back with a code whose ID token carries Microsoft Entra's `tid` claim.
//
// Users (any password but "wrong" signs in):
//   ana@contoso.example         tenant contoso
//   bob@fabrikam.example        tenant fabrikam
//   unassigned@contoso.example  tenant contoso, refused the way Entra refuses a user who is not
//                               assigned to the application: error=access_denied, AADSTS50105.
// `prompt=select_account` is supported and always shows the form again, as Entra's account
// picker does.
//
// Usage: oidc-login.mjs CLIENT_SECRET [--multi-tenant]
// The client id is `portal`; any 127.0.0.1 port may be used in the redirect URI
// `http://127.0.0.1:PORT/oidc/callback` (the loopback rule of RFC 8252).
// With --multi-tenant it behaves like Entra's tenant authorities: one issuer per tenant at
// /{tid}/v2.0, each signing in only its own tenant's users (others get AADSTS50020), and the
// printed issuer is the template http://127.0.0.1:PORT/{tenantid}/v2.0.
// Prints {"issuer", "tenants"} as JSON on its first line, then serves on 127.0.0.1 until killed.
import http from 'node:http';
import Provider, { interactionPolicy, errors } from 'oidc-provider';

const TENANTS = {
  contoso: '11111111-1111-4111-8111-111111111111',
  fabrikam: '22222222-2222-4222-8222-222222222222',
};
const USERS = {
  'ana@contoso.example': { name: 'Ana Silva', tid: TENANTS.contoso },
  'bob@fabrikam.example': { name: 'Bob Kowalski', tid: TENANTS.fabrikam },
  'unassigned@contoso.example': { name: 'Una Signed', tid: TENANTS.contoso, unassigned: true },
};
const clientSecret = process.argv[2];
if (!clientSecret) throw new Error('usage: oidc-login.mjs CLIENT_SECRET [--multi-tenant]');
const multiTenant = process.argv.includes('--multi-tenant');

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const origin = `http://127.0.0.1:${server.address().port}`;

// One provider per mount prefix: '' (a single issuer), or '/{tid}/v2.0' per tenant.
function makeProvider(prefix, onlyTenant) {
  const policy = interactionPolicy.base();
  policy.add(new interactionPolicy.Prompt({ name: 'select_account', requestable: true }), 0);
  const provider = new Provider(`${origin}${prefix}`, {
    clients: [{
      client_id: 'portal',
      client_secret: clientSecret,
      application_type: 'native',
      redirect_uris: ['http://127.0.0.1/oidc/callback'],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_post',
    }],
    pkce: { required: () => true },
    claims: { openid: ['sub', 'tid'], email: ['email'], profile: ['name'] },
    conformIdTokenClaims: false,
    cookies: { keys: ['portal-operator-tests-only'] },
    features: { devInteractions: { enabled: false } },
    interactions: { policy, url: (ctx, interaction) => `${prefix}/interaction/${interaction.uid}` },
    async findAccount(ctx, id) {
      const user = USERS[id];
      if (!user) return undefined;
      return {
        accountId: id,
        async claims() {
          return { sub: id, tid: user.tid, email: id, name: user.name };
        },
      };
    },
  });
  provider.proxy = false;
  return { prefix, onlyTenant, provider, callback: provider.callback() };
}

const mounts = multiTenant
  ? Object.entries(TENANTS).map(([name, tid]) => ({ ...makeProvider(`/${tid}/v2.0`, tid), name }))
  : [{ ...makeProvider('', undefined), name: 'single' }];

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const page = (title, body) => `<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>${escape(title)}</title>
<style>body{font-family:system-ui,sans-serif;max-width:24rem;margin:3rem auto;padding:0 1rem}
label{display:block;margin-top:1rem}input{width:100%;padding:.5rem;font-size:1rem;box-sizing:border-box}
button{margin-top:1.5rem;padding:.6rem 1.4rem;font-size:1rem}.error{color:#a00}</style></head>
<body><p><strong>Test identity provider</strong> (node oidc-provider)</p>${body}</body></html>`;

const loginForm = (mount, uid, error) => page('Sign in', `<h1>Sign in</h1>
${mount.onlyTenant ? `<p id="tenant">Tenant ${escape(mount.name)}</p>` : ''}
${error ? `<p class="error" id="error">${escape(error)}</p>` : ''}
<p>Pick an account: ana@contoso.example, bob@fabrikam.example or unassigned@contoso.example.</p>
<form method="post" action="${escape(mount.prefix)}/interaction/${escape(uid)}/login" autocomplete="off">
<label>Username <input id="login" name="login" required autofocus></label>
<label>Password <input id="password" name="password" type="password" required></label>
<button id="sign-in" type="submit">Sign in</button></form>`);

const readForm = (req) => new Promise((resolve, reject) => {
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', () => resolve(new URLSearchParams(body)));
  req.on('error', reject);
});

async function interaction(mount, req, res, isLogin) {
  const { provider } = mount;
  const details = await provider.interactionDetails(req, res);
  if (req.method === 'GET' && !isLogin) {
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.setHeader('cache-control', 'no-store');
    return res.end(loginForm(mount, details.uid));
  }
  if (req.method !== 'POST' || !isLogin) {
    res.statusCode = 405;
    return res.end();
  }
  const form = await readForm(req);
  const login = (form.get('login') ?? '').trim().toLowerCase();
  const user = USERS[login];
  if (!user || form.get('password') === 'wrong') {
    res.setHeader('content-type', 'text/html; charset=utf-8');
    return res.end(loginForm(mount, details.uid, 'That username or password is not right.'));
  }
  const refuse = (error, description) => provider.interactionFinished(
    req, res, { error, error_description: description }, { mergeWithLastSubmission: false },
  );
  if (mount.onlyTenant && user.tid !== mount.onlyTenant) {
    return refuse('invalid_request', `AADSTS50020: User account '${login}' from identity provider does not exist in tenant '${mount.name}' and cannot access the application 'portal' in that tenant.`);
  }
  if (user.unassigned) {
    return refuse('access_denied', `AADSTS50105: Your administrator has configured the application portal ('portal') to block users unless they are specifically granted ('assigned') access to the application. The signed in user '${login}' is blocked because they are not a direct member of a group with access, nor had access directly assigned by an administrator.`);
  }
  const grant = new provider.Grant({ accountId: login, clientId: details.params.client_id });
  grant.addOIDCScope('openid email profile');
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, {
    select_account: {},
    login: { accountId: login, remember: true },
    consent: { grantId },
  }, { mergeWithLastSubmission: false });
}

server.on('request', async (req, res) => {
  const mount = mounts.find((m) => m.prefix === '' || req.url === m.prefix || req.url.startsWith(`${m.prefix}/`));
  if (!mount) {
    res.statusCode = 404;
    return res.end();
  }
  if (mount.prefix) {
    req.originalUrl = req.url;
    req.url = req.url.slice(mount.prefix.length) || '/';
  }
  const match = /^\/interaction\/([^/?]+)(\/login)?$/.exec(req.url.split('?')[0]);
  if (!match) return mount.callback(req, res);
  try {
    return await interaction(mount, req, res, Boolean(match[2]));
  } catch (error) {
    res.statusCode = error instanceof errors.SessionNotFound ? 400 : 500;
    res.setHeader('content-type', 'text/plain; charset=utf-8');
    return res.end(`${error.name}: ${error.message}`);
  }
});

const issuer = multiTenant ? `${origin}/{tenantid}/v2.0` : origin;
console.log(JSON.stringify({ issuer, tenants: TENANTS }));
// Only that first line goes to stdout; the provider's notices go to stderr.
console.log = console.info = console.warn = (...args) => console.error(...args);
