/**
 * tessera.v1.AuditService: the audit trail, filtered and paged, and a subject's current risk. A caller with `subjects`
 * may filter only by one of its subjects (another is PERMISSION_DENIED), and without a subject filter sees only the
 * events of its subjects (events naming no subject included out): see scopedList.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  AuditEventSchema,
  AuditEventType,
  AuditService,
  AuditSeverity,
  ListAuditEventsResponseSchema,
  RiskAssessmentSchema,
  type AuditEvent as AuditEventMsg,
  type RiskAssessment as RiskAssessmentMsg,
} from "../../gen/tessera/v1/audit_pb.js";
import {
  AUDIT_SCAN_LIMIT,
  AUDIT_SEVERITIES,
  AUDIT_TYPE_NAMES,
  isAuditId,
  type AuditPage,
  type AuditQuery,
  type AuditSeverity as DomainSeverity,
  type AuditType,
  type RiskAssessment,
  type StoredAuditEvent,
} from "../domain/audit.js";
import type { Audit } from "../domain/audit-trail.js";
import { digest } from "../domain/ids.js";
import type { SubjectScope } from "../config/callers.js";
import { requireSubject, scopeOf } from "./auth.js";
import { invalidArgument } from "./errors.js";
import * as v from "./validate.js";

export const PAGE_SIZE = { default: 50, max: 500 } as const;
/**
 * A scoped caller's page without a subject filter: at most this many reads of the trail (each examining at most
 * AUDIT_SCAN_LIMIT stored events), holding at most AUDIT_SCAN_LIMIT candidate events in all.
 */
export const SCOPED_READS = 4;

/** Domain type <-> enum, by name: token_issued <-> AUDIT_EVENT_TYPE_TOKEN_ISSUED. */
const TYPE_TO_ENUM = new Map<AuditType, AuditEventType>(
  AUDIT_TYPE_NAMES.map((t) => [t, AuditEventType[t.toUpperCase() as keyof typeof AuditEventType]]),
);
const ENUM_TO_TYPE = new Map([...TYPE_TO_ENUM].map(([t, e]) => [e, t]));
const SEVERITY_TO_ENUM = new Map<DomainSeverity, AuditSeverity>(
  AUDIT_SEVERITIES.map((s) => [s, AuditSeverity[s.toUpperCase() as keyof typeof AuditSeverity]]),
);
const ENUM_TO_SEVERITY = new Map([...SEVERITY_TO_ENUM].map(([s, e]) => [e, s]));

export function auditService({ audit }: { audit: Audit }): ServiceImpl<typeof AuditService> {
  return {
    async listAuditEvents(req, ctx) {
      const filter = {
        subject: req.subject === "" ? "" : v.subject("subject", req.subject),
        sessionId: req.sessionId === "" ? "" : v.sessionId("session_id", req.sessionId),
        types: req.types.map((t, i) => {
          const type = ENUM_TO_TYPE.get(t);
          if (type === undefined) throw invalidArgument(`types[${i}]`, "is not an audit event type");
          return type;
        }),
        minSeverity: severityFilter(req.minSeverity),
        from: time("start_time", req.startTime),
        to: time("end_time", req.endTime),
      };
      if (filter.from !== undefined && filter.to !== undefined && filter.from > filter.to) {
        throw invalidArgument("end_time", "is before start_time");
      }
      if (req.pageSize < 0) throw invalidArgument("page_size", "must not be negative");
      if (filter.subject) requireSubject(ctx, filter.subject);
      // With a subject filter the store's own filter is the scope; without one, a scoped caller's page is filtered.
      const scope = filter.subject ? undefined : scopeOf(ctx);
      const limit = req.pageSize === 0 ? PAGE_SIZE.default : Math.min(req.pageSize, PAGE_SIZE.max);
      const fingerprint = filterDigest(filter);
      const cursor = req.pageToken === "" ? null : readPageToken(req.pageToken, fingerprint);
      const query: AuditQuery = {
        ...(filter.subject ? { subject: filter.subject } : {}),
        ...(filter.sessionId ? { sessionId: filter.sessionId } : {}),
        types: filter.types,
        ...(filter.minSeverity ? { minSeverity: filter.minSeverity } : {}),
        ...(filter.from !== undefined ? { from: filter.from } : {}),
        ...(filter.to !== undefined ? { to: filter.to } : {}),
        cursor,
        limit,
      };
      const [page, risk] = await Promise.all([
        scope ? scopedList(audit, query, scope) : audit.list(query),
        filter.subject ? audit.risk(filter.subject) : Promise.resolve(undefined),
      ]);
      return create(ListAuditEventsResponseSchema, {
        events: page.events.map(auditEvent),
        nextPageToken: page.next === null ? "" : pageToken(page.next, fingerprint),
        ...(risk ? { risk: riskAssessment(risk) } : {}),
      });
    },
  };
}

/**
 * A page of `query` holding only events of the scope's subjects, newest first, continuing exactly where the last page
 * stopped. The store is read in growing steps (the page size, then four times more each read) until the page is full,
 * the trail has nothing older that can match, SCOPED_READS reads were made, or AUDIT_SCAN_LIMIT candidates were read:
 * then the page may be short, with a cursor to follow, as with any selective filter. The cursor is the id of the last
 * event returned when the page filled up in the middle of a read (store cursors are exclusive: the next page starts
 * just below it), else the store's own cursor of the last read.
 */
export async function scopedList(audit: Pick<Audit, "list">, query: AuditQuery, scope: SubjectScope): Promise<AuditPage> {
  const events: StoredAuditEvent[] = [];
  let cursor = query.cursor ?? null;
  let budget = AUDIT_SCAN_LIMIT;
  let ask = Math.min(query.limit, budget);
  for (let read = 1; ; read++) {
    const page = await audit.list({ ...query, cursor, limit: ask });
    budget -= ask;
    for (const [i, e] of page.events.entries()) {
      if (!scope.allows(e.subject)) continue;
      events.push(e);
      if (events.length >= query.limit) return { events, next: i === page.events.length - 1 ? page.next : e.id };
    }
    if (page.next === null || read >= SCOPED_READS || budget <= 0) return { events, next: page.next };
    cursor = page.next;
    ask = Math.min(ask * 4, budget);
  }
}

/** A subject's risk assessment as the API answers it (ListAuditEvents, StatsService.GetSubjectActivity). */
export function riskAssessment(risk: RiskAssessment): RiskAssessmentMsg {
  return create(RiskAssessmentSchema, {
    score: risk.score,
    distinctIps: risk.distinctIps,
    distinctDevices: risk.distinctDevices,
    refreshes: risk.refreshes,
    reuseDetections: risk.reuses,
    revokedPresented: risk.revokedPresented,
  });
}

export function auditEvent(e: StoredAuditEvent): AuditEventMsg {
  return create(AuditEventSchema, {
    id: e.id,
    type: TYPE_TO_ENUM.get(e.type) ?? AuditEventType.UNSPECIFIED,
    severity: SEVERITY_TO_ENUM.get(e.severity) ?? AuditSeverity.UNSPECIFIED,
    time: timestampFromMs(e.at),
    caller: e.caller,
    subject: e.subject,
    sessionId: e.sessionId,
    ip: e.ip,
    userAgent: e.userAgent,
    deviceId: e.deviceId,
    requestId: e.requestId,
    detail: e.detail,
  });
}

function severityFilter(s: AuditSeverity): DomainSeverity | undefined {
  if (s === AuditSeverity.UNSPECIFIED) return undefined;
  const severity = ENUM_TO_SEVERITY.get(s);
  if (severity === undefined) throw invalidArgument("min_severity", "is not an audit severity");
  return severity;
}

function time(field: string, t: Timestamp | undefined): number | undefined {
  if (t === undefined) return undefined;
  const ms = timestampMs(t);
  if (!Number.isSafeInteger(ms) || ms < 0) throw invalidArgument(field, "is out of range");
  return ms;
}

/**
 * Page tokens are opaque to clients: base64url of the store's cursor and a digest of the filters, so a token is only
 * accepted with the filters that produced it.
 */
function filterDigest(filter: object): string {
  return digest(JSON.stringify(filter)).slice(0, 16);
}

function pageToken(cursor: string, fingerprint: string): string {
  return Buffer.from(`${cursor}.${fingerprint}`, "utf8").toString("base64url");
}

function readPageToken(token: string, fingerprint: string): string {
  const text = token.length <= 128 ? Buffer.from(token, "base64url").toString("utf8") : "";
  const [cursor = "", made = ""] = text.split(".");
  if (!isAuditId(cursor) || !/^[A-Za-z0-9_-]{16}$/.test(made)) {
    throw invalidArgument("page_token", "is not a page token of this service");
  }
  if (made !== fingerprint) throw invalidArgument("page_token", "was made for other filters");
  return cursor;
}
