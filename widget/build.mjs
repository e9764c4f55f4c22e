// Bundles src/ into sidechat/static/widget.js (deterministic: same source, same bytes).
//   node build.mjs           build, and fail if it is over the size budget
//   node build.mjs --check   rebuild in memory and compare with the committed file
import { build } from "esbuild";
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { gzipSync } from "node:zlib";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "sidechat", "static", "widget.js");
const pkg = JSON.parse(readFileSync(join(here, "package.json"), "utf8"));
const BUDGET = 25_000; // bytes, gzipped, dependencies included

const result = await build({
  entryPoints: [join(here, "src", "index.ts")],
  bundle: true,
  minify: true,
  format: "iife",
  target: ["chrome109", "firefox115", "safari16.4"],
  legalComments: "none",
  charset: "utf8",
  write: false,
  define: { __VERSION__: JSON.stringify(pkg.version) },
  banner: { js: `/*! sidechat widget ${pkg.version} | Apache-2.0 | includes DOMPurify (Apache-2.0/MPL-2.0) */` },
  logLevel: "warning",
});
const code = result.outputFiles[0].contents;
const gz = gzipSync(code, { level: 9 }).length;
const where = relative(process.cwd(), out);

if (process.argv.includes("--check")) {
  let committed;
  try {
    committed = readFileSync(out);
  } catch {
    console.error(`check-build: ${where} is missing; run \`npm run build\` in widget/ and commit it.`);
    process.exit(1);
  }
  if (!committed.equals(Buffer.from(code))) {
    console.error(`check-build: ${where} is stale: it does not match widget/src. Run \`npm ci && npm run build\` in widget/ and commit the result.`);
    process.exit(1);
  }
  console.log(`check-build: ${where} matches the source (${code.length} bytes, ${gz} gzipped).`);
} else {
  await writeFile(out, code);
  console.log(`wrote ${where}: ${code.length} bytes, ${gz} bytes gzipped (budget ${BUDGET}).`);
}
if (gz > BUDGET) {
  console.error(`widget.js is ${gz} bytes gzipped, over the ${BUDGET}-byte budget.`);
  process.exit(1);
}
