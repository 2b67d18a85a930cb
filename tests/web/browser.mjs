// Drives the sticker search page in a real headless Chromium (the Debian package, launched by
// playwright-core pinned in web/package-lock.json; no browser is downloaded). One JSON object
// in argv[2], one JSON object out on stdout:
//   {url, cookieDomain, type: "cat", keystrokes: ["pizza", ...], screenshot: PATH}
import { createRequire } from "node:module";

const require = createRequire(new URL("../../web/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const job = JSON.parse(process.argv[2]);
const browser = await chromium.launch({
  executablePath: job.executablePath || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const out = { requests: [], console: [], errors: [] };
let page = null;
try {
  const context = await browser.newContext({ viewport: { width: 900, height: 640 } });
  // A cookie the page's origin and every service on this host would receive if a request
  // carried credentials (cookies are not port-specific).
  await context.addCookies([{ name: "tracker", value: "cookie-7f3e", domain: job.cookieDomain,
    path: "/" }]);
  page = await context.newPage();
  page.on("console", (msg) => out.console.push(`${msg.type()}: ${msg.text()}`));
  page.on("pageerror", (err) => out.errors.push(String(err)));
  page.on("request", async (request) => {
    const headers = await request.allHeaders().catch(() => ({}));
    out.requests.push({ url: request.url(), method: request.method(), headers });
  });
  await page.goto(job.url, { waitUntil: "load" });
  try {
    await page.waitForSelector("body[data-ready=true]", { timeout: job.readyTimeout || 30000 });
    out.ready = true;
  } catch {
    out.ready = false;
  }
  out.status = await page.textContent("#status");
  out.location = page.url();
  if (out.ready && job.type) {
    await page.click("#q");
    await page.keyboard.type(job.type, { delay: 30 });
    await page.waitForSelector(`#results[data-query="${job.type}"]`, { state: "attached", timeout: 15000 });
    out.glyphs = await page.$$eval("#results .glyph", (nodes) => nodes.map((n) => n.textContent));
    if (job.screenshot) await page.screenshot({ path: job.screenshot });
  }
  if (out.ready && job.keystrokes) {
    // Keystroke to rendered results, timed in the page: from the keydown event to the moment
    // the result list shows the answer for the text typed so far.
    out.latencies = [];
    for (const word of job.keystrokes) {
      await page.fill("#q", "");
      await page.waitForSelector('#results[data-query=""]', { state: "attached", timeout: 15000 });
      for (const char of word) {
        await page.evaluate(() => {
          const input = document.getElementById("q");
          const list = document.getElementById("results");
          window.keyTiming = new Promise((resolve, reject) => {
            let start = 0;
            // keydown, or beforeinput for text typed without a key (an IME, "ó").
            const begin = () => { start = start || performance.now(); };
            input.addEventListener("keydown", begin, { once: true });
            input.addEventListener("beforeinput", begin, { once: true });
            const observer = new MutationObserver(() => {
              if (start && list.dataset.query === input.value) {
                observer.disconnect();
                resolve(performance.now() - start);
              }
            });
            observer.observe(list, { attributes: true, attributeFilter: ["data-query"] });
            setTimeout(() => reject(new Error(`no results for "${input.value}" within 15 s`)),
              15000);
          });
        });
        await page.keyboard.type(char);
        out.latencies.push(await page.evaluate(() => window.keyTiming));
      }
    }
  }
  out.weight = await page.evaluate(() => {
    const entries = [...performance.getEntriesByType("navigation"),
      ...performance.getEntriesByType("resource")]
      .filter((e) => new URL(e.name).origin === location.origin);
    return entries.map((e) => ({ name: new URL(e.name).pathname, encoded: e.encodedBodySize,
      decoded: e.decodedBodySize }));
  });
} catch (error) {
  out.errors.push(`driver: ${error.message.split("\n")[0]}`);
  out.finalStatus = await page?.textContent("#status").catch(() => null);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out) + "\n");
