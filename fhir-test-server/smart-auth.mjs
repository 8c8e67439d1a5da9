// SMART App Launch authorization server for the viewer's browser tests: panva's oidc-provider
// (pinned in package.json) configured for SMART on top of OAuth 2.0 / OpenID Connect.
//
//   node fhir-test-server/smart-auth.mjs PORT
//
// Env:
//   SMART_AUTH_CLIENTS        JSON [{"client_id": "...", "redirect_uris": ["..."]}]: public clients
//                             (no secret), authorization code with PKCE S256 required
//   SMART_AUTH_AUDIENCES      JSON ["http://127.0.0.1:8090/fhir", ...]: the FHIR servers it issues
//                             tokens for; the app's `aud` parameter must name one of them
//   SMART_AUTH_TOKEN_SECONDS  access token lifetime (default 300)
//
// What SMART adds, and how this server does it:
// - `aud` becomes the access token's audience (oidc-provider's resource indicators), tokens are
//   RS256 JWTs that the FHIR test server (server.cjs, FHIR_TEST_SMART) verifies against /jwks.
// - EHR launch: `launch` is base64url JSON {"patient": "<id>"}, as the SMART App Launcher makes it.
//   Standalone launch (scope launch/patient, no launch): a one-field patient picker form.
// - The chosen patient goes into the token (claim `patient`) and into the token answer (`patient`).
// - The user is a fixed test practitioner, signed in without a password: this is a test server.
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import { decodeJwt, exportJWK, generateKeyPair } from 'jose';
import Provider, { errors } from 'oidc-provider';

const port = Number(process.argv[2] ?? process.env.SMART_AUTH_PORT ?? 0);
if (!port) throw new Error('give the port as the first argument (the issuer URL contains it)');
const issuer = `http://127.0.0.1:${port}`;
const clients = JSON.parse(process.env.SMART_AUTH_CLIENTS ?? '[]');
const audiences = JSON.parse(process.env.SMART_AUTH_AUDIENCES ?? '[]');
const tokenSeconds = Number(process.env.SMART_AUTH_TOKEN_SECONDS ?? 300);
const PRACTITIONER = 'smart-test-practitioner';
const CONTEXT_SCOPES = ['openid', 'fhirUser', 'launch', 'launch/patient'];
const RESOURCE_SCOPES = ['patient/*.rs', 'patient/*.read'];
const ID = /^[A-Za-z0-9\-.]{1,64}$/;
const patientOfGrant = new Map();

// A new signing key at every start: restarting this server invalidates the tokens it issued before.
const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const signingKey = { ...(await exportJWK(privateKey)), kid: randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: clients.map((c) => ({
    client_id: c.client_id,
    redirect_uris: c.redirect_uris,
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code'],
    response_types: ['code'],
  })),
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  scopes: CONTEXT_SCOPES,
  claims: { openid: ['sub'], fhirUser: ['fhirUser'] },
  extraParams: ['launch', 'aud'],
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: (ctx, client, oneOf) => oneOf ?? ctx.oidc.params?.aud ?? undefined,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => {
        if (!audiences.includes(resource)) throw new errors.InvalidTarget('aud is not a FHIR server this authorization server serves');
        return {
          scope: RESOURCE_SCOPES.join(' '),
          audience: resource,
          accessTokenTTL: tokenSeconds,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  extraTokenClaims: (ctx, token) => (patientOfGrant.has(token.grantId) ? { patient: patientOfGrant.get(token.grantId) } : undefined),
  findAccount: (ctx, id) => ({ accountId: id, claims: () => ({ sub: id, fhirUser: `Practitioner/${id}` }) }),
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  ttl: { AccessToken: tokenSeconds, AuthorizationCode: 60, IdToken: tokenSeconds, Interaction: 600, Session: 600, Grant: 600 },
});

// SMART's token answer names the patient beside the token (App Launch 2.0, "launch context").
provider.use(async (ctx, next) => {
  await next();
  if (ctx.path === '/token' && ctx.status === 200 && typeof ctx.body?.access_token === 'string') {
    const { patient } = decodeJwt(ctx.body.access_token);
    if (patient) ctx.body.patient = patient;
  }
});

function page(res, status, title, body) {
  res.writeHead(status, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
  res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${title}</title></head><body><h1>${title}</h1>${body}</body></html>`);
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function launchPatient(launch) {
  try {
    const patient = JSON.parse(Buffer.from(launch, 'base64url').toString('utf8')).patient;
    return typeof patient === 'string' && ID.test(patient) ? patient : null;
  } catch {
    return null;
  }
}

// Sign-in and consent in one step: the test practitioner grants what was asked, for the launch's patient.
async function interaction(req, res, uid) {
  const { params } = await provider.interactionDetails(req, res);
  let patient;
  if (params.launch) {
    patient = launchPatient(params.launch);
    if (!patient) return page(res, 400, 'Unknown launch', '<p>The launch parameter names no patient.</p>');
  } else if (req.method === 'GET') {
    return page(res, 200, 'Select a patient',
      `<form method="post" action="/interaction/${uid}"><label>Patient id <input name="patient" required></label> <button type="submit">Select</button></form>`);
  } else {
    patient = (await readForm(req)).get('patient') ?? '';
    if (!ID.test(patient)) return page(res, 400, 'Not a patient id', '<p>Use letters, digits, "-" and ".".</p>');
  }
  const requested = String(params.scope ?? '').split(' ');
  const grant = new provider.Grant({ accountId: PRACTITIONER, clientId: params.client_id });
  grant.addOIDCScope(requested.filter((s) => CONTEXT_SCOPES.includes(s)).join(' '));
  grant.addResourceScope(params.aud, requested.filter((s) => RESOURCE_SCOPES.includes(s)).join(' '));
  const grantId = await grant.save();
  patientOfGrant.set(grantId, patient);
  return provider.interactionFinished(req, res, { login: { accountId: PRACTITIONER }, consent: { grantId } },
    { mergeWithLastSubmission: false });
}

const handle = provider.callback();
const server = createServer((req, res) => {
  const match = /^\/interaction\/([^/?#]+)/.exec(req.url ?? '');
  if (match) {
    interaction(req, res, match[1]).catch((err) => page(res, 400, 'Interaction failed', `<p>${String(err.name)}</p>`));
    return;
  }
  if (req.url === '/healthz') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end('{"status":"ok"}');
    return;
  }
  handle(req, res);
});
server.listen(port, '127.0.0.1', () => console.log(`listening on ${issuer}`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
