/**
 * Where the audit trail meets the log and the metrics: every event is one log line (written synchronously, before the
 * event is buffered for the store), at a level that follows its severity; drops and store failures are counted and
 * said in the log, at most once every few seconds so an outage does not flood it.
 */
import type { AuditEvent, AuditSeverity } from "../domain/audit.js";
import type { AuditTrailDeps } from "../domain/audit-trail.js";
import type { Logger } from "./logger.js";
import type { Metrics } from "./metrics.js";

const LEVEL: Record<AuditSeverity, "info" | "warn" | "error"> = {
  info: "info",
  notice: "info",
  warning: "warn",
  critical: "error",
};

const QUIET_MS = 10_000;

export function auditSinks(logger: Logger, metrics: Metrics): Required<Pick<AuditTrailDeps, "log" | "onDropped" | "onError">> {
  let droppedSaid = -Infinity;
  let errorSaid = -Infinity;
  return {
    log(event: AuditEvent) {
      metrics.auditEvents.labels({ type: event.type, severity: event.severity }).inc();
      logger[LEVEL[event.severity]]({ audit: event }, `audit ${event.type}`);
    },
    onDropped(total: number, event: AuditEvent) {
      metrics.auditDropped.inc();
      if (Date.now() - droppedSaid < QUIET_MS) return;
      droppedSaid = Date.now();
      logger.warn(
        { auditDropped: total, type: event.type },
        "audit buffer full: events are dropped from the stored audit trail (their log lines are kept)",
      );
    },
    onError(err: unknown, what: "flush" | "risk") {
      if (Date.now() - errorSaid < QUIET_MS) return;
      errorSaid = Date.now();
      logger.warn({ err }, what === "flush" ? "audit events not stored yet: retrying" : "risk check failed");
    },
  };
}
