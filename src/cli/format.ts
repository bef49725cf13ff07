/**
 * Output of the command line: human (short, aligned, times as ISO 8601 in UTC) or JSON (one document per result, the
 * protobuf JSON form of the response with every field present, zero values included, so scripts never meet a missing
 * key).
 */
import { toJson, type DescEnum, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";

/** One JSON document on one line. */
export function jsonLine<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): string {
  return `${JSON.stringify(toJson(schema, message, { alwaysEmitImplicit: true }))}\n`;
}

/** A timestamp as ISO 8601 (UTC, milliseconds); "-" when unset. */
export function iso(t: Timestamp | undefined): string {
  return t === undefined ? "-" : timestampDate(t).toISOString();
}

/**
 * An enum value by its short name in lower case: KeyState.CURRENT -> "current", AuditEventType.TOKEN_ISSUED ->
 * "token_issued" (the prefix of the protobuf name dropped); the number for a value this build does not know.
 */
export function enumName(desc: DescEnum, value: number): string {
  const v = desc.values.find((e) => e.number === value);
  return v === undefined ? String(value) : v.localName.toLowerCase();
}

/** Label-value lines, labels padded to one width; rows whose value is undefined are left out. */
export function fields(rows: ReadonlyArray<readonly [string, string | undefined]>): string {
  const shown = rows.filter((r): r is readonly [string, string] => r[1] !== undefined);
  const width = Math.max(0, ...shown.map(([label]) => label.length));
  return shown.map(([label, value]) => `${label.padEnd(width)}  ${value}\n`).join("");
}

/**
 * A table: a header row and aligned columns separated by two spaces. Empty cells print as "-"; with dropEmpty, a column
 * that is empty in every row is left out.
 */
export function table(headers: readonly string[], rows: ReadonlyArray<readonly string[]>, dropEmpty = false): string {
  const cells = rows.map((r) => headers.map((_, i) => (r[i] === undefined || r[i] === "" ? "-" : r[i]!)));
  const keep = headers.map((_, i) => !dropEmpty || cells.some((r) => r[i] !== "-"));
  const cols = headers.map((_, i) => i).filter((i) => keep[i]);
  const widths = cols.map((i) => Math.max(headers[i]!.length, ...cells.map((r) => r[i]!.length)));
  const line = (r: readonly string[]) =>
    cols
      .map((i, j) => (j === cols.length - 1 ? r[i]! : r[i]!.padEnd(widths[j]!)))
      .join("  ")
      .trimEnd();
  return [headers, ...cells].map((r) => `${line(r)}\n`).join("");
}

/** Text with control characters (a terminal's escapes among them) shown as \\uXXXX, for values a caller chose. */
export function safe(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** Words joined into lines of at most `width` characters (a longer word stands alone); lines after the first indented by `indent` spaces. */
export function wrap(text: string, width: number, indent = 0): string {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === "" ? word : `${line} ${word}`;
    }
  }
  lines.push(line);
  return lines.join(`\n${" ".repeat(indent)}`);
}
