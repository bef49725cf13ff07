// Fails when gen/ differs from what `buf generate` produces from proto/ now.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";

const root = process.cwd();
const out = mkdtempSync(join(tmpdir(), "tessera-gen-"));
const template = readFileSync(join(root, "buf.gen.yaml"), "utf8").replace(/out: gen/g, `out: ${out}`);
const templateFile = join(out, "buf.gen.yaml");
writeFileSync(templateFile, template);

function list(dir, base = dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? list(p, base) : [relative(base, p)];
  });
}

try {
  execFileSync("buf", ["generate", "--template", templateFile], { cwd: root, stdio: "inherit" });
  const want = list(out).filter((f) => f !== "buf.gen.yaml").sort();
  const have = list(join(root, "gen")).sort();
  const stale = [...new Set([...want, ...have])].filter((f) => {
    try {
      return readFileSync(join(out, f), "utf8") !== readFileSync(join(root, "gen", f), "utf8");
    } catch {
      return true;
    }
  });
  if (stale.length > 0) {
    console.error(`gen/ is stale (run \`npm run generate\` and commit): ${stale.join(", ")}`);
    process.exit(1);
  }
  console.log(`gen/ is up to date (${want.length} files)`);
} finally {
  rmSync(out, { recursive: true, force: true });
}
