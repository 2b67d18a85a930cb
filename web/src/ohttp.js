// Oblivious HTTP client side (RFC 9458) over maintained libraries: HPKE by @hpke/core with the
// X25519 KEM of @hpke/dhkem-x25519, Binary HTTP (RFC 9292) responses by bhttp-js, the response step
// (HKDF-SHA256, AES-128-GCM) by the browser's WebCrypto.
import { Aes128Gcm, CipherSuite, HkdfSha256 } from "@hpke/core";
import { DhkemX25519HkdfSha256 } from "@hpke/dhkem-x25519";
import { BHttpDecoder } from "bhttp-js";

const KEM_X25519 = 0x0020;
const KDF_HKDF_SHA256 = 0x0001;
const AEAD_AES_128_GCM = 0x0001;
const NK = 16; // AES-128-GCM key length
const NN = 12; // AES-128-GCM nonce length
const RESPONSE_NONCE_LENGTH = Math.max(NK, NN);
const te = new TextEncoder();

export class OhttpError extends Error {}
/** The gateway no longer knows the key configuration the page was built with. */
export class KeyMismatch extends OhttpError {}

const suite = new CipherSuite({
  kem: new DhkemX25519HkdfSha256(),
  kdf: new HkdfSha256(),
  aead: new Aes128Gcm(),
});

const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
};

/** The first X25519 / HKDF-SHA256 / AES-128-GCM configuration of an application/ohttp-keys
 * list (RFC 9458 section 3.2: each configuration preceded by its 2-byte length). */
export function chooseKeyConfig(list) {
  let offset = 0;
  while (offset + 2 <= list.length) {
    const length = (list[offset] << 8) | list[offset + 1];
    const config = list.subarray(offset + 2, offset + 2 + length);
    offset += 2 + length;
    if (config.length !== length || length < 3 + 32 + 2) break;
    const kem = (config[1] << 8) | config[2];
    if (kem !== KEM_X25519) continue;
    const algorithms = config.subarray(35);
    const algLength = (algorithms[0] << 8) | algorithms[1];
    for (let i = 2; i + 4 <= 2 + algLength && i + 4 <= algorithms.length; i += 4) {
      const kdf = (algorithms[i] << 8) | algorithms[i + 1];
      const aead = (algorithms[i + 2] << 8) | algorithms[i + 3];
      if (kdf === KDF_HKDF_SHA256 && aead === AEAD_AES_128_GCM) {
        return { keyId: config[0], publicKey: config.slice(3, 35) };
      }
    }
  }
  throw new OhttpError("no usable OHTTP key configuration");
}

// QUIC variable-length integer (RFC 9000 section 16), shortest form.
function varint(n) {
  if (n < 0x40) return Uint8Array.of(n);
  if (n < 0x4000) return Uint8Array.of(0x40 | (n >> 8), n & 0xff);
  if (n < 0x40000000) {
    return Uint8Array.of(0x80 | (n >>> 24), (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
  }
  throw new OhttpError("field too long");
}
const vector = (bytes) => concat(varint(bytes.length), bytes);

/** A known-length Binary HTTP GET request (RFC 9292 section 3) with a Date field, which the
 * gateway's replay window needs. Encoded here because bhttp-js 0.2.1's encoder drops the query
 * string (it writes only URL.pathname); its decoder reads the responses. */
export function encodeGet(url, headers) {
  const target = new URL(url);
  const fields = [...Object.entries(headers), ["date", new Date().toUTCString()]]
    .map(([name, value]) => concat(vector(te.encode(name.toLowerCase())), vector(te.encode(value))));
  return concat(Uint8Array.of(0), vector(te.encode("GET")),
    vector(te.encode(target.protocol.slice(0, -1))), vector(te.encode(target.host)),
    vector(te.encode(target.pathname + target.search)), vector(concat(...fields)),
    vector(new Uint8Array(0)), vector(new Uint8Array(0)));
}

export class ObliviousClient {
  /** relayUrl: the relay's base URL; keyConfigs: the application/ohttp-keys bytes. */
  constructor(relayUrl, keyConfigs) {
    this.endpoint = relayUrl.replace(/\/$/, "") + "/relay";
    this.config = chooseKeyConfig(keyConfigs);
    this.header = Uint8Array.of(this.config.keyId, KEM_X25519 >> 8, KEM_X25519 & 0xff,
      0, KDF_HKDF_SHA256, 0, AEAD_AES_128_GCM);
    this.publicKey = suite.kem.deserializePublicKey(this.config.publicKey);
    this.decoder = new BHttpDecoder();
  }

  /** GET ``url`` (the target, as the gateway reaches it) through the relay; returns a Response
   * holding what the target answered. */
  async get(url, headers = {}) {
    const plain = encodeGet(url, headers);
    const info = concat(te.encode("message/bhttp request"), Uint8Array.of(0), this.header);
    const sender = await suite.createSenderContext({
      recipientPublicKey: await this.publicKey, info,
    });
    const sealed = new Uint8Array(await sender.seal(plain));
    const enc = new Uint8Array(sender.enc);
    const outer = await fetch(this.endpoint, {
      method: "POST",
      body: concat(this.header, enc, sealed),
      headers: { "Content-Type": "message/ohttp-req" },
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer",
      mode: "cors",
    });
    const body = new Uint8Array(await outer.arrayBuffer());
    const type = (outer.headers.get("Content-Type") || "").split(";")[0].trim();
    if (outer.status === 400 && type === "application/problem+json") {
      const problem = JSON.parse(new TextDecoder().decode(body));
      if (String(problem.type || "").endsWith("#ohttp-key")) throw new KeyMismatch("keys changed");
    }
    if (outer.status === 429) {
      const retry = outer.headers.get("Retry-After") || "a few";
      throw new OhttpError(`the relay's limit is reached: try again in ${retry} s`);
    }
    if (outer.status !== 200 || type !== "message/ohttp-res") {
      throw new OhttpError(`relay answered HTTP ${outer.status}`);
    }
    // RFC 9458 section 4.4: key and nonce from HKDF(salt = enc || response_nonce, secret).
    const secret = new Uint8Array(await sender.export(te.encode("message/bhttp response"),
      RESPONSE_NONCE_LENGTH));
    const nonce = body.subarray(0, RESPONSE_NONCE_LENGTH);
    const ikm = await crypto.subtle.importKey("raw", secret, "HKDF", false, ["deriveBits"]);
    const salt = concat(enc, nonce);
    const derive = (label, bits) => crypto.subtle.deriveBits(
      { name: "HKDF", hash: "SHA-256", salt, info: te.encode(label) }, ikm, bits);
    const aeadKey = await crypto.subtle.importKey("raw", await derive("key", NK * 8), "AES-GCM",
      false, ["decrypt"]);
    const aeadNonce = new Uint8Array(await derive("nonce", NN * 8));
    let opened;
    try {
      opened = await crypto.subtle.decrypt({ name: "AES-GCM", iv: aeadNonce }, aeadKey,
        body.subarray(RESPONSE_NONCE_LENGTH));
    } catch {
      throw new OhttpError("the response could not be decrypted");
    }
    return this.decoder.decodeResponse(new Uint8Array(opened));
  }
}
