// The private sticker search page. Every search is sealed in the browser (Oblivious HTTP) and
// carries one Privacy Pass token; the page's own origin serves only static files, its
// configuration and the gateway key configuration named in its signed manifest.
import { KeyMismatch, ObliviousClient, OhttpError } from "./ohttp.js";
import { IssuerError, RateLimited, SignedOut, TokenPool } from "./tokens.js";

const CREDENTIAL_KEY = "sticker-search-credential";
const RESULT_LIMIT = 24;

const $ = (id) => document.getElementById(id);
const status = (text) => { $("status").textContent = text; };

const sameOrigin = (path) => fetch(path, { credentials: "omit", cache: "no-store" });

/** The credential from the URL fragment (never sent to any server), kept for this tab only. */
function takeCredential() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const given = fragment.get("credential");
  if (given) {
    sessionStorage.setItem(CREDENTIAL_KEY, given);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(CREDENTIAL_KEY);
}

function render(query, page) {
  const list = $("results");
  const items = page.results.map((hit) => {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.title = hit.title;
    const glyph = document.createElement("span");
    glyph.className = "glyph";
    glyph.textContent = hit.glyph;
    const title = document.createElement("span");
    title.className = "title";
    title.textContent = hit.title;
    button.append(glyph, title);
    button.addEventListener("click", () => {
      navigator.clipboard?.writeText(hit.glyph).catch(() => {});
      status(`${hit.glyph} copied`);
    });
    item.append(button);
    return item;
  });
  list.replaceChildren(...items);
  list.dataset.query = query;
  $("count").textContent = query ? `${page.total} stickers` : "";
}

class Searcher {
  constructor(config, keys, credential) {
    this.config = config;
    this.oblivious = new ObliviousClient(config.relay, keys);
    this.credential = credential;
    this.target = config.target.replace(/\/$/, "") + "/v1/search";
    this.latest = 0;
  }

  async start() {
    // The service's challenge, fetched through the relay with a query-less request.
    const answer = await this.oblivious.get(this.target);
    const challenge = answer.headers.get("www-authenticate");
    if (answer.status !== 401 || !challenge) throw new OhttpError("no token challenge");
    this.pool = new TokenPool(this.config.issuer, this.credential, challenge,
      { batch: this.config.token_batch || 16 });
    await this.pool.refill();
  }

  async search(query, lang) {
    const seq = ++this.latest;
    if (!query.trim()) {
      render("", { total: 0, results: [] });
      return;
    }
    const params = new URLSearchParams({ q: query, limit: String(RESULT_LIMIT) });
    if (lang) params.set("lang", lang);
    const authorization = await this.pool.take();
    const answer = await this.oblivious.get(`${this.target}?${params}`,
      { authorization });
    if (answer.status !== 200) {
      if (seq === this.latest) status(`search refused (HTTP ${answer.status})`);
      return;
    }
    const page = await answer.json();
    if (seq === this.latest) render(query, page); // an older answer never hides a newer one
  }
}

function explain(error) {
  if (error instanceof RateLimited) return `token limit reached: try again in ${error.retryAfter} s`;
  if (error instanceof SignedOut) return "sign in again: the issuer does not know this credential";
  if (error instanceof KeyMismatch) return "the gateway's keys changed: reload the page";
  if (error instanceof IssuerError || error instanceof OhttpError) return error.message;
  return "the search service cannot be reached";
}

async function main() {
  const credential = takeCredential();
  if (!credential) {
    $("signin").hidden = false;
    $("signin").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(CREDENTIAL_KEY, $("credential").value.trim());
      location.reload();
    });
    status("sign in to search");
    return;
  }
  status("fetching tokens...");
  const [config, keys] = await Promise.all([
    sameOrigin("config.json").then((r) => r.json()),
    sameOrigin("ohttp-keys").then((r) => r.arrayBuffer()).then((b) => new Uint8Array(b)),
  ]);
  const searcher = new Searcher(config, keys, credential);
  try {
    await searcher.start();
  } catch (error) {
    status(explain(error));
    return;
  }
  const input = $("q");
  const lang = $("lang");
  const run = () => searcher.search(input.value, lang.value).then(
    () => status(`searched privately: ${searcher.pool.size} tokens left`),
    (error) => status(explain(error)));
  input.addEventListener("input", run);
  lang.addEventListener("change", run);
  input.disabled = false;
  input.focus();
  status(`ready: ${searcher.pool.size} tokens`);
  document.body.dataset.ready = "true";
}

main().catch((error) => status(explain(error)));
