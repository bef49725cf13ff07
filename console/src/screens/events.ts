/** The audit events table and the risk figures, shared by the subject and audit screens. */
import { AuditEventType, AuditSeverity, type AuditEvent, type RiskAssessment } from "../../../gen/tessera/v1/audit_pb.js";
import { h, table } from "../dom.js";
import { enumName, shortId, time, utc } from "../format.js";

export function eventsTable(caption: string, events: AuditEvent[]): HTMLElement {
  if (events.length === 0) return h("p", { class: "muted" }, "No events.");
  return table(
    caption,
    ["Time (UTC)", "Event", "Severity", "Subject", "Session", "Caller", "IP", "Device", "Details"],
    events.map((e) => [
      time(e.time),
      enumName(AuditEventType, e.type),
      h("span", { class: `severity sev-${AuditSeverity[e.severity]?.toLowerCase() ?? "unspecified"}` }, enumName(AuditSeverity, e.severity)),
      e.subject || "-",
      e.sessionId ? shortId(e.sessionId) : "-",
      e.caller || "-",
      e.ip || "-",
      e.deviceId || "-",
      details(e.detail),
    ]),
    { class: "events" },
  );
}

function details(detail: Record<string, string>): HTMLElement | string {
  const entries = Object.entries(detail).sort(([a], [b]) => a.localeCompare(b));
  if (entries.length === 0) return "-";
  return h("ul", { class: "detail" }, entries.map(([k, v]) => h("li", null, h("span", { class: "k" }, k), " ", value(k, v))));
}

/** Instants (`expires_at`: epoch milliseconds) as UTC times; everything else as it is. */
function value(key: string, v: string): string {
  const ms = Number(v);
  return key.endsWith("_at") && /^\d{12,14}$/.test(v) && Number.isSafeInteger(ms) ? utc(ms) : v;
}

export function riskFigures(risk: RiskAssessment | undefined): HTMLElement {
  const r = risk;
  const item = (key: string, label: string, value: number) =>
    h("div", { class: "figure", "data-figure": key }, h("dt", null, label), h("dd", null, String(value)));
  return h(
    "dl",
    { class: "figures small" },
    item("risk-score", "Risk score (0-100)", r?.score ?? 0),
    item("risk-ips", "Distinct IPs", r?.distinctIps ?? 0),
    item("risk-devices", "Distinct devices", r?.distinctDevices ?? 0),
    item("risk-refreshes", "Refreshes", r?.refreshes ?? 0),
    item("risk-reuse", "Reuse detections", r?.reuseDetections ?? 0),
    item("risk-revoked", "Revoked tokens presented", r?.revokedPresented ?? 0),
  );
}
