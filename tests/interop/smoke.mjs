// Smoke peer: proves each third-party implementation loads under Node and does one real
// operation. One JSON object per line on stdin -> one per line on stdout; bytes as hex.
import readline from "node:readline";
import { webcrypto } from "node:crypto";

const hex = (u8) => Buffer.from(u8).toString("hex");

const ops = {
  async "blindrsa-ts"() {
    const { RSABSSA } = await import("@cloudflare/blindrsa-ts");
    const suite = RSABSSA.SHA384.PSS.Randomized();
    const { privateKey, publicKey } = await suite.generateKey({ modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) });
    const msg = new TextEncoder().encode("smoke");
    const prepared = suite.prepare(msg);
    const { blindedMsg, inv } = await suite.blind(publicKey, prepared);
    const blindSig = await suite.blindSign(privateKey, blindedMsg);
    const sig = await suite.finalize(publicKey, prepared, blindSig, inv);
    return { ok: await suite.verify(publicKey, sig, prepared), sig_len: sig.length };
  },
  async "privacypass-ts"() {
    const pp = await import("@cloudflare/privacypass-ts");
    const challenge = new pp.TokenChallenge(2, "issuer.example", new Uint8Array(0), ["origin.example"]);
    return { ok: true, challenge: hex(challenge.serialize()) };
  },
  async hpke() {
    const { CipherSuite, Aes128Gcm, HkdfSha256 } = await import("@hpke/core");
    const { DhkemX25519HkdfSha256 } = await import("@hpke/dhkem-x25519");
    const suite = new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes128Gcm() });
    const rkp = await suite.kem.generateKeyPair();
    const sender = await suite.createSenderContext({ recipientPublicKey: rkp.publicKey });
    const ct = await sender.seal(new TextEncoder().encode("smoke").buffer);
    const recipient = await suite.createRecipientContext({ recipientKey: rkp.privateKey, enc: sender.enc });
    const pt = new TextDecoder().decode(await recipient.open(ct));
    return { ok: pt === "smoke", enc_len: sender.enc.byteLength };
  },
  async "bhttp-js"() {
    const { BHttpDecoder } = await import("bhttp-js");
    // Known-length GET https://a.example/ with no fields and no content (RFC 9292 section 3).
    const bytes = new Uint8Array([0x00, 0x03, 0x47, 0x45, 0x54, 0x05, 0x68, 0x74, 0x74, 0x70, 0x73,
      0x09, ...new TextEncoder().encode("a.example"), 0x01, 0x2f, 0x00, 0x00]);
    const req = new BHttpDecoder().decodeRequest(bytes);
    return { ok: req.method === "GET", url: req.url };
  },
  async libsignal() {
    const libsignal = (await import("libsignal")).default;
    const identity = libsignal.keyhelper.generateIdentityKeyPair();
    const spk = libsignal.keyhelper.generateSignedPreKey(identity, 1);
    const ok = libsignal.curve.verifySignature(identity.pubKey, spk.keyPair.pubKey, spk.signature);
    return { ok: ok !== false, pub: hex(identity.pubKey) };
  },
  async "libsignal-protocol-typescript"() {
    const lib = await import("@privacyresearch/libsignal-protocol-typescript");
    const KeyHelper = lib.KeyHelper ?? lib.default.KeyHelper;
    const identity = await KeyHelper.generateIdentityKeyPair();
    return { ok: identity.pubKey.byteLength === 33, pub: hex(new Uint8Array(identity.pubKey)) };
  },
};

if (!globalThis.crypto) globalThis.crypto = webcrypto;

const rl = readline.createInterface({ input: process.stdin });
for await (const line of rl) {
  let answer;
  try {
    const req = JSON.parse(line);
    if (req.op === "ping") answer = { ok: true, peers: Object.keys(ops) };
    else if (ops[req.op]) answer = await ops[req.op]();
    else answer = { error: `unknown op ${req.op}` };
  } catch (err) {
    answer = { error: String(err && err.stack ? err.stack : err) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
