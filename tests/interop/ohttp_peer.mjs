// Independent Oblivious HTTP peer (RFC 9458) built on @hpke/core + @hpke/dhkem-x25519, with
// node:crypto for the response step (HKDF, AES-GCM) and bhttp-js only to decode responses.
// JSON lines on stdin/stdout; bytes as hex.
import readline from "node:readline";
import { webcrypto, hkdfSync, createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { CipherSuite, HkdfSha256, Aes128Gcm } from "@hpke/core";
import { DhkemX25519HkdfSha256 } from "@hpke/dhkem-x25519";
import { BHttpDecoder } from "bhttp-js";

if (!globalThis.crypto) globalThis.crypto = webcrypto;

const hex = (u8) => Buffer.from(u8).toString("hex");
const unhex = (s) => new Uint8Array(Buffer.from(s, "hex"));
const te = new TextEncoder();
const suite = new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes128Gcm() });

// QUIC varint (RFC 9000 section 16), shortest form.
function varint(n) {
  if (n < 64) return Uint8Array.of(n);
  if (n < 16384) return Uint8Array.of(0x40 | (n >> 8), n & 0xff);
  return Uint8Array.of(0x80 | (n >>> 24), (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
}
const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) { out.set(p, off); off += p.length; }
  return out;
};
const vbytes = (b) => concat(varint(b.length), b);

// Known-length binary HTTP request (RFC 9292 section 3); path keeps its query string.
function encodeRequest(method, url, headers, body) {
  const u = new URL(url);
  const fields = concat(...Object.entries(headers).map(([k, v]) =>
    concat(vbytes(te.encode(k.toLowerCase())), vbytes(te.encode(v)))));
  return concat(Uint8Array.of(0), vbytes(te.encode(method)), vbytes(te.encode(u.protocol.slice(0, -1))),
    vbytes(te.encode(u.host)), vbytes(te.encode(u.pathname + u.search)), vbytes(fields), vbytes(body),
    Uint8Array.of(0));
}

// application/ohttp-keys: pick the first X25519 config offering HKDF-SHA256 + AES-128-GCM.
function pickConfig(list) {
  let off = 0;
  while (off + 2 <= list.length) {
    const len = (list[off] << 8) | list[off + 1];
    const cfg = list.subarray(off + 2, off + 2 + len);
    off += 2 + len;
    const kem = (cfg[1] << 8) | cfg[2];
    if (kem !== 0x20) continue;
    const algs = cfg.subarray(37);
    for (let i = 2; i + 4 <= algs.length; i += 4) {
      if (((algs[i] << 8) | algs[i + 1]) === 1 && ((algs[i + 2] << 8) | algs[i + 3]) === 1) {
        return { keyId: cfg[0], publicKey: cfg.subarray(3, 35) };
      }
    }
  }
  throw new Error("no usable key configuration");
}

const header = (keyId) => Uint8Array.of(keyId, 0x00, 0x20, 0x00, 0x01, 0x00, 0x01);
const info = (label, hdr) => concat(te.encode(label), Uint8Array.of(0), hdr);

async function encapsulate(config, request, ekm) {
  const hdr = header(config.keyId);
  const recipientPublicKey = await suite.kem.importKey("raw", config.publicKey, true);
  const params = { recipientPublicKey, info: info("message/bhttp request", hdr) };
  if (ekm) {  // fixed ephemeral key pair: known-answer tests only
    params.ekm = { privateKey: await suite.kem.importKey("raw", ekm.sk, false),
                   publicKey: await suite.kem.importKey("raw", ekm.pk, true) };
  }
  const sender = await suite.createSenderContext(params);
  const ct = new Uint8Array(await sender.seal(request));
  return { sender, enc: new Uint8Array(sender.enc), message: concat(hdr, new Uint8Array(sender.enc), ct) };
}

// RFC 9458 section 4.4 (client side): HKDF(salt = enc || nonce, secret) -> AES-128-GCM open.
async function decapsulateResponse(ctx, enc, sealed) {
  const secret = new Uint8Array(await ctx.export(te.encode("message/bhttp response"), 16));
  const nonce = sealed.subarray(0, 16);
  const salt = concat(enc, nonce);
  const key = Buffer.from(hkdfSync("sha256", secret, salt, "key", 16));
  const iv = Buffer.from(hkdfSync("sha256", secret, salt, "nonce", 12));
  const body = sealed.subarray(16, sealed.length - 16);
  const d = createDecipheriv("aes-128-gcm", key, iv);
  d.setAuthTag(sealed.subarray(sealed.length - 16));
  return new Uint8Array(Buffer.concat([d.update(body), d.final()]));
}

async function encapsulateResponse(ctx, enc, response) {
  const secret = new Uint8Array(await ctx.export(te.encode("message/bhttp response"), 16));
  const nonce = new Uint8Array(randomBytes(16));
  const salt = concat(enc, nonce);
  const key = Buffer.from(hkdfSync("sha256", secret, salt, "key", 16));
  const iv = Buffer.from(hkdfSync("sha256", secret, salt, "nonce", 12));
  const c = createCipheriv("aes-128-gcm", key, iv);
  const ct = Buffer.concat([c.update(response), c.final(), c.getAuthTag()]);
  return concat(nonce, new Uint8Array(ct));
}

async function decodeResponse(bytes) {
  const resp = new BHttpDecoder().decodeResponse(bytes);
  const headers = {};
  resp.headers.forEach((v, k) => { headers[k] = v; });
  return { status: resp.status, headers, body: hex(new Uint8Array(await resp.arrayBuffer())) };
}

const ops = {
  // A full client: keys through the relay, seal, POST to the relay, open, decode.
  async request({ relay_url, method, url, headers = {}, body = "" }) {
    const keys = new Uint8Array(await (await fetch(relay_url + "/ohttp-keys")).arrayBuffer());
    const config = pickConfig(keys);
    const { sender, enc, message } = await encapsulate(config, encodeRequest(method, url, headers, unhex(body)));
    const resp = await fetch(relay_url + "/relay", { method: "POST", body: message,
      headers: { "content-type": "message/ohttp-req" } });
    if (resp.status !== 200) return { outer_status: resp.status, problem: await resp.text() };
    const sealed = new Uint8Array(await resp.arrayBuffer());
    return { outer_status: 200, key_id: config.keyId, ...(await decodeResponse(await decapsulateResponse(sender, enc, sealed))) };
  },
  // RFC 9458 Appendix A: seal with the fixed ephemeral key, then open the given response.
  async vector({ key_config, request_bhttp, ephemeral_sk, ephemeral_pk, encapsulated_response }) {
    const cfg = unhex(key_config);
    const config = { keyId: cfg[0], publicKey: cfg.subarray(3, 35) };
    const { sender, enc, message } = await encapsulate(config, unhex(request_bhttp),
      { sk: unhex(ephemeral_sk), pk: unhex(ephemeral_pk) });
    const response = await decapsulateResponse(sender, enc, unhex(encapsulated_response));
    return { encapsulated_request: hex(message), response_bhttp: hex(response) };
  },
  // Act as a gateway: open a request sealed by the Python client and seal a response to it.
  async gateway({ private_key, encapsulated_request, response_bhttp }) {
    const req = unhex(encapsulated_request);
    const hdr = req.subarray(0, 7);
    const enc = req.subarray(7, 39);
    const recipientKey = await suite.kem.importKey("raw", unhex(private_key), false);
    const recipient = await suite.createRecipientContext({ recipientKey, enc, info: info("message/bhttp request", hdr) });
    const plaintext = new Uint8Array(await recipient.open(req.subarray(39)));
    const sealed = await encapsulateResponse(recipient, enc, unhex(response_bhttp));
    const decoded = new BHttpDecoder().decodeRequest(plaintext);
    return { request: hex(plaintext), method: decoded.method, url: decoded.url, encapsulated_response: hex(sealed) };
  },
  async decode_response({ bhttp }) {
    return decodeResponse(unhex(bhttp));
  },
};

const rl = readline.createInterface({ input: process.stdin });
for await (const line of rl) {
  let answer;
  try {
    const req = JSON.parse(line);
    answer = ops[req.op] ? await ops[req.op](req) : { error: `unknown op ${req.op}` };
  } catch (err) {
    answer = { error: String(err && err.stack ? err.stack : err) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
