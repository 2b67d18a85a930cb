// Privacy Pass tokens (RFC 9578, type 0x0002 blind RSA) fetched from the issuer as the signed-in
// account, in generic batches (draft-ietf-privacypass-batched-tokens), by
// @cloudflare/privacypass-ts. The issuer learns the account and how many tokens it takes; the
// tokens it signs are blinded, so none can be linked to the search that spends it.
import {
  AuthorizationHeader,
  MediaType,
  TokenChallenge,
  WWWAuthenticateHeader,
  genericBatched,
  publicVerif,
} from "@cloudflare/privacypass-ts";

const DIRECTORY_PATH = "/.well-known/private-token-issuer-directory";
const TOKEN_TYPE_BLIND_RSA = 0x0002;

export class IssuerError extends Error {}
/** The issuer refused more tokens for now; retryAfter in seconds. */
export class RateLimited extends IssuerError {
  constructor(retryAfter) {
    super(`token limit reached; retry in ${retryAfter} s`);
    this.retryAfter = retryAfter;
  }
}
/** The issuer does not accept the credential. */
export class SignedOut extends IssuerError {}

const request = (url, init = {}) => fetch(url, {
  ...init, credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer", mode: "cors",
});

export class TokenPool {
  /** issuerUrl: the issuer's base URL; credential: the account's bearer credential;
   * wwwAuthenticate: the sticker service's PrivateToken challenge. */
  constructor(issuerUrl, credential, wwwAuthenticate, { batch = 16, low = 4 } = {}) {
    this.issuerUrl = issuerUrl.replace(/\/$/, "");
    this.credential = credential;
    this.batch = batch;
    this.low = low;
    this.tokens = [];
    this.refilling = null;
    const offered = WWWAuthenticateHeader.parse(wwwAuthenticate)
      .filter((c) => c.challenge.tokenType === TOKEN_TYPE_BLIND_RSA);
    if (offered.length === 0) throw new IssuerError("no PrivateToken challenge of type 2");
    this.challenge = offered[0];
  }

  async issuanceUrl() {
    if (!this.requestUri) {
      const response = await request(this.issuerUrl + DIRECTORY_PATH);
      if (response.status !== 200) throw new IssuerError(`issuer directory: HTTP ${response.status}`);
      const directory = await response.json();
      this.requestUri = new URL(directory["issuer-request-uri"], response.url).href;
    }
    return this.requestUri;
  }

  /** One batched issuance request for ``n`` tokens. */
  async fetchBatch(n) {
    const challenge = TokenChallenge.deserialize(this.challenge.challenge.serialize());
    const clients = [];
    const requests = [];
    for (let i = 0; i < n; i++) {
      const client = new publicVerif.Client(publicVerif.BlindRSAMode.PSS);
      requests.push(new genericBatched.TokenRequest(
        await client.createTokenRequest(challenge, this.challenge.tokenKey)));
      clients.push(client);
    }
    const body = new genericBatched.Client().createTokenRequest(requests).serialize();
    const response = await request(await this.issuanceUrl(), {
      method: "POST",
      body,
      headers: {
        "Authorization": `Bearer ${this.credential}`,
        "Content-Type": MediaType.ARBITRARY_BATCHED_TOKEN_REQUEST,
        "Accept": MediaType.ARBITRARY_BATCHED_TOKEN_RESPONSE,
      },
    });
    if (response.status === 429) {
      const retry = Number.parseInt(response.headers.get("Retry-After") || "1", 10);
      throw new RateLimited(Number.isFinite(retry) ? retry : 1);
    }
    if (response.status === 401) throw new SignedOut("the issuer does not know this credential");
    if (response.status !== 200 && response.status !== 206) {
      throw new IssuerError(`issuer answered HTTP ${response.status}`);
    }
    const decoded = genericBatched.GenericBatchTokenResponse.deserialize(
      new Uint8Array(await response.arrayBuffer()));
    const out = [];
    decoded.tokenResponses.forEach((item, i) => {
      if (item.tokenResponse !== null && i < clients.length) {
        out.push(clients[i].finalize(item.tokenResponse));
      }
    });
    return Promise.all(out);
  }

  /** Fill the pool in the background when it runs low (one refill at a time). */
  refill() {
    if (!this.refilling) {
      this.refilling = this.fetchBatch(this.batch)
        .then((tokens) => { this.tokens.push(...tokens); })
        .finally(() => { this.refilling = null; });
    }
    return this.refilling;
  }

  get size() {
    return this.tokens.length;
  }

  /** The Authorization value of one unspent token (each is spent once). */
  async take() {
    while (this.tokens.length === 0) await this.refill();
    const token = this.tokens.shift();
    if (this.tokens.length < this.low) this.refill().catch(() => {});
    return new AuthorizationHeader(token).toString();
  }
}
