// A second real CDS Hooks client for the integration tests: Medplum's own (@medplum/core, pinned in
// package.json), driven as a Medplum app would drive it: getCdsServices, buildCdsRequest (Medplum
// resolves the prefetch templates against the FHIR server itself), callCdsService.
//
// Medplum signs nothing for CDS services, and sends its own FHIR access token only to URLs under its
// baseUrl (MedplumClient.isInternalUrl): the service runs elsewhere, so each call here carries its
// own ES384 JWT in `options.headers` (aud = the exact URL, fresh jti), signed with the PEM key the
// test generated, as an EHR would. Medplum never sends fhirServer, sends `null` for a prefetch key
// whose template it cannot fill, and rejects the whole build when one read fails.
//
//   node cds-client.mjs < config.json     (one JSON result line per scenario on stdout)
//   config: {fhirBase, serviceBase, key, kid, iss, user, scenarios: [{name, service, context}]}

import { createPrivateKey, randomUUID, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { MedplumClient, OperationOutcomeError, buildCdsRequest } from '@medplum/core';

const config = JSON.parse(readFileSync(0, 'utf8'));
const key = createPrivateKey(readFileSync(config.key));

function b64url(data) {
  return Buffer.from(data).toString('base64url');
}

// A CDS Hooks JWT (spec: alg ES384, typ JWT, kid; iss, aud = the URL called, exp, iat, jti).
function token(aud) {
  const now = Math.floor(Date.now() / 1000);
  const header = b64url(JSON.stringify({ alg: 'ES384', typ: 'JWT', kid: config.kid }));
  const claims = b64url(JSON.stringify({ iss: config.iss, aud, exp: now + 300, iat: now, jti: randomUUID() }));
  const signature = sign('sha384', Buffer.from(`${header}.${claims}`), { key, dsaEncoding: 'ieee-p1363' });
  return `${header}.${claims}.${b64url(signature)}`;
}

function bearer(url) {
  return { headers: { Authorization: `Bearer ${token(url)}` } };
}

const fhir = new URL(config.fhirBase.replace(/\/?$/, '/'));
const medplum = new MedplumClient({
  baseUrl: fhir.origin + '/',
  fhirUrlPath: fhir.pathname,
  cdsServicesUrl: config.serviceBase.replace(/\/$/, '') + '/cds-services',
  cacheTime: 0,
});
const discoveryUrl = medplum.getCdsServicesUrl();

function print(result) {
  process.stdout.write(JSON.stringify(result) + '\n');
}

async function main() {
  const discovery = await medplum.getCdsServices(bearer(discoveryUrl));
  print({ name: 'discovery', ok: true, response: discovery });
  const user = config.user; // the logged-in profile (Practitioner), as a Medplum app passes it
  for (const scenario of config.scenarios) {
    const service = discovery.services.find((s) => s.id === scenario.service);
    let request;
    try {
      request = await buildCdsRequest(medplum, user, service, scenario.context);
    } catch (err) {
      print({ name: scenario.name, ok: false, stage: 'build', error: String(err) });
      continue;
    }
    try {
      const response = await medplum.callCdsService(service.id, request, bearer(`${discoveryUrl}/${service.id}`));
      print({ name: scenario.name, ok: true, request, response });
    } catch (err) {
      // Medplum turns a non-2xx answer into an OperationOutcomeError: the service's OperationOutcome.
      const outcome = err instanceof OperationOutcomeError ? err.outcome : undefined;
      print({ name: scenario.name, ok: false, stage: 'call', request, outcome, error: String(err) });
    }
  }
}

main().catch((err) => {
  print({ name: 'fatal', ok: false, error: String(err?.stack ?? err) });
  process.exit(1);
});
