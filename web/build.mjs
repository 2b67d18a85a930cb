// Builds dist/: the bundled page script (esbuild, pinned in package-lock.json), the style sheet
// and index.html with Subresource Integrity hashes of both. Deterministic: the same sources and
// lock file give the same bytes, so the signed manifest can be compared with a rebuild.
import { createHash } from "node:crypto";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { build } from "esbuild";

const here = new URL(".", import.meta.url);
const dist = new URL("dist/", here);
const sri = (bytes) => "sha384-" + createHash("sha384").update(bytes).digest("base64");

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });
const result = await build({
  entryPoints: [new URL("src/main.js", here).pathname],
  bundle: true,
  format: "esm",
  minify: true,
  target: ["chrome120", "firefox121", "safari17"],
  legalComments: "none",
  write: false,
  logLevel: "warning",
});
const app = result.outputFiles[0].contents;
const style = await readFile(new URL("src/style.css", here));
const page = (await readFile(new URL("src/index.html", here), "utf8"))
  .replace("%APP_SRI%", sri(app))
  .replace("%STYLE_SRI%", sri(style));
await writeFile(new URL("app.js", dist), app);
await writeFile(new URL("style.css", dist), style);
await writeFile(new URL("index.html", dist), page);
console.log(`web: dist/app.js ${app.length} bytes, style.css ${style.length}, index.html ${page.length}`);
