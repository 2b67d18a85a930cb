// Privacy Pass / blind RSA peer for the credentials interop tests. One JSON object per line on
// stdin -> one per line on stdout; bytes as hex. Drives @cloudflare/blindrsa-ts 0.4.4 and
// @cloudflare/privacypass-ts 0.8.1 (client, issuer over HTTP, origin verification).
import http from "node:http";
import readline from "node:readline";
import { webcrypto } from "node:crypto";

if (!globalThis.crypto) globalThis.crypto = webcrypto;

const { RSABSSA } = await import("@cloudflare/blindrsa-ts");
const pp = await import("@cloudflare/privacypass-ts");
const { publicVerif, genericBatched, util, TokenChallenge, AuthorizationHeader, Token, TOKEN_TYPES, MediaType } = pp;

const hex = (u8) => Buffer.from(u8).toString("hex");
const unhex = (s) => new Uint8Array(Buffer.from(s, "hex"));
const b64url = (u8) => Buffer.from(u8).toString("base64url");

const SUITES = {
  "RSABSSA-SHA384-PSS-Randomized": () => RSABSSA.SHA384.PSS.Randomized(),
  "RSABSSA-SHA384-PSSZERO-Randomized": () => RSABSSA.SHA384.PSSZero.Randomized(),
  "RSABSSA-SHA384-PSS-Deterministic": () => RSABSSA.SHA384.PSS.Deterministic(),
  "RSABSSA-SHA384-PSSZERO-Deterministic": () => RSABSSA.SHA384.PSSZero.Deterministic(),
};
const suite = (name) => {
  if (!SUITES[name]) throw new Error(`unknown suite ${name}`);
  return SUITES[name]();
};
const rsaPss = { name: "RSA-PSS", hash: "SHA-384" };
const importPub = (spki) => crypto.subtle.importKey("spki", unhex(spki), rsaPss, true, ["verify"]);
const importPriv = (pkcs8) => crypto.subtle.importKey("pkcs8", unhex(pkcs8), rsaPss, true, ["sign"]);

const servers = [];

async function startIssuer() {
  // A privacypass-ts issuer (type 0x0002) behind a minimal RFC 9578 HTTP front end.
  const mode = publicVerif.BlindRSAMode.PSS;
  const keys = await publicVerif.Issuer.generateKey(mode, { modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) });
  const issuer = new publicVerif.Issuer(mode, "issuer.node", keys.privateKey, keys.publicKey);
  const batchIssuer = new genericBatched.Issuer(issuer);
  const tokenKey = await publicVerif.getPublicKeyBytes(keys.publicKey);
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = new Uint8Array(Buffer.concat(chunks));
    try {
      if (req.method === "GET" && req.url === "/.well-known/private-token-issuer-directory") {
        const base = `http://${req.headers.host}`;
        res.writeHead(200, { "content-type": "application/private-token-issuer-directory", "cache-control": "max-age=60" });
        res.end(JSON.stringify({ "issuer-request-uri": `${base}/token-request`, "token-keys": [{ "token-type": 2, "token-key": b64url(tokenKey) }] }));
      } else if (req.method === "POST" && req.url === "/token-request") {
        const type = (req.headers["content-type"] || "").split(";")[0];
        if (type === MediaType.PRIVATE_TOKEN_REQUEST) {
          const tokReq = publicVerif.TokenRequest.deserialize(TOKEN_TYPES.BLIND_RSA, body);
          const tokRes = await issuer.issue(tokReq);
          res.writeHead(200, { "content-type": MediaType.PRIVATE_TOKEN_RESPONSE });
          res.end(Buffer.from(tokRes.serialize()));
        } else if (type === MediaType.ARBITRARY_BATCHED_TOKEN_REQUEST) {
          const batch = genericBatched.BatchedTokenRequest.deserialize(body);
          const out = await batchIssuer.issue(batch);
          res.writeHead(200, { "content-type": MediaType.ARBITRARY_BATCHED_TOKEN_RESPONSE });
          res.end(Buffer.from(out.serialize()));
        } else {
          res.writeHead(415); res.end();
        }
      } else {
        res.writeHead(404); res.end();
      }
    } catch (err) {
      res.writeHead(400); res.end(String(err));
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  servers.push(server);
  return { url: `http://127.0.0.1:${server.address().port}`, token_key: hex(tokenKey) };
}

async function fetchTokens({ issuer_url, credential, challenge, token_key, n }) {
  // The privacypass-ts client against an issuer over HTTP (single or generic batch).
  const chl = TokenChallenge.deserialize(unhex(challenge));
  const clients = [];
  const requests = [];
  for (let i = 0; i < n; i++) {
    const client = new publicVerif.Client(publicVerif.BlindRSAMode.PSS);
    requests.push(await client.createTokenRequest(chl, unhex(token_key)));
    clients.push(client);
  }
  const auth = { authorization: `Bearer ${credential}` };
  let responses;
  if (n === 1) {
    const r = await fetch(`${issuer_url}/token-request`, { method: "POST", headers: { ...auth, "content-type": MediaType.PRIVATE_TOKEN_REQUEST, accept: MediaType.PRIVATE_TOKEN_RESPONSE }, body: requests[0].serialize() });
    if (r.status !== 200) throw new Error(`issuer status ${r.status}`);
    responses = [clients[0].deserializeTokenResponse(new Uint8Array(await r.arrayBuffer()))];
  } else {
    const batch = new genericBatched.Client().createTokenRequest(requests.map((q) => new genericBatched.TokenRequest(q)));
    const r = await fetch(`${issuer_url}/token-request`, { method: "POST", headers: { ...auth, "content-type": MediaType.ARBITRARY_BATCHED_TOKEN_REQUEST, accept: MediaType.ARBITRARY_BATCHED_TOKEN_RESPONSE }, body: batch.serialize() });
    if (r.status !== 200) throw new Error(`issuer status ${r.status}`);
    const decoded = genericBatched.GenericBatchTokenResponse.deserialize(new Uint8Array(await r.arrayBuffer()));
    responses = decoded.tokenResponses.map((o) => o.tokenResponse);
  }
  const out = [];
  for (let i = 0; i < n; i++) {
    const token = await clients[i].finalize(responses[i]);
    out.push({ token: hex(token.serialize()), authorization: new AuthorizationHeader(token).toString() });
  }
  return { tokens: out };
}

const ops = {
  async brsa_keygen() {
    const { privateKey, publicKey } = await RSABSSA.SHA384.generateKey({ modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) });
    return {
      spki: hex(new Uint8Array(await crypto.subtle.exportKey("spki", publicKey))),
      pkcs8: hex(new Uint8Array(await crypto.subtle.exportKey("pkcs8", privateKey))),
    };
  },
  async brsa_blind({ variant, spki, msg }) {
    const s = suite(variant);
    const prepared = s.prepare(unhex(msg));
    const { blindedMsg, inv } = await s.blind(await importPub(spki), prepared);
    return { prepared: hex(prepared), blinded: hex(blindedMsg), inv: hex(inv) };
  },
  async brsa_sign({ variant, pkcs8, blinded }) {
    return { blind_sig: hex(await suite(variant).blindSign(await importPriv(pkcs8), unhex(blinded))) };
  },
  async brsa_finalize({ variant, spki, prepared, blind_sig, inv }) {
    const s = suite(variant);
    return { sig: hex(await s.finalize(await importPub(spki), unhex(prepared), unhex(blind_sig), unhex(inv))) };
  },
  async brsa_verify({ variant, spki, prepared, sig }) {
    return { ok: await suite(variant).verify(await importPub(spki), unhex(sig), unhex(prepared)) };
  },
  async pp_fetch(req) {
    return fetchTokens(req);
  },
  async pp_challenge({ issuer_name, origin_info }) {
    const chl = new TokenChallenge(2, issuer_name, new Uint8Array(0), origin_info);
    return { challenge: hex(chl.serialize()) };
  },
  async pp_parse_www_authenticate({ header }) {
    const parsed = pp.WWWAuthenticateHeader.parse(header);
    return { challenges: parsed.map((h) => ({ challenge: hex(h.challenge.serialize()), token_key: hex(h.tokenKey), max_age: h.maxAge ?? null })) };
  },
  async pp_verify({ token, token_key }) {
    // Origin.verify checks the signature only (see INTEROP_NOTES); key id and digest are ours.
    const origin = new publicVerif.Origin(publicVerif.BlindRSAMode.PSS);
    const pub = await crypto.subtle.importKey("spki", util.convertRSASSAPSSToEnc(unhex(token_key)), rsaPss, true, ["verify"]);
    return { ok: await origin.verify(Token.deserialize(TOKEN_TYPES.BLIND_RSA, unhex(token)), pub) };
  },
  async pp_issuer_start() {
    return startIssuer();
  },
};

const rl = readline.createInterface({ input: process.stdin });
for await (const line of rl) {
  let answer;
  try {
    const req = JSON.parse(line);
    if (ops[req.op]) answer = await ops[req.op](req);
    else answer = { error: `unknown op ${req.op}` };
  } catch (err) {
    answer = { error: String(err && err.stack ? err.stack : err) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
for (const s of servers) s.close();
