/**
 * Reads a V8 .cpuprofile and adds up self time by function and by area (a package, a Node.js core module, a Tessera
 * source file, or V8's own buckets such as the garbage collector). Also runnable on its own:
 * `node --import tsx bench/profile.ts <file.cpuprofile>` prints the summary as Markdown.
 */
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

export interface CpuProfile {
  nodes: Array<{ id: number; callFrame: CallFrame; hitCount?: number; children?: number[] }>;
  startTime: number;
  endTime: number;
  samples: number[];
}

export interface Share {
  name: string;
  ms: number;
  /** Share of the busy (non-idle) time. */
  pct: number;
}

export interface ProfileSummary {
  /** Length of the profile, and how much of it the main thread was busy. */
  wallMs: number;
  busyMs: number;
  functions: Share[];
  areas: Share[];
  /**
   * Busy time by the innermost Tessera function (src/) on the stack, the library and runtime calls it makes
   * included; time with no Tessera frame on the stack (the RPC stack, the event loop, GC) is "(no Tessera frame)".
   */
  tessera: Share[];
}

const V8_BUCKETS = new Set(["(garbage collector)", "(program)", "(idle)", "(root)"]);

export function summarise(profile: CpuProfile, top = 15): ProfileSummary {
  const wallMs = (profile.endTime - profile.startTime) / 1000;
  const msPerSample = wallMs / Math.max(1, profile.samples.length);
  const byFunction = new Map<string, number>();
  const byArea = new Map<string, number>();
  const byTessera = new Map<string, number>();
  const parent = new Map<number, number>();
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const innermostTessera = (id: number | undefined): string => {
    for (; id !== undefined; id = parent.get(id)) {
      const frame = byId.get(id)!.callFrame;
      if (/\/src\//.test(frame.url)) return `${frame.functionName || "(anonymous)"} ${shortUrl(frame.url)}`;
    }
    return "(no Tessera frame)";
  };
  let idleMs = 0;
  for (const node of profile.nodes) {
    const ms = (node.hitCount ?? 0) * msPerSample;
    if (ms === 0) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === "(idle)") {
      idleMs += ms;
      continue;
    }
    const place = url === "" ? "" : ` ${shortUrl(url)}:${lineNumber + 1}`;
    add(byFunction, `${functionName || "(anonymous)"}${place}`, ms);
    add(byArea, area(functionName, url), ms);
    add(byTessera, innermostTessera(node.id), ms);
  }
  const busyMs = wallMs - idleMs;
  const shares = (m: Map<string, number>, n: number): Share[] =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, ms]) => ({ name, ms, pct: (100 * ms) / busyMs }));
  return {
    wallMs,
    busyMs,
    functions: shares(byFunction, top),
    areas: shares(byArea, top),
    tessera: shares(byTessera, top),
  };
}

function add(m: Map<string, number>, key: string, ms: number): void {
  m.set(key, (m.get(key) ?? 0) + ms);
}

/** Where a function lives: an npm package, a Node.js core module, a file of ours, or a V8 bucket. */
export function area(functionName: string, url: string): string {
  if (url === "") return V8_BUCKETS.has(functionName) ? functionName : "(native: V8 builtins and C++ bindings)";
  const pkg = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (pkg) return pkg[1]!;
  if (url.startsWith("node:")) return `node:${url.replace(/^node:(internal\/)?/, "").split("/")[0]}`;
  const ours = /\/(src|gen|bench)\/(.*)$/.exec(url);
  return ours ? `${ours[1]}/${ours[2]}` : url;
}

function shortUrl(url: string): string {
  const pkg = /\/node_modules\/(.*)$/.exec(url);
  if (pkg) return pkg[1]!;
  return /\/((?:src|gen|bench)\/.*)$/.exec(url)?.[1] ?? url.replace(/^file:\/\//, "");
}

export function markdown(title: string, s: ProfileSummary): string {
  const table = (head: string, rows: Share[], ms = "self ms") =>
    [`| ${head} | ${ms} | % of busy |`, "| --- | ---: | ---: |", ...rows.map((r) => `| \`${r.name}\` | ${r.ms.toFixed(0)} | ${r.pct.toFixed(1)} |`)].join("\n");
  return [
    `#### ${title}`,
    "",
    `Main thread busy ${s.busyMs.toFixed(0)} ms of ${s.wallMs.toFixed(0)} ms (${((100 * s.busyMs) / s.wallMs).toFixed(0)} %).`,
    "",
    "Self time by area:",
    "",
    table("area", s.areas),
    "",
    "Top functions by self time:",
    "",
    table("function", s.functions),
    "",
    ...(s.tessera.some((t) => t.name !== "(no Tessera frame)")
      ? [
          "Busy time by the innermost Tessera function on the stack (what it calls included):",
          "",
          table("Tessera function", s.tessera, "ms"),
          "",
        ]
      : []),
  ].join("\n");
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const file = process.argv[2];
  if (!file) throw new Error("usage: node --import tsx bench/profile.ts <file.cpuprofile>");
  process.stdout.write(markdown(file, summarise(JSON.parse(readFileSync(file, "utf8")) as CpuProfile)));
}
