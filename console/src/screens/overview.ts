/** Overview: StatsService.GetOverview (stats.read) as figures and charts over a chosen window. */
import { durationMs, timestampMs, type Duration } from "@bufbuild/protobuf/wkt";
import type { GetOverviewResponse, HourlyStats } from "../../../gen/tessera/v1/stats_pb.js";
import { api } from "../api.js";
import { barChart, hourlyChart, type ChartFigure } from "../charts.js";
import { fill, h, table } from "../dom.js";
import { count, duration, ms, time, utc } from "../format.js";
import { attempt, loading } from "../ui.js";

const WINDOWS = [
  ["6", "Last 6 hours"],
  ["24", "Last 24 hours"],
  ["72", "Last 3 days"],
  ["168", "Last 7 days"],
] as const;

export async function overviewScreen(root: HTMLElement): Promise<void> {
  const windowSelect = h("select", { id: "overview-window" }, WINDOWS.map(([v, t]) => h("option", { value: v, selected: v === "24" }, t)));
  const result = h("div", { class: "result", id: "overview-result" });
  const form = h(
    "form",
    { class: "toolbar", "aria-label": "Overview window" },
    h("div", { class: "field inline" }, h("label", { for: "overview-window" }, "Window"), windowSelect),
    h("button", { type: "submit" }, "Refresh"),
  );
  fill(root, h("h1", null, "Overview"), form, result);
  const load = async () => {
    loading(result, "the overview");
    const hours = BigInt(windowSelect.value);
    const o = await attempt("tessera.v1.StatsService/GetOverview", result, () => api.stats.getOverview({ window: { seconds: hours * 3600n } }));
    if (o) render(result, o);
  };
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    void load();
  });
  windowSelect.addEventListener("change", () => void load());
  await load();
}

const msOf = (d: Duration | undefined): number => (d === undefined ? 0 : durationMs(d));

function render(root: HTMLElement, o: GetOverviewResponse): void {
  const live = o.live;
  const totals = o.totals;
  const d = o.sessionDurations;
  const figure = (key: string, label: string, value: string, note?: string) =>
    h("div", { class: "figure", "data-figure": key }, h("dt", null, label), h("dd", null, value), note ? h("dd", { class: "note" }, note) : null);
  const figures = h(
    "dl",
    { class: "figures" },
    figure("live-total", "Live sessions", count(live?.total ?? 0n)),
    figure("live-subjects", "Subjects with a live session", count(live?.subjects ?? 0n)),
    figure("logins", "Logins", count(totals?.logins ?? 0n)),
    figure("refreshes", "Refreshes", count(totals?.refreshes ?? 0n)),
    figure("revocations", "Revocations", count(totals?.revocations ?? 0n)),
    figure("reuse-detections", "Reuse detections", count(totals?.reuseDetections ?? 0n)),
    figure("lockouts", "Lockouts", count(totals?.lockouts ?? 0n)),
    figure("alerts", "Suspicious-activity alerts", count(totals?.suspiciousActivity ?? 0n)),
  );

  const platforms = Object.entries(live?.byPlatform ?? {}).sort((a, b) => Number(b[1] - a[1]) || a[0].localeCompare(b[0]));
  const platformName = (p: string) => (p === "" ? "(none)" : p);
  const hourStarts = o.hours.map((x) => (x.startTime ? timestampMs(x.startTime) : 0));
  const series = (pick: (x: HourlyStats) => bigint | undefined) => o.hours.map((x) => Number(pick(x) ?? 0n));
  const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);

  const charts: ChartFigure[] = [];
  const activity = [
    { label: "Logins", values: series((x) => x.counts?.logins) },
    { label: "Refreshes", values: series((x) => x.counts?.refreshes) },
    { label: "Revocations", values: series((x) => x.counts?.revocations) },
  ];
  const security = [
    { label: "Reuse detections", values: series((x) => x.counts?.reuseDetections) },
    { label: "Lockouts", values: series((x) => x.counts?.lockouts) },
    { label: "Alerts", values: series((x) => x.counts?.suspiciousActivity) },
  ];
  const ended = (pick: (x: HourlyStats) => number) => o.hours.map((x) => ((x.sessionDurations?.count ?? 0n) > 0n ? pick(x) / 1000 : null));
  const durationSeries = [
    { label: "Median", values: ended((x) => msOf(x.sessionDurations?.median)) },
    { label: "95th percentile", values: ended((x) => msOf(x.sessionDurations?.p95)) },
    { label: "Longest", values: ended((x) => msOf(x.sessionDurations?.max)) },
  ];
  const describe = (list: { label: string; values: number[] }[]) => list.map((s) => `${s.label} ${sum(s.values)}`).join(", ");
  const span = `${utc(hourStarts[0] ?? 0)} to ${utc(o.endTime ? timestampMs(o.endTime) : Date.now())}`;

  const platformChart =
    platforms.length > 0
      ? barChart(
          "chart-platforms",
          "Live sessions by platform",
          `Live sessions by platform: ${platforms.map(([p, n]) => `${platformName(p)} ${n}`).join(", ")}`,
          "Live sessions",
          platforms.map(([p]) => platformName(p)),
          platforms.map(([, n]) => Number(n)),
        )
      : undefined;
  if (platformChart) charts.push(platformChart);
  const activityChart = hourlyChart("chart-activity", "Logins, refreshes and revocations per hour (UTC)", `Per hour, ${span}: ${describe(activity)}`, hourStarts, activity);
  const securityChart = hourlyChart("chart-security", "Reuse detections, lockouts and alerts per hour (UTC)", `Per hour, ${span}: ${describe(security)}`, hourStarts, security);
  const durationChart = hourlyChart(
    "chart-durations",
    "Durations of the sessions that ended, per hour (UTC)",
    `Session durations per hour: ${count(d?.count ?? 0n)} sessions ended, median ${duration(d?.median)}, longest ${duration(d?.max)}`,
    hourStarts,
    durationSeries,
    (v) => ms(v * 1000),
  );
  charts.push(activityChart, securityChart, durationChart);

  const platformTable = table(
    "Live sessions by platform",
    ["Platform", "Live sessions"],
    platforms.map(([p, n]) => [platformName(p), count(n)]),
    { class: "compact", id: "platform-table" },
  );
  const durations = h(
    "dl",
    { class: "figures small" },
    h("div", { class: "figure", "data-figure": "ended" }, h("dt", null, "Sessions ended"), h("dd", null, count(d?.count ?? 0n))),
    h("div", { class: "figure", "data-figure": "duration-mean" }, h("dt", null, "Mean"), h("dd", null, duration(d?.mean))),
    h("div", { class: "figure", "data-figure": "duration-median" }, h("dt", null, "Median (approx.)"), h("dd", null, duration(d?.median))),
    h("div", { class: "figure", "data-figure": "duration-p95" }, h("dt", null, "95th percentile (approx.)"), h("dd", null, duration(d?.p95))),
    h("div", { class: "figure", "data-figure": "duration-max" }, h("dt", null, "Longest"), h("dd", null, duration(d?.max))),
  );
  const hourly = h(
    "details",
    { class: "hourly" },
    h("summary", null, "Figures per hour"),
    table(
      "Figures per hour",
      ["Hour (UTC)", "Logins", "Refreshes", "Revocations", "Reuse", "Lockouts", "Rate limited", "Alerts", "Ended"],
      [...o.hours].reverse().map((x) => [
        time(x.startTime),
        count(x.counts?.logins ?? 0n),
        count(x.counts?.refreshes ?? 0n),
        count(x.counts?.revocations ?? 0n),
        count(x.counts?.reuseDetections ?? 0n),
        count(x.counts?.lockouts ?? 0n),
        count(x.counts?.rateLimited ?? 0n),
        count(x.counts?.suspiciousActivity ?? 0n),
        count(x.sessionDurations?.count ?? 0n),
      ]),
      { class: "compact" },
    ),
  );

  fill(
    root,
    h("p", { class: "muted" }, `From ${span}.`),
    figures,
    h(
      "div",
      { class: "grid" },
      h("section", { class: "panel", "aria-labelledby": "h-platforms" }, h("h2", { id: "h-platforms" }, "Live sessions"), platformChart?.figure ?? h("p", { class: "muted" }, "No live sessions."), platforms.length ? platformTable : null),
      h("section", { class: "panel", "aria-labelledby": "h-activity" }, h("h2", { id: "h-activity" }, "Activity"), activityChart.figure),
      h("section", { class: "panel", "aria-labelledby": "h-security" }, h("h2", { id: "h-security" }, "Security"), securityChart.figure),
      h("section", { class: "panel", "aria-labelledby": "h-durations" }, h("h2", { id: "h-durations" }, "Session durations"), durations, durationChart.figure),
    ),
    hourly,
  );
  for (const c of charts) c.draw();
}
