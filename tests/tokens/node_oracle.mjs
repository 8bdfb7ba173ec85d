// Independent oracle for tokens and HTTP message signatures made by wimse-tpm: npm `jose` (panva)
// and `http-message-signatures` (dhensby), installed by ci/setup under tests/interop/node_modules.
// The WIMSE rules not in those libraries (wth, alg pinned to cnf.jwk.alg, tag, required
// components and parameters, Content-Digest) are written here, independently of the C++ code.
//
// Usage: node node_oracle.mjs <case.json>   exit 0: every check passed; 1: a check failed
// (the reason on stderr); 77: the npm packages are not installed (meson treats it as a skip).
//
// case.json:
//   {"kind": "jwt", "issuer_jwk": {...}, "wit": "...", "wpt": "..." (optional),
//    "aud": "...", "thumbprint": "..."}
//   {"kind": "httpsig", "issuer_jwk": {...}, "request": {"method", "url", "headers": [[n, v]],
//    "body"}, "response": {"status", "headers", "body"} (optional), "aud": "..."}
import { constants, createHash, createPublicKey, verify as cryptoVerify } from 'node:crypto';
import { readFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const modules = join(here, '..', 'interop', 'node_modules');
if (!existsSync(join(modules, 'jose')) || !existsSync(join(modules, 'http-message-signatures'))) {
  console.error('npm jose / http-message-signatures not installed (run ci/setup)');
  process.exit(77);
}
const require = createRequire(join(here, '..', 'interop', 'package.json'));
const jose = await import(pathToFileURL(require.resolve('jose')).href);
const hms = require('http-message-signatures');

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const sha256 = (s) => createHash('sha256').update(s).digest();

function fail(msg) {
  console.error(`oracle: ${msg}`);
  process.exit(1);
}

// Verifies a WIT with the issuer key; returns its payload. jose checks typ (case-insensitive,
// optional application/), exp, the allowed algorithm and the signature.
async function verifyWit(wit, issuerJwk) {
  const issuerKey = await jose.importJWK(issuerJwk, issuerJwk.alg);
  const { payload } = await jose.jwtVerify(wit, issuerKey, {
    typ: 'wit+jwt', algorithms: [issuerJwk.alg], clockTolerance: 30,
  });
  if (!payload.sub || !payload.cnf?.jwk?.alg) fail('WIT lacks sub or cnf.jwk.alg');
  if ('d' in payload.cnf.jwk) fail('cnf.jwk carries a private key');
  return payload;
}

async function checkJwt(c) {
  const wit = await verifyWit(c.wit, c.issuer_jwk);
  const jkt = await jose.calculateJwkThumbprint(wit.cnf.jwk, 'sha256');
  if (c.thumbprint && jkt !== c.thumbprint) fail(`cnf.jwk thumbprint ${jkt} != ${c.thumbprint}`);
  if (c.expected_alg && wit.cnf.jwk.alg !== c.expected_alg) fail(`cnf.jwk.alg ${wit.cnf.jwk.alg}`);
  if (!c.wpt) return;
  const cnfKey = await jose.importJWK(wit.cnf.jwk, wit.cnf.jwk.alg);
  const { payload, protectedHeader } = await jose.jwtVerify(c.wpt, cnfKey, {
    typ: 'wpt+jwt', audience: c.aud, algorithms: [wit.cnf.jwk.alg], clockTolerance: 30,
    requiredClaims: ['exp', 'jti', 'wth'],
  });
  if (protectedHeader.alg !== wit.cnf.jwk.alg) fail('WPT alg differs from cnf.jwk.alg');
  if (payload.wth !== b64url(sha256(c.wit))) fail('wth is not SHA-256 of the WIT string');
  if (payload.exp - Math.floor(Date.now() / 1000) > 330) fail('WPT lifetime too long');
  if (Buffer.from(payload.jti, 'base64url').length < 16) fail('jti shorter than 128 bits');
  // ECDSA JWS signatures are raw r||s of fixed width (C16).
  const sigLen = Buffer.from(c.wpt.split('.')[2], 'base64url').length;
  const want = { ES256: 64, ES384: 96 }[wit.cnf.jwk.alg];
  if (want && sigLen !== want) fail(`WPT signature is ${sigLen} bytes, want ${want}`);
}

// RFC 9421 §3.3.7: JWS algorithms. ES256/ES384 are raw r||s (ieee-p1363), RS256 PKCS#1 v1.5,
// PS256 RSASSA-PSS SHA-256 with a 32-byte salt (RFC 7518 §3.5; the library's rsa-pss-sha512 is
// a different algorithm, so node:crypto does it directly).
function verifierFor(jwk) {
  const key = createPublicKey({ key: jwk, format: 'jwk' });
  if (jwk.alg === 'PS256') {
    return async (data, sig) => cryptoVerify('sha256', data,
      { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, sig);
  }
  const alg = { ES256: 'ecdsa-p256-sha256', ES384: 'ecdsa-p384-sha384',
                RS256: 'rsa-v1_5-sha256', EdDSA: 'ed25519' }[jwk.alg];
  if (!alg) fail(`no RFC 9421 algorithm for ${jwk.alg}`);
  return hms.createVerifier(key, alg);
}

function headersOf(list) {
  const h = {};
  for (const [n, v] of list) {
    const k = n.toLowerCase();
    h[k] = h[k] === undefined ? v : [].concat(h[k], v);
  }
  return h;
}

function checkDigest(headers, body) {
  if (body === undefined || body === null || body === '') return;
  const want = `sha-256=:${sha256(body).toString('base64')}:`;
  if (headers['content-digest'] !== want) fail(`Content-Digest ${headers['content-digest']}`);
}

async function verifySigned(message, request, issuerJwk, required) {
  const headers = message.headers;
  const wit = await verifyWit(headers['workload-identity-token'], issuerJwk);
  const input = headers['signature-input'];
  if (!/tag="wimse-workload-to-workload"/.test(input)) fail('no wimse tag');
  if (/;(alg|keyid)=/.test(input)) fail('alg or keyid present');
  const ok = await hms.httpbis.verifyMessage({
    keyLookup: async () => ({ verify: verifierFor(wit.cnf.jwk) }),
    requiredParams: required.params,
    requiredFields: required.fields,
    tolerance: 30,
    all: true,
  }, message, request);
  if (ok !== true) fail(`http-message-signatures returned ${ok}`);
  return wit;
}

async function checkHttpSig(c) {
  const req = { method: c.request.method, url: c.request.url, headers: headersOf(c.request.headers) };
  checkDigest(req.headers, c.request.body);
  const reqFields = ['@method', '@request-target', '@path', '@query', 'workload-identity-token'];
  if (c.request.body) reqFields.push('content-digest');
  await verifySigned(req, undefined, c.issuer_jwk, {
    params: ['created', 'expires', 'nonce', 'tag', 'wimse-aud'], fields: reqFields,
  });
  if (!req.headers['signature-input'].includes(`wimse-aud="${c.aud}"`)) fail('wimse-aud');
  if (!c.response) return;
  const res = { status: c.response.status, headers: headersOf(c.response.headers) };
  checkDigest(res.headers, c.response.body);
  const nonce = /;nonce="([^"]*)"/.exec(req.headers['signature-input'])[1];
  if (!res.headers['signature-input'].includes(`wimse-req-nonce="${nonce}"`)) {
    fail('wimse-req-nonce is not the request nonce');
  }
  const resFields = ['@status', 'workload-identity-token'];
  if (c.response.body) resFields.push('content-digest');
  await verifySigned(res, req, c.issuer_jwk, {
    params: ['created', 'expires', 'nonce', 'tag', 'wimse-req-nonce'], fields: resFields,
  });
}

const c = JSON.parse(readFileSync(process.argv[2], 'utf8'));
try {
  if (c.kind === 'jwt') await checkJwt(c);
  else if (c.kind === 'httpsig') await checkHttpSig(c);
  else fail(`unknown kind ${c.kind}`);
} catch (e) {
  fail(`${e.code ?? e.name}: ${e.message}`);
}
console.log('oracle: ok');
