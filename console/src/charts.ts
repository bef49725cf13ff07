/**
 * Charts with uPlot (small, no dependencies, canvas): hourly series on a UTC time axis, and a bar chart of categories.
 * Each chart sits in a <figure> with a caption and an aria-label summary; the figures themselves are also on the page
 * as text and tables, so nothing is only in a picture.
 */
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { h } from "./dom.js";

export const COLORS = ["#1f6feb", "#2da44e", "#bf3989", "#d4a72c", "#cf222e", "#8250df", "#0a7ea4"];

const live = new Set<uPlot>();

/** Destroys the charts of the screen being left. */
export function destroyCharts(): void {
  for (const u of live) u.destroy();
  live.clear();
}

const resize = new ResizeObserver((entries) => {
  for (const entry of entries) {
    const u = [...live].find((c) => c.root.parentElement === entry.target);
    if (u) u.setSize({ width: Math.max(240, Math.floor(entry.contentRect.width)), height: u.height });
  }
});

export interface ChartFigure {
  figure: HTMLElement;
  /** Draws the chart; call once the figure is in the document (uPlot measures its container). */
  draw(): void;
}

function figure(id: string, caption: string, summary: string, make: (width: number, host: HTMLElement) => uPlot): ChartFigure {
  const host = h("div", { class: "chart", role: "img", "aria-label": summary, id });
  const fig = h("figure", { class: "chart-figure" }, h("figcaption", null, caption), host);
  return {
    figure: fig,
    draw() {
      const u = make(Math.max(240, host.clientWidth), host);
      live.add(u);
      resize.observe(host);
    },
  };
}

export interface HourlySeries {
  label: string;
  /** One value per hour; null: nothing to draw for that hour. */
  values: (number | null)[];
}

const pad = (n: number) => String(n).padStart(2, "0");

/** A time axis label in UTC, 24-hour: `18:00`, and the date (`11-30`) at midnight. */
function utcTick(seconds: number): string {
  const d = new Date(seconds * 1000);
  const midnight = d.getUTCHours() === 0 && d.getUTCMinutes() === 0;
  return midnight ? `${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}` : `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
}

/**
 * Steps per hour (x: each hour's first instant, ms): a value holds from its hour's start to the next hour's, the
 * current hour included (one more point, at its end, carries it).
 */
export function hourlyChart(id: string, caption: string, summary: string, hours: number[], series: HourlySeries[], unit?: (v: number) => string): ChartFigure {
  return figure(id, caption, summary, (width, host) => {
    const opts: uPlot.Options = {
      width,
      height: 220,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
      axes: [
        { values: (_u, splits) => splits.map(utcTick) },
        { size: unit ? 72 : 48, values: (_u, splits) => splits.map((v) => (unit ? unit(v) : Number.isInteger(v) ? String(v) : "")) },
      ],
      series: [
        { label: "Hour (UTC)", value: (_u: uPlot, v: number | null) => (v === null ? "-" : utcTick(v)) },
        ...series.map((s, i) => ({
          label: s.label,
          stroke: COLORS[i % COLORS.length],
          width: 2,
          paths: uPlot.paths.stepped!({ align: 1 }),
          points: { show: false },
          value: (_u: uPlot, v: number | null) => (v === null ? "-" : unit ? unit(v) : String(v)),
        })),
      ],
    };
    const last = hours.length - 1;
    const xs = [...hours, (hours[last] ?? 0) + 3_600_000].map((ms) => ms / 1000);
    const data: uPlot.AlignedData = [xs, ...series.map((s) => [...s.values, s.values[last] ?? null])];
    return new uPlot(opts, data, host);
  });
}

/** Bars, one per category. */
export function barChart(id: string, caption: string, summary: string, label: string, categories: string[], values: number[]): ChartFigure {
  return figure(id, caption, summary, (width, host) => {
    const xs = categories.map((_, i) => i);
    const opts: uPlot.Options = {
      width,
      height: 220,
      legend: { show: false },
      cursor: { show: false },
      scales: { x: { time: false, range: [-0.6, categories.length - 0.4] }, y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.15)] } },
      axes: [
        { splits: () => xs, values: (_u, splits) => splits.map((v) => categories[v] ?? ""), grid: { show: false } },
        { values: (_u, splits) => splits.map((v) => (Number.isInteger(v) ? String(v) : "")) },
      ],
      series: [{}, { label, fill: `${COLORS[0]}cc`, stroke: COLORS[0], paths: uPlot.paths.bars!({ size: [0.6, 80] }), points: { show: false } }],
    };
    return new uPlot(opts, [xs, values], host);
  });
}
