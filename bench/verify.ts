/**
 * Checks that an h2load window measured correct answers, since h2load only looks at HTTP statuses (a gRPC error is an
 * HTTP 200 with grpc-status in the trailers):
 *
 * - sample calls before and after each window: the very request h2load sends (same URL, headers and body bytes)
 *   replayed by node:http2 (or fetch, HTTP/1.1) with grpc-status, the frame and the decoded answer checked, and the
 *   same request message through connect-node's own client; see bench/scenarios.ts for what each scenario checks;
 * - Tessera's own counters (GET /metrics: tessera_rpc_total by method and gRPC code, tessera_introspect_total by
 *   answer, evictions), read right before and right after the h2load run, so every call h2load made is accounted for
 *   by its gRPC code, not only the samples.
 */
import http2 from "node:http2";
import { fromBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import type { H2Request } from "./h2load.js";

/** One HTTP answer, headers and trailers as node:http2 (or fetch) gives them. */
export interface Reply {
  status: number;
  headers: Record<string, string>;
  trailers: Record<string, string>;
  body: Buffer;
}

const flat = (h: http2.IncomingHttpHeaders): Record<string, string> =>
  Object.fromEntries(Object.entries(h).map(([k, v]) => [k, Array.isArray(v) ? v.join(", ") : String(v)]));

/** Sends `req` once, exactly as h2load does (POST, its headers, its body), on a connection of its own. */
export async function send(req: H2Request, timeoutMs = 10_000): Promise<Reply> {
  if (req.http === "h1") {
    const res = await fetch(req.url, {
      method: "POST",
      headers: req.headers,
      body: req.body,
      signal: AbortSignal.timeout(timeoutMs),
    });
    return { status: res.status, headers: Object.fromEntries(res.headers), trailers: {}, body: Buffer.from(await res.arrayBuffer()) };
  }
  const url = new URL(req.url);
  const session = http2.connect(url.origin);
  try {
    return await new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      session.once("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      const stream = session.request({ ":method": "POST", ":path": url.pathname + url.search, ...req.headers });
      const chunks: Buffer[] = [];
      let headers: Record<string, string> = {};
      let trailers: Record<string, string> = {};
      stream.on("response", (h) => (headers = flat(h)));
      stream.on("trailers", (t) => (trailers = flat(t)));
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.once("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      stream.once("close", () => {
        clearTimeout(timer);
        if (stream.rstCode !== undefined && stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR) {
          reject(new Error(`stream reset with code ${stream.rstCode}`));
          return;
        }
        resolve({ status: Number(headers[":status"]), headers, trailers, body: Buffer.concat(chunks) });
      });
      stream.end(req.body);
    });
  } finally {
    session.close();
  }
}

/** The answer of a gRPC call: HTTP 200, grpc-status 0, exactly one uncompressed frame, decoded as `schema`. */
export function grpcAnswer<O extends DescMessage>(reply: Reply, schema: O): MessageShape<O> {
  if (reply.status !== 200) throw new Error(`HTTP ${reply.status}`);
  const status = reply.trailers["grpc-status"] ?? reply.headers["grpc-status"];
  const message = reply.trailers["grpc-message"] ?? reply.headers["grpc-message"];
  if (status === undefined) throw new Error("no grpc-status in the answer");
  if (status !== "0") throw new Error(`grpc-status ${status}${message ? `: ${decodeURIComponent(message)}` : ""}`);
  const body = reply.body;
  if (body.length < 5) throw new Error(`grpc-status 0 but ${body.length} bytes of body`);
  if (body[0] !== 0) throw new Error(`compressed or unknown frame flag ${body[0]}`);
  const length = body.readUInt32BE(1);
  if (body.length !== 5 + length) throw new Error(`one frame of ${length} bytes expected, got ${body.length - 5} bytes`);
  return fromBinary(schema, body.subarray(5));
}

/** The answer of a Connect-protocol unary call with a binary body: HTTP 200, application/proto, decoded as `schema`. */
export function connectAnswer<O extends DescMessage>(reply: Reply, schema: O): MessageShape<O> {
  if (reply.status !== 200) throw new Error(`HTTP ${reply.status}: ${reply.body.toString("utf8").slice(0, 200)}`);
  if (reply.headers["content-type"] !== "application/proto") throw new Error(`content-type ${reply.headers["content-type"]}`);
  return fromBinary(schema, reply.body);
}

/** Runs `probe` `n` times in a row; a throw is a failed sample. */
export async function samples(probe: () => Promise<string>, n: number): Promise<{ outcomes: string[]; failures: string[] }> {
  const outcomes: string[] = [];
  const failures: string[] = [];
  for (let i = 0; i < n; i++) {
    try {
      outcomes.push(await probe());
    } catch (err) {
      failures.push(err instanceof Error ? err.message : String(err));
    }
  }
  return { outcomes, failures };
}

/** Tessera's counters that tell calls' outcomes, by full series name (`name{labels}`). */
export type Counters = Map<string, number>;

const COUNTED = ["tessera_rpc_total", "tessera_introspect_total", "tessera_sessions_evicted_total", "tessera_refresh_reuse_total"];

/** Tessera's counters from GET <baseUrl>/metrics; undefined if the server has none to give. */
export async function readCounters(baseUrl: string): Promise<Counters | undefined> {
  const res = await fetch(`${baseUrl}/metrics`, { signal: AbortSignal.timeout(10_000) }).catch(() => undefined);
  if (!res?.ok) return undefined;
  const counters: Counters = new Map();
  for (const line of (await res.text()).split("\n")) {
    if (line.startsWith("#")) continue;
    const m = /^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$/.exec(line);
    if (m && COUNTED.includes(m[1]!)) counters.set(`${m[1]}${m[2] ?? ""}`, Number(m[3]));
  }
  return counters;
}

/** What Tessera counted between two readings: gRPC codes of `method`'s calls, Introspect answers, evictions, reuses. */
export interface ServerCounts {
  method: string;
  codes: Record<string, number>;
  /** Introspect answers by result (active, or the inactive reason). */
  introspect: Record<string, number>;
  evicted: number;
  reuse: number;
}

export function countsBetween(before: Counters, after: Counters, method: string): ServerCounts {
  const counts: ServerCounts = { method, codes: {}, introspect: {}, evicted: 0, reuse: 0 };
  for (const [series, value] of after) {
    const n = value - (before.get(series) ?? 0);
    if (n === 0) continue;
    const label = (name: string) => new RegExp(`${name}="([^"]*)"`).exec(series)?.[1];
    if (series.startsWith("tessera_rpc_total{") && label("method") === method) {
      const code = label("code") ?? "?";
      counts.codes[code] = (counts.codes[code] ?? 0) + n;
    } else if (series.startsWith("tessera_introspect_total{")) {
      const result = label("result") ?? "?";
      counts.introspect[result] = (counts.introspect[result] ?? 0) + n;
    } else if (series.startsWith("tessera_sessions_evicted_total")) counts.evicted += n;
    else if (series.startsWith("tessera_refresh_reuse_total")) counts.reuse += n;
  }
  return counts;
}
