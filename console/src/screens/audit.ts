/**
 * Audit trail: AuditService.ListAuditEvents (audit.read), newest first, with every filter the RPC takes (subject,
 * session, types, minimum severity, time range) and paging to older events.
 */
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { AuditEventType, AuditSeverity, type ListAuditEventsRequestSchema } from "../../../gen/tessera/v1/audit_pb.js";
import { api } from "../api.js";
import { field, fill, h } from "../dom.js";
import { enumName } from "../format.js";
import { attempt, loading } from "../ui.js";
import { eventsTable, riskFigures } from "./events.js";

type Filters = MessageInitShape<typeof ListAuditEventsRequestSchema>;

const TYPES = Object.values(AuditEventType).filter((v): v is AuditEventType => typeof v === "number" && v !== AuditEventType.UNSPECIFIED);
const SEVERITIES = Object.values(AuditSeverity).filter((v): v is AuditSeverity => typeof v === "number");

export async function auditScreen(root: HTMLElement): Promise<void> {
  const subject = h("input", { type: "text", id: "audit-subject", maxlength: 256, autocomplete: "off", spellcheck: "false" });
  const session = h("input", { type: "text", id: "audit-session", maxlength: 64, autocomplete: "off", spellcheck: "false" });
  const severity = h(
    "select",
    { id: "audit-severity" },
    SEVERITIES.map((s) => h("option", { value: String(s) }, s === AuditSeverity.UNSPECIFIED ? "any" : enumName(AuditSeverity, s))),
  );
  const from = h("input", { type: "datetime-local", id: "audit-from", step: 1 });
  const to = h("input", { type: "datetime-local", id: "audit-to", step: 1 });
  const pageSize = h("select", { id: "audit-page-size" }, ["25", "50", "100", "200"].map((n) => h("option", { value: n, selected: n === "50" }, n)));
  const types = TYPES.map((t) => {
    const id = `audit-type-${t}`;
    return { t, box: h("input", { type: "checkbox", id, value: String(t) }), id };
  });
  const form = h(
    "form",
    { class: "filters", "aria-label": "Audit filters" },
    h(
      "div",
      { class: "filter-row" },
      field("Subject", subject),
      field("Session id", session),
      field("Minimum severity", severity),
      field("From (UTC)", from),
      field("To (UTC)", to),
      field("Page size", pageSize),
    ),
    h(
      "fieldset",
      { class: "types" },
      h("legend", null, "Event types (none checked: every type)"),
      types.map(({ box, id, t }) => h("div", { class: "check" }, box, h("label", { for: id }, enumName(AuditEventType, t)))),
    ),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Search"), h("button", { type: "reset", class: "secondary" }, "Clear filters")),
  );
  const result = h("div", { class: "result", id: "audit-result" });
  fill(root, h("h1", null, "Audit trail"), form, result);

  const utcMs = (value: string): number | undefined => {
    if (value === "") return undefined;
    const ms = Date.parse(`${value.length === 16 ? `${value}:00` : value}Z`);
    return Number.isFinite(ms) ? ms : undefined;
  };
  const filters = (): Filters => {
    const start = utcMs(from.value);
    const end = utcMs(to.value);
    return {
      subject: subject.value.trim(),
      sessionId: session.value.trim(),
      types: types.filter((x) => x.box.checked).map((x) => x.t),
      minSeverity: Number(severity.value) as AuditSeverity,
      ...(start !== undefined && { startTime: timestampFromMs(start) }),
      ...(end !== undefined && { endTime: timestampFromMs(end) }),
      pageSize: Number(pageSize.value),
    };
  };

  const load = async (f: Filters, pageToken = "", pageNumber = 1) => {
    loading(result, "audit events");
    const res = await attempt("tessera.v1.AuditService/ListAuditEvents", result, () => api.audit.listAuditEvents({ ...f, pageToken }));
    if (!res) return;
    const newest = h("button", { type: "button", class: "secondary", disabled: pageNumber === 1 }, "Newest");
    const older = h("button", { type: "button", class: "secondary", id: "audit-older", disabled: res.nextPageToken === "" }, "Older events");
    newest.addEventListener("click", () => void load(f));
    older.addEventListener("click", () => void load(f, res.nextPageToken, pageNumber + 1));
    fill(
      result,
      f.subject && res.risk ? h("section", { class: "panel", "aria-label": "Risk of the subject" }, h("h2", null, "Risk of ", h("code", null, f.subject)), riskFigures(res.risk)) : null,
      h("p", { class: "muted" }, `Page ${pageNumber}: ${res.events.length} event${res.events.length === 1 ? "" : "s"}, newest first.`),
      eventsTable("Audit events, newest first", res.events),
      h("div", { class: "actions" }, newest, older),
    );
  };
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    void load(filters());
  });
  form.addEventListener("reset", () => setTimeout(() => void load(filters()), 0));
  await load(filters());
}

