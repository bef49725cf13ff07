/** tessera.v1.AuditService: the audit trail, filtered and paged, and a subject's current risk. */
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
} from "../../gen/tessera/v1/audit_pb.js";
import {
  AUDIT_SEVERITIES,
  AUDIT_TYPE_NAMES,
  isAuditId,
  type AuditQuery,
  type AuditSeverity as DomainSeverity,
  type AuditType,
  type StoredAuditEvent,
} from "../domain/audit.js";
import type { Audit } from "../domain/audit-trail.js";
import { digest } from "../domain/ids.js";
import { invalidArgument } from "./errors.js";
import * as v from "./validate.js";

export const PAGE_SIZE = { default: 50, max: 500 } as const;

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
    async listAuditEvents(req) {
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
        audit.list(query),
        filter.subject ? audit.risk(filter.subject) : Promise.resolve(undefined),
      ]);
      return create(ListAuditEventsResponseSchema, {
        events: page.events.map(auditEvent),
        nextPageToken: page.next === null ? "" : pageToken(page.next, fingerprint),
        ...(risk
          ? {
              risk: create(RiskAssessmentSchema, {
                score: risk.score,
                distinctIps: risk.distinctIps,
                distinctDevices: risk.distinctDevices,
                refreshes: risk.refreshes,
                reuseDetections: risk.reuses,
                revokedPresented: risk.revokedPresented,
              }),
            }
          : {}),
      });
    },
  };
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
