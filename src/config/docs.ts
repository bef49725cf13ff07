/**
 * docs/configuration.md's table, generated from the declarations in config.ts (scripts/config-docs.mjs writes it
 * between the two markers below; `npm test` fails when docs/configuration.md differs from what this produces).
 */
import { CLI_VARIABLES } from "../cli/variables.js";
import { SIDECAR_VARIABLES } from "../sidecar/config.js";
import { VARIABLES } from "./config.js";
import { variablesOf, type Declarations, type Variable } from "./variable.js";

/** Each generated table: its markers and the declarations it lists. */
const TABLES: ReadonlyArray<{ start: string; end: string; declarations: Declarations }> = [
  {
    start: "<!-- config-table: generated from src/config/config.ts by `npm run docs:config`; edit there -->",
    end: "<!-- /config-table -->",
    declarations: VARIABLES,
  },
  {
    start: "<!-- sidecar-config-table: generated from src/sidecar/config.ts by `npm run docs:config`; edit there -->",
    end: "<!-- /sidecar-config-table -->",
    declarations: SIDECAR_VARIABLES,
  },
  {
    start: "<!-- cli-config-table: generated from src/cli/variables.ts by `npm run docs:config`; edit there -->",
    end: "<!-- /cli-config-table -->",
    declarations: CLI_VARIABLES,
  },
];

/** The Markdown table: variable, default, meaning; one row per variable, in declaration order. */
export function configTable(declarations: Declarations = VARIABLES): string {
  const rows = variablesOf(declarations).map((v) => `| \`${v.name}\` | ${shownDefault(v)} | ${v.doc}${shownRange(v)} |`);
  return ["| variable | default | meaning |", "| --- | --- | --- |", ...rows].join("\n");
}

/** The document with its tables replaced by the generated ones. Throws if a table's markers are missing. */
export function withConfigTable(readme: string): string {
  let doc = readme;
  for (const { start: startMark, end: endMark, declarations } of TABLES) {
    const start = doc.indexOf(startMark);
    const end = doc.indexOf(endMark);
    if (start < 0 || end < start) throw new Error(`docs/configuration.md needs the markers ${startMark} and ${endMark}`);
    doc = `${doc.slice(0, start)}${startMark}\n\n${configTable(declarations)}\n\n${doc.slice(end)}`;
  }
  return doc;
}

function shownDefault(v: Variable<unknown>): string {
  if (v.default === undefined) return "unset";
  return `\`${v.default}\`${v.note === undefined ? "" : ` (${v.note})`}`;
}

/** The parser's bounds, after the doc: " Range: 1 to 100." (from the parser itself, so they cannot drift). */
function shownRange(v: Variable<unknown>): string {
  return v.range === undefined ? "" : ` Range: ${v.range.text}.`;
}
