/** Display helpers: UTC times, durations, counts. */
import { durationMs, timestampMs, type Duration, type Timestamp } from "@bufbuild/protobuf/wkt";
import { h } from "./dom.js";

const pad = (n: number, w = 2) => String(n).padStart(w, "0");

/** `2026-05-01 12:34:56Z` (UTC), as a <time> element; "-" when unset. */
export function time(ts: Timestamp | undefined): HTMLElement | string {
  if (ts === undefined) return "-";
  const ms = timestampMs(ts);
  if (ms <= 0) return "-";
  return h("time", { datetime: new Date(ms).toISOString() }, utc(ms));
}

export function utc(ms: number): string {
  const d = new Date(ms);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}Z`;
}

/** 250 ms, 45 s, 3 min 20 s, 2 h 5 min, 3 d 4 h. */
export function duration(d: Duration | undefined): string {
  return d === undefined ? "-" : ms(durationMs(d));
}

export function ms(value: number): string {
  if (!Number.isFinite(value) || value <= 0) return "0 s";
  if (value < 1000) return `${Math.round(value)} ms`;
  const s = Math.round(value / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return s % 60 ? `${m} min ${s % 60} s` : `${m} min`;
  const hr = Math.floor(m / 60);
  if (hr < 24) return m % 60 ? `${hr} h ${m % 60} min` : `${hr} h`;
  const d = Math.floor(hr / 24);
  return hr % 24 ? `${d} d ${hr % 24} h` : `${d} d`;
}

/** A count as digits (uint64 figures arrive as bigint). */
export function count(n: bigint | number): string {
  return typeof n === "bigint" ? n.toString() : String(n);
}

/** An enum value's name without its prefix, lower case: `AUDIT_EVENT_TYPE_TOKEN_ISSUED` -> `token issued`. */
export function enumName(e: Record<number, string>, value: number): string {
  const name = e[value];
  return name === undefined ? String(value) : name.toLowerCase().replace(/_/g, " ");
}

/** The first characters of a long id, the whole in a title attribute. */
export function shortId(id: string, n = 10): HTMLElement {
  return h("code", { title: id }, id.length > n ? `${id.slice(0, n)}…` : id);
}
