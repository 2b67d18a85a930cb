// Signal-protocol peer over JSON lines: one party (identity, prekeys, sessions) per process.
// Usage: node signal_peer.mjs libsignal|ts   (libsignal@6.0.0 or
// @privacyresearch/libsignal-protocol-typescript). Bytes travel as hex. Plaintexts are padded
// with Signal's transport padding (0x80 terminator, 160-byte steps) before encryption and
// unpadded after decryption, as Signal's apps do on top of these libraries.
import readline from "node:readline";
import { createRequire } from "node:module";
import { webcrypto } from "node:crypto";

if (!globalThis.crypto) globalThis.crypto = webcrypto;
// The libraries log session internals (key material) with console.*: silence them all, and
// keep stdout for the JSON protocol (an undrained stderr pipe could also block the peer).
for (const level of ["log", "info", "warn", "error", "debug", "trace"]) console[level] = () => {};
const require = createRequire(import.meta.url);
const flavour = process.argv[2] || "libsignal";

const hex = (b) => Buffer.from(b instanceof ArrayBuffer ? new Uint8Array(b) : b).toString("hex");
const unhex = (s) => Buffer.from(s, "hex");
const ab = (buf) => { const u = new Uint8Array(buf); return u.buffer.slice(u.byteOffset, u.byteOffset + u.byteLength); };

function pad(msg) {
  const withTerminator = msg.length + 2;
  const total = Math.ceil(withTerminator / 160) * 160 - 1;
  const out = Buffer.alloc(total);
  msg.copy(out);
  out[msg.length] = 0x80;
  return out;
}
function unpad(buf) {
  let i = buf.length - 1;
  while (i >= 0 && buf[i] === 0) i--;
  if (i < 0 || buf[i] !== 0x80) throw new Error("bad padding");
  return buf.subarray(0, i);
}

// ---------------------------------------------------------------------------------------------
function makeLibsignal() {
  const ls = require("libsignal");
  const { FingerprintGenerator } = require("libsignal/src/numeric_fingerprint.js");
  const party = { nextPreKey: 1 };
  const trusted = new Map();
  const sessions = new Map();
  const preKeys = new Map();
  const signedPreKeys = new Map();
  const storage = {
    getOurIdentity: async () => party.identity,
    getOurRegistrationId: async () => party.registrationId,
    isTrustedIdentity: async (id, key) => {
      // libsignal-node passes "name" on some paths and "name.device" on others: key by name.
      const name = String(id).split(".")[0];
      const known = trusted.get(name);
      if (!known) { trusted.set(name, Buffer.from(key)); return true; }
      return known.equals(Buffer.from(key));
    },
    loadPreKey: async (id) => preKeys.get(Number(id)),
    removePreKey: async (id) => { preKeys.delete(Number(id)); },
    loadSignedPreKey: async (id) => signedPreKeys.get(Number(id)),
    loadSession: async (addr) => sessions.has(addr) ? ls.SessionRecord.deserialize(JSON.parse(sessions.get(addr))) : undefined,
    storeSession: async (addr, record) => { sessions.set(addr, JSON.stringify(record.serialize())); },
  };
  const addr = (req) => new ls.ProtocolAddress(req.name, req.device_id);
  function newIdentity() {
    party.identity = ls.keyhelper.generateIdentityKeyPair();
    party.registrationId = ls.keyhelper.generateRegistrationId() || 1;
    const spk = ls.keyhelper.generateSignedPreKey(party.identity, 1);
    signedPreKeys.clear(); preKeys.clear(); sessions.clear();
    signedPreKeys.set(1, spk.keyPair);
    party.signed = spk;
  }
  return {
    newIdentity,
    identityKey: () => party.identity.pubKey,
    bundle(oneTime) {
      const out = {
        registration_id: party.registrationId, device_id: 1,
        identity_key: hex(party.identity.pubKey), signed_pre_key_id: party.signed.keyId,
        signed_pre_key: hex(party.signed.keyPair.pubKey), signed_pre_key_signature: hex(party.signed.signature),
      };
      if (oneTime) {
        const pk = ls.keyhelper.generatePreKey(party.nextPreKey++);
        preKeys.set(pk.keyId, pk.keyPair);
        out.pre_key_id = pk.keyId; out.pre_key = hex(pk.keyPair.pubKey);
      }
      return out;
    },
    async startSession(req) {
      const b = req.bundle;
      if (!ls.curve.verifySignature(unhex(b.identity_key), unhex(b.signed_pre_key), unhex(b.signed_pre_key_signature))) {
        throw new Error("signed prekey signature does not verify");
      }
      const device = {
        identityKey: unhex(b.identity_key), registrationId: b.registration_id,
        signedPreKey: { keyId: b.signed_pre_key_id, publicKey: unhex(b.signed_pre_key), signature: unhex(b.signed_pre_key_signature) },
      };
      if (b.pre_key) device.preKey = { keyId: b.pre_key_id, publicKey: unhex(b.pre_key) };
      await new ls.SessionBuilder(storage, addr(req)).initOutgoing(device);
    },
    async encrypt(req, plaintext) {
      const r = await new ls.SessionCipher(storage, addr(req)).encrypt(plaintext);
      return { type: r.type === 3 ? 3 : 2, body: hex(r.body) };
    },
    async decrypt(req, type, body) {
      const c = new ls.SessionCipher(storage, addr(req));
      return type === 3 ? c.decryptPreKeyWhisperMessage(body) : c.decryptWhisperMessage(body);
    },
    trust(req) { trusted.delete(req.name); },
    async fingerprint(req) {
      return new FingerprintGenerator(req.iterations).createFor(req.local_id, ab(unhex(req.local_key)), req.remote_id, ab(unhex(req.remote_key)));
    },
    verify(pub, msg, sig) { return ls.curve.verifySignature(pub, msg, sig) !== false; },
    agree(pub, priv) { return ls.curve.calculateAgreement(pub, priv); },
  };
}

// ---------------------------------------------------------------------------------------------
async function makeTs() {
  const lib = await import("@privacyresearch/libsignal-protocol-typescript");
  const L = lib.KeyHelper ? lib : lib.default;
  const party = { nextPreKey: 1 };
  const trusted = new Map();
  const sessions = new Map();
  const preKeys = new Map();
  const signedPreKeys = new Map();
  const storage = {
    getIdentityKeyPair: async () => party.identity,
    getLocalRegistrationId: async () => party.registrationId,
    isTrustedIdentity: async (id, key) => {
      const known = trusted.get(id);
      return !known || Buffer.from(known).equals(Buffer.from(key));
    },
    saveIdentity: async (id, key) => {
      const name = id.split(".")[0];
      const known = trusted.get(name);
      trusted.set(name, key);
      return !!known && !Buffer.from(known).equals(Buffer.from(key));
    },
    loadPreKey: async (id) => preKeys.get(Number(id)),
    storePreKey: async (id, kp) => { preKeys.set(Number(id), kp); },
    removePreKey: async (id) => { preKeys.delete(Number(id)); },
    loadSignedPreKey: async (id) => signedPreKeys.get(Number(id)),
    storeSignedPreKey: async (id, kp) => { signedPreKeys.set(Number(id), kp); },
    removeSignedPreKey: async (id) => { signedPreKeys.delete(Number(id)); },
    loadSession: async (a) => sessions.get(a),
    storeSession: async (a, r) => { sessions.set(a, r); },
  };
  const addr = (req) => new L.SignalProtocolAddress(req.name, req.device_id);
  async function newIdentity() {
    party.identity = await L.KeyHelper.generateIdentityKeyPair();
    party.registrationId = L.KeyHelper.generateRegistrationId() || 1;
    const spk = await L.KeyHelper.generateSignedPreKey(party.identity, 1);
    signedPreKeys.clear(); preKeys.clear(); sessions.clear();
    signedPreKeys.set(1, spk.keyPair);
    party.signed = spk;
  }
  return {
    newIdentity,
    identityKey: () => party.identity.pubKey,
    async bundle(oneTime) {
      const out = {
        registration_id: party.registrationId, device_id: 1,
        identity_key: hex(party.identity.pubKey), signed_pre_key_id: party.signed.keyId,
        signed_pre_key: hex(party.signed.keyPair.pubKey), signed_pre_key_signature: hex(party.signed.signature),
      };
      if (oneTime) {
        const pk = await L.KeyHelper.generatePreKey(party.nextPreKey++);
        preKeys.set(pk.keyId, pk.keyPair);
        out.pre_key_id = pk.keyId; out.pre_key = hex(pk.keyPair.pubKey);
      }
      return out;
    },
    async startSession(req) {
      const b = req.bundle;
      const device = {
        identityKey: ab(unhex(b.identity_key)), registrationId: b.registration_id,
        signedPreKey: { keyId: b.signed_pre_key_id, publicKey: ab(unhex(b.signed_pre_key)), signature: ab(unhex(b.signed_pre_key_signature)) },
      };
      if (b.pre_key) device.preKey = { keyId: b.pre_key_id, publicKey: ab(unhex(b.pre_key)) };
      await new L.SessionBuilder(storage, addr(req)).processPreKey(device);
    },
    async encrypt(req, plaintext) {
      const r = await new L.SessionCipher(storage, addr(req)).encrypt(ab(plaintext));
      return { type: r.type === 3 ? 3 : 2, body: hex(Buffer.from(r.body, "binary")) };
    },
    async decrypt(req, type, body) {
      const c = new L.SessionCipher(storage, addr(req));
      const out = type === 3 ? await c.decryptPreKeyWhisperMessage(ab(body), "binary") : await c.decryptWhisperMessage(ab(body), "binary");
      return Buffer.from(new Uint8Array(out));
    },
    trust(req) { trusted.delete(req.name); },
    async fingerprint(req) {
      return new L.FingerprintGenerator(req.iterations).createFor(req.local_id, ab(unhex(req.local_key)), req.remote_id, ab(unhex(req.remote_key)));
    },
    verify: null,
  };
}

// ---------------------------------------------------------------------------------------------
const impl = flavour === "ts" ? await makeTs() : makeLibsignal();
await impl.newIdentity();

// A second, independent libsignal party inside this process for the benchmark baseline.
async function benchPair() {
  const a = flavour === "ts" ? await makeTs() : makeLibsignal();
  const b = flavour === "ts" ? await makeTs() : makeLibsignal();
  await a.newIdentity(); await b.newIdentity();
  return { a, b };
}
let bench = null;
let setupCounter = 0;

const ops = {
  async ping() { return { ok: true, flavour }; },
  async reset_identity() { await impl.newIdentity(); return { identity_key: hex(impl.identityKey()) }; },
  async bundle(req) { return { bundle: await impl.bundle(req.one_time !== false) }; },
  async start_session(req) { await impl.startSession(req); return { ok: true }; },
  async encrypt(req) {
    const r = await impl.encrypt(req, pad(unhex(req.plaintext)));
    return r;
  },
  async decrypt(req) {
    const out = await impl.decrypt(req, req.type, unhex(req.body));
    return { plaintext: hex(unpad(Buffer.from(out))) };
  },
  async trust(req) { impl.trust(req); return { ok: true }; },
  async fingerprint(req) { return { display: await impl.fingerprint(req) }; },
  async verify(req) {
    if (!impl.verify) throw new Error("verify only in the libsignal flavour");
    return { ok: impl.verify(unhex(req.public_key), unhex(req.message), unhex(req.signature)) };
  },
  // Benchmarks: n encrypt+decrypt round trips of `size`-byte messages in one established
  // session, and n session setups (bundle processing + first message decrypt).
  async bench_messages(req) {
    if (!bench) {
      bench = await benchPair();
      await bench.a.startSession({ name: "b", device_id: 1, bundle: await bench.b.bundle(true) });
      const first = await bench.a.encrypt({ name: "b", device_id: 1 }, pad(Buffer.alloc(1)));
      await bench.b.decrypt({ name: "a", device_id: 1 }, first.type, unhex(first.body));
      const reply = await bench.b.encrypt({ name: "a", device_id: 1 }, pad(Buffer.alloc(1)));
      await bench.a.decrypt({ name: "b", device_id: 1 }, reply.type, unhex(reply.body));
    }
    const msg = Buffer.alloc(req.size, 0x61);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < req.n; i++) {
      const c = await bench.a.encrypt({ name: "b", device_id: 1 }, pad(msg));
      unpad(Buffer.from(await bench.b.decrypt({ name: "a", device_id: 1 }, c.type, unhex(c.body))));
    }
    return { seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
  },
  async bench_setups(req) {
    // Same shape as the Python side: one initiator and one responder identity, a fresh
    // one-time prekey bundle and a new address per setup; first message decrypted.
    if (!bench) await ops.bench_messages({ n: 0, size: 1 });
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < req.n; i++) {
      const id = setupCounter++;
      await bench.a.startSession({ name: `s${id}`, device_id: 1, bundle: await bench.b.bundle(true) });
      const c = await bench.a.encrypt({ name: `s${id}`, device_id: 1 }, pad(Buffer.alloc(100, 0x61)));
      await bench.b.decrypt({ name: `r${id}`, device_id: 1 }, c.type, unhex(c.body));
    }
    return { seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
  },
};

const rl = readline.createInterface({ input: process.stdin });
for await (const line of rl) {
  let answer;
  try {
    const req = JSON.parse(line);
    answer = ops[req.op] ? await ops[req.op](req) : { error: `unknown op ${req.op}` };
  } catch (err) {
    answer = { error: String(err && err.name ? `${err.name}: ${err.message}` : err) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
