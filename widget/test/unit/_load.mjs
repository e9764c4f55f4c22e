// Bundles a TypeScript module of src/ with esbuild and imports it (Node 20 cannot import TS).
import { build } from "esbuild";
import { fileURLToPath } from "node:url";

export async function load(name) {
  const entry = fileURLToPath(new URL(`../../src/${name}.ts`, import.meta.url));
  const out = await build({ entryPoints: [entry], bundle: true, format: "esm", write: false, logLevel: "error" });
  const code = out.outputFiles[0].text;
  return import(`data:text/javascript;base64,${Buffer.from(code).toString("base64")}`);
}
