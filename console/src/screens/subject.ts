/**
 * Subjects: one subject's sessions (SessionService.ListSessions, sessions.read) with "revoke this session" and "log
 * out everywhere" (TokenService.Revoke, revoke), each confirmed first; its risk and recent events
 * (StatsService.GetSubjectActivity, stats.read). Each part shows its own refusal.
 */
import type { Session } from "../../../gen/tessera/v1/session_pb.js";
import { api } from "../api.js";
import { fill, h, table } from "../dom.js";
import { shortId, time } from "../format.js";
import { eventsTable, riskFigures } from "./events.js";
import { attempt, confirmAction, loading, say, statusLine } from "../ui.js";

export async function subjectScreen(root: HTMLElement): Promise<void> {
  const input = h("input", { id: "subject-input", type: "search", required: true, maxlength: 256, autocomplete: "off", spellcheck: "false" });
  const form = h(
    "form",
    { class: "toolbar", role: "search", "aria-label": "Find a subject" },
    h("div", { class: "field inline" }, h("label", { for: "subject-input" }, "Subject"), input),
    h("button", { type: "submit" }, "Find"),
  );
  const result = h("div", { class: "result", id: "subject-result" });
  fill(root, h("h1", null, "Subjects"), h("p", { class: "muted" }, "The exact subject, as Issue was given it."), form, result);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const subject = input.value.trim();
    if (subject) void showSubject(result, subject);
  });
  input.focus();
}

async function showSubject(root: HTMLElement, subject: string): Promise<void> {
  const status = statusLine();
  status.id = "subject-status";
  const sessionsBox = h("div", { id: "subject-sessions" });
  const activityBox = h("div", { id: "subject-activity" });
  const logoutAll = h("button", { type: "button", class: "danger", id: "logout-everywhere" }, "Log out everywhere");
  fill(
    root,
    h("h2", { class: "subject-name" }, "Subject ", h("code", null, subject)),
    status,
    h(
      "section",
      { class: "panel", "aria-labelledby": "h-sessions" },
      h("div", { class: "panel-head" }, h("h3", { id: "h-sessions" }, "Live sessions"), logoutAll),
      sessionsBox,
    ),
    h("section", { class: "panel", "aria-labelledby": "h-activity" }, h("h3", { id: "h-activity" }, "Risk and recent events"), activityBox),
  );

  const loadSessions = async () => {
    loading(sessionsBox, "sessions");
    const res = await attempt("tessera.v1.SessionService/ListSessions", sessionsBox, () => api.sessions.listSessions({ subject }));
    if (res) fill(sessionsBox, sessionsTable(res.sessions, revokeOne));
  };
  const loadActivity = async () => {
    loading(activityBox, "activity");
    const res = await attempt("tessera.v1.StatsService/GetSubjectActivity", activityBox, () => api.stats.getSubjectActivity({ subject, eventLimit: 50 }));
    if (res) fill(activityBox, riskFigures(res.risk), eventsTable(`Recent events of ${subject}`, res.recentEvents));
  };
  // Sessions are read back at once (a revocation is acknowledged once stored); the audit trail is written behind, in
  // batches about 50 ms apart, so the events are read a moment later.
  const afterChange = () => Promise.all([loadSessions(), new Promise((r) => setTimeout(r, 300)).then(loadActivity)]);
  const revokeOne = async (s: Session) => {
    const device = s.client?.deviceId || "an unnamed device";
    const reason = await confirmAction({
      title: "Revoke this session?",
      body: `The session on ${device} (${s.client?.platform || "no platform"}, ${s.client?.ip || "no IP"}) ends now: its refresh token and every access token it issued stop working at once.`,
      confirmLabel: "Revoke session",
      reason: "revoked from the operator console",
    });
    if (reason === undefined) return say(status, "Nothing revoked.");
    const res = await attempt("tessera.v1.TokenService/Revoke", status, () =>
      api.tokens.revoke({ target: { case: "sessionId", value: s.sessionId }, reason }),
    );
    if (res) say(status, `Session on ${device} revoked (${res.sessionsRevoked} session${res.sessionsRevoked === 1 ? "" : "s"} ended).`);
    await afterChange();
  };
  logoutAll.addEventListener("click", async () => {
    const reason = await confirmAction({
      title: `Log ${subject} out everywhere?`,
      body: `Every session of ${subject} ends now, and every token issued to it so far stops working. Logging in again afterwards works at once.`,
      confirmLabel: "Log out everywhere",
      reason: "logged out everywhere from the operator console",
    });
    if (reason === undefined) return say(status, "Nothing revoked.");
    const res = await attempt("tessera.v1.TokenService/Revoke", status, () => api.tokens.revoke({ target: { case: "subject", value: subject }, reason }));
    if (res) say(status, `${subject} logged out everywhere (${res.sessionsRevoked} session${res.sessionsRevoked === 1 ? "" : "s"} ended).`);
    await afterChange();
  });
  await Promise.all([loadSessions(), loadActivity()]);
}

function sessionsTable(sessions: Session[], revoke: (s: Session) => void): HTMLElement {
  if (sessions.length === 0) return h("p", { class: "muted", id: "no-sessions" }, "No live sessions.");
  const t = table(
    "Live sessions, most recently used first",
    ["Device", "Platform", "IP", "User agent", "Created (UTC)", "Last used (UTC)", "Idle expiry (UTC)", "Session", ""],
    sessions.map((s) => [
      s.client?.deviceId || "-",
      s.client?.platform || "-",
      s.client?.ip || "-",
      h("span", { class: "ua" }, s.client?.userAgent || "-"),
      time(s.createdAt),
      time(s.lastUsedAt),
      time(s.idleExpiresAt),
      shortId(s.sessionId),
      h(
        "button",
        { type: "button", class: "danger small", "aria-label": `Revoke the session on ${s.client?.deviceId || "an unnamed device"}`, onclick: () => revoke(s) },
        "Revoke session",
      ),
    ]),
    { class: "sessions" },
  );
  // Rows name their session, for whoever reads the page's structure (and the tests).
  t.tBodies[0]?.querySelectorAll("tr").forEach((tr, i) => tr.setAttribute("data-session-id", sessions[i]?.sessionId ?? ""));
  return t;
}
