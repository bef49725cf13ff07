/**
 * docs/configuration.md's table, generated from the declarations in config.ts (scripts/config-docs.mjs writes it
 * between the two markers below; `npm test` fails when docs/configuration.md differs from what this produces).
 */
import { VARIABLES } from "./config.js";
import { variablesOf, type Variable } from "./variable.js";

const TABLE_START = "<!-- config-table: generated from src/config/config.ts by `npm run docs:config`; edit there -->";
const TABLE_END = "<!-- /config-table -->";

/** The Markdown table: variable, default, meaning; one row per variable, in declaration order. */
export function configTable(): string {
  const rows = variablesOf(VARIABLES).map((v) => `| \`${v.name}\` | ${shownDefault(v)} | ${v.doc}${shownRange(v)} |`);
  return ["| variable | default | meaning |", "| --- | --- | --- |", ...rows].join("\n");
}

/** The document with its table replaced by the generated one. Throws if the markers are missing. */
export function withConfigTable(readme: string): string {
  const start = readme.indexOf(TABLE_START);
  const end = readme.indexOf(TABLE_END);
  if (start < 0 || end < start) throw new Error(`docs/configuration.md needs the markers ${TABLE_START} and ${TABLE_END}`);
  return `${readme.slice(0, start)}${TABLE_START}\n\n${configTable()}\n\n${readme.slice(end)}`;
}

function shownDefault(v: Variable<unknown>): string {
  if (v.default === undefined) return "unset";
  return `\`${v.default}\`${v.note === undefined ? "" : ` (${v.note})`}`;
}

/** The parser's bounds, after the doc: " Range: 1 to 100." (from the parser itself, so they cannot drift). */
function shownRange(v: Variable<unknown>): string {
  return v.range === undefined ? "" : ` Range: ${v.range.text}.`;
}
