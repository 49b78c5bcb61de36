// Bundles src/ into ../messenger/web/ (index.html, app.js, style.css, sw.js), where the
// server serves it. index.html names app.js and style.css with a content hash in the
// query string, so a new build is never hidden by a cached old one. sw.js, the service
// worker, is its own bundle: the server serves it at /sw.js (a worker's scope can be at
// most its own directory, and notifications need scope /); browsers compare it byte for
// byte to update, so it needs no hash.
import { createHash } from "node:crypto";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "messenger", "web");
const watch = process.argv.includes("--watch");

const options = {
  entryPoints: [join(here, "src", "main.js")],
  bundle: true,
  minify: !watch,
  sourcemap: "linked",
  format: "iife",
  target: ["es2020"],
  outfile: join(out, "app.js"),
  legalComments: "linked",
  logLevel: "info",
};

const worker = {
  entryPoints: [join(here, "src", "sw.js")],
  bundle: true,
  minify: false, // small, and read where it runs (no source map at the site root)
  format: "iife",
  target: ["es2020"],
  outfile: join(out, "sw.js"),
  logLevel: "info",
};

const hash = (text) => createHash("sha256").update(text).digest("hex").slice(0, 12);

async function writePage() {
  const [script, style, page] = await Promise.all([
    readFile(join(out, "app.js"), "utf8"),
    readFile(join(here, "src", "style.css"), "utf8"),
    readFile(join(here, "src", "index.html"), "utf8"),
  ]);
  await writeFile(join(out, "style.css"), style);
  await writeFile(
    join(out, "index.html"),
    page.replace("{{APP_VERSION}}", hash(script)).replace("{{STYLE_VERSION}}", hash(style)),
  );
}

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
if (watch) {
  const context = await esbuild.context({
    ...options,
    plugins: [{ name: "page", setup: (build) => build.onEnd(() => writePage()) }],
  });
  await context.watch();
  await (await esbuild.context(worker)).watch();
} else {
  await Promise.all([esbuild.build(options), esbuild.build(worker)]);
  await writePage();
}
