/** `tessera audit tail`: AuditService.ListAuditEvents, newest events last, and with --follow new ones as they come. */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import {
  AuditEventSchema,
  AuditEventTypeSchema,
  AuditSeverity,
  AuditSeveritySchema,
  type AuditEvent,
  type AuditEventType,
  type ListAuditEventsRequestSchema,
} from "../../gen/tessera/v1/audit_pb.js";
import { sleep } from "../domain/clock.js";
import { UsageError, type Command, type Context } from "./context.js";
import { enumName, iso, jsonLine, safe } from "./format.js";

type ListRequest = MessageInitShape<typeof ListAuditEventsRequestSchema>;

/** The largest page the server gives (larger sizes are treated as this). */
const MAX_PAGE = 500;
/** At most this many pages per poll of --follow; more new events than that in one interval are cut, with a warning. */
const MAX_PAGES_PER_POLL = 10;

/** An enum value from what a person types: `token_issued`, `TOKEN-ISSUED`, `AUDIT_EVENT_TYPE_TOKEN_ISSUED`. */
function enumValue(schema: typeof AuditEventTypeSchema | typeof AuditSeveritySchema, text: string): number | undefined {
  const name = text.trim().toUpperCase().replace(/-/g, "_");
  const v = schema.values.find((e) => e.number !== 0 && (e.localName === name || e.name === name));
  return v?.number;
}

const names = (schema: typeof AuditEventTypeSchema | typeof AuditSeveritySchema) =>
  schema.values.filter((e) => e.number !== 0).map((e) => e.localName.toLowerCase());

/** --since: a duration back from now (`15m`, `2h`, `7d`) or an ISO 8601 time. */
function since(ctx: Context): number | undefined {
  const text = ctx.str("since");
  if (text === undefined) return undefined;
  if (/^\d+(ms|s|m|h|d)/.test(text.trim())) {
    const ms = ctx.duration("since")!;
    return Date.now() - ms;
  }
  const at = /^\d{4}-\d{2}-\d{2}/.test(text.trim()) ? Date.parse(text) : NaN;
  if (Number.isNaN(at) || at < 0) {
    throw new UsageError(`--since: "${text}" is neither a duration (15m, 2h, 7d) nor an ISO time (2026-11-30T14:00:00Z)`, ctx.command.name);
  }
  return at;
}

/** Audit ids (`<ms>-<seq>`): greater is newer. Compared as numbers when both have that form, else by length and text. */
export function compareIds(a: string, b: string): number {
  const ma = /^(\d+)-(\d+)$/.exec(a);
  const mb = /^(\d+)-(\d+)$/.exec(b);
  if (ma && mb) {
    const d = BigInt(ma[1]!) - BigInt(mb[1]!) || BigInt(ma[2]!) - BigInt(mb[2]!);
    return d < 0n ? -1 : d > 0n ? 1 : 0;
  }
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}

/** A value of an event line: as is, or JSON-quoted when it holds spaces, quotes, `=` or control characters. */
function quote(v: string): string {
  return /[\s"=\\\u0000-\u001f\u007f-\u009f]/.test(v) ? safe(JSON.stringify(v)) : v;
}

function eventLine(e: AuditEvent): string {
  const facts: string[] = [];
  const add = (k: string, v: string) => {
    if (v !== "") facts.push(`${quote(k)}=${quote(v)}`);
  };
  add("subject", e.subject);
  add("session", e.sessionId);
  add("caller", e.caller);
  add("ip", e.ip);
  add("device", e.deviceId);
  add("ua", e.userAgent);
  for (const [k, v] of Object.entries(e.detail).sort(([a], [b]) => (a < b ? -1 : 1))) add(k, v);
  add("request", e.requestId);
  const severity = enumName(AuditSeveritySchema, e.severity).toUpperCase().padEnd(8);
  const type = enumName(AuditEventTypeSchema, e.type).padEnd(24);
  return `${`${iso(e.time)}  ${severity}  ${type}  ${facts.join(" ")}`.trimEnd()}\n`;
}

const tail: Command = {
  name: "audit tail",
  args: "",
  summary: "the latest audit events, oldest first; with --follow, then new ones as they happen",
  arity: [0, 0],
  options: {
    subject: { type: "string", value: "SUBJECT", doc: "only events of SUBJECT" },
    session: { type: "string", value: "ID", doc: "only events of session ID" },
    type: { type: "string", multiple: true, value: "TYPE", doc: "only events of TYPE (repeatable, or comma-separated)" },
    "min-severity": { type: "string", value: "LEVEL", doc: "only events of LEVEL or above: info, notice, warning, critical" },
    since: { type: "string", value: "WHEN", doc: "only events since WHEN: a duration back (15m, 2h, 7d) or an ISO time" },
    limit: { type: "string", value: "N", doc: `at most N events before following (default 20, at most ${MAX_PAGE})` },
    follow: { type: "boolean", short: "f", doc: "then poll for new events until interrupted (Ctrl-C)" },
    interval: { type: "string", value: "DURATION", doc: "with --follow, poll every DURATION (default 2s)" },
  },
  more: `TYPE: ${names(AuditEventTypeSchema).join(", ")}.\nWith --json, one event per line.`,
  async run(ctx) {
    const types = ctx
      .list("type")
      .flatMap((t) => t.split(","))
      .filter((t) => t.trim() !== "")
      .map((t) => {
        const v = enumValue(AuditEventTypeSchema, t);
        if (v === undefined) throw new UsageError(`--type: "${t}" is not an audit event type (${names(AuditEventTypeSchema).join(", ")})`, ctx.command.name);
        return v as AuditEventType;
      });
    const severityText = ctx.str("min-severity");
    const minSeverity = severityText === undefined ? AuditSeverity.UNSPECIFIED : enumValue(AuditSeveritySchema, severityText);
    if (minSeverity === undefined) throw new UsageError(`--min-severity: "${severityText}" is not one of ${names(AuditSeveritySchema).join(", ")}`, ctx.command.name);
    const limitText = ctx.str("limit");
    const limit = limitText === undefined ? 20 : /^\d+$/.test(limitText) ? Number(limitText) : NaN;
    if (!(limit >= 1 && limit <= MAX_PAGE)) throw new UsageError(`--limit: "${limitText}" is not a number from 1 to ${MAX_PAGE}`, ctx.command.name);
    const interval = ctx.duration("interval") ?? 2_000;
    if (interval < 100) throw new UsageError("--interval: at least 100ms", ctx.command.name);
    if (ctx.str("interval") !== undefined && !ctx.bool("follow")) throw new UsageError("--interval goes with --follow", ctx.command.name);
    const from = since(ctx);
    const filters: ListRequest = {
      subject: ctx.str("subject") ?? "",
      sessionId: ctx.str("session") ?? "",
      types,
      minSeverity: minSeverity as AuditSeverity,
    };
    const audit = ctx.client().audit;
    const print = (events: readonly AuditEvent[]) => {
      for (const e of events) ctx.out(ctx.json ? jsonLine(AuditEventSchema, e) : eventLine(e));
    };

    const first = await audit.listAuditEvents(
      { ...filters, ...(from !== undefined ? { startTime: timestampFromMs(from) } : {}), pageSize: limit },
      { signal: ctx.signal },
    );
    print([...first.events].reverse());
    if (!ctx.bool("follow")) return 0;

    // Following: each poll asks for the events since the newest one seen (start_time is inclusive; the ids tell
    // which are new), newest first, page after page until it reaches one already printed.
    let newest = first.events[0];
    while (!ctx.signal.aborted) {
      await sleep(interval, ctx.signal);
      if (ctx.signal.aborted) break;
      const start = newest?.time ? timestampMs(newest.time) : from;
      const request: ListRequest = { ...filters, ...(start !== undefined ? { startTime: timestampFromMs(start) } : {}), pageSize: MAX_PAGE };
      const fresh: AuditEvent[] = [];
      let pageToken = "";
      let pages = 0;
      for (;;) {
        let page;
        try {
          page = await audit.listAuditEvents({ ...request, pageToken }, { signal: ctx.signal });
        } catch (err) {
          if (ctx.signal.aborted) return 0;
          throw err;
        }
        const unseen = newest === undefined ? page.events : page.events.filter((e) => compareIds(e.id, newest!.id) > 0);
        fresh.push(...unseen);
        pages += 1;
        if (unseen.length < page.events.length || page.nextPageToken === "") break;
        if (pages >= MAX_PAGES_PER_POLL) {
          ctx.io.err(`tessera: more than ${pages * MAX_PAGE} new events since the last poll; older ones skipped\n`);
          break;
        }
        pageToken = page.nextPageToken;
      }
      print([...fresh].reverse());
      if (fresh[0] !== undefined) newest = fresh[0];
    }
    return 0;
  },
};

export const AUDIT_COMMANDS: readonly Command[] = [tail];
