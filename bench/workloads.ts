/**
 * The calls the load generator makes: one `call(slot)` per workload, plus the setup it needs first (tokens to
 * introspect, sessions to refresh, opaque tokens minted at oidc-provider). Every answer is checked, so a server that
 * answers fast but wrongly shows up as errors, not as throughput.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { Pool } from "undici";
import { InactiveReason, TokenService } from "../gen/tessera/v1/token_pb.js";
import { createLeanConnectTransport, createLeanGrpcTransport } from "./lean-transport.js";
import type { LoadSpec } from "./spec.js";

export interface Workload {
  /** One call on behalf of in-flight slot `slot`; resolves with the answer's outcome, throws on a wrong one. */
  call(slot: number): Promise<string>;
  close(): Promise<void>;
}

type TokenClient = Client<typeof TokenService>;

/** Tokens to introspect, sessions per Refresh slot: enough that Redis sees many keys, few enough to set up fast. */
const TOKEN_POOL = 1000;
const CALL_TIMEOUT_MS = 10_000;
/** What a mobile client sends: Redis memory per session depends on it. */
export const CLIENT = {
  userAgent: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
  ip: "203.0.113.7",
  platform: "ios",
};
export const GRANT = { audience: ["orders-api"], scopes: ["openid", "profile", "orders:read"], extraClaims: { tenant: "acme", plan: "pro" } };

export async function openWorkload(spec: LoadSpec): Promise<Workload> {
  if (spec.target.kind === "oidc") return oidcIntrospect(spec.target, spec.concurrency);
  const url = spec.target.url;
  const protocol = spec.protocol ?? "grpc";
  const leanTransport = () =>
    protocol === "grpc" ? createLeanGrpcTransport(url) : createLeanConnectTransport(url, protocol === "connect-proto" ? "proto" : "json");
  const connectTransport = () =>
    protocol === "grpc"
      ? createGrpcTransport({ baseUrl: url })
      : createConnectTransport({ baseUrl: url, httpVersion: "2", useBinaryFormat: protocol === "connect-proto" });
  const lean = Array.from({ length: spec.client === "lean" ? spec.connections : 0 }, leanTransport);
  const transports = spec.client === "lean" ? lean : Array.from({ length: spec.connections }, connectTransport);
  const clients = transports.map((t) => createClient(TokenService, t));
  const pick = (slot: number) => clients[slot % clients.length]!;
  const close = async () => {
    for (const t of lean) t.close();
  };
  switch (spec.workload) {
    case "noop":
      return { call: (slot) => noop(pick(slot)), close };
    case "introspect-valid":
    case "introspect-mix":
      return { call: await introspect(pick, spec.workload === "introspect-mix"), close };
    case "issue":
      return { call: (slot) => issue(pick(slot), `bench-${randomUUID()}`).then(() => "ok"), close };
    case "refresh":
      return { call: await refresh(pick, spec.concurrency), close };
    default:
      throw new Error(`workload ${spec.workload} needs an oidc target`);
  }
}

function issue(client: TokenClient, subject: string) {
  return client.issue(
    { subject, ...GRANT, client: { ...CLIENT, deviceId: randomUUID() } },
    { timeoutMs: CALL_TIMEOUT_MS },
  );
}

/** The request a valid Introspect sends (a token shaped and sized like Tessera's), answered by a no-op server. */
async function noop(client: TokenClient): Promise<string> {
  await client.introspect({ token: FAKE_TOKEN }, { timeoutMs: CALL_TIMEOUT_MS });
  return "ok";
}

const FAKE_TOKEN = [
  { alg: "ES256", kid: randomBytes(32).toString("base64url"), typ: "at+jwt" },
  {
    tenant: "acme", plan: "pro", iss: "tessera", sub: "bench-00000000-0000-0000-0000-000000000000",
    aud: GRANT.audience, exp: 1e9, iat: 1e9, nbf: 1e9, jti: randomBytes(16).toString("base64url"),
    sid: randomBytes(16).toString("base64url"), scope: GRANT.scopes.join(" "),
  },
]
  .map((part) => Buffer.from(JSON.stringify(part)).toString("base64url"))
  .concat(randomBytes(64).toString("base64url"))
  .join(".");

interface Probe {
  token: string;
  /** "active" or the InactiveReason name the answer must carry. */
  expect: string;
}

/** Introspect over a pool of real tokens; with `mix`, some revoked, some with a bad signature, some not JWTs. */
async function introspect(pick: (slot: number) => TokenClient, mix: boolean): Promise<Workload["call"]> {
  const client = pick(0);
  const tokens = await inBatches(TOKEN_POOL, 64, async (i) => (await issue(client, `bench-${i}-${randomUUID()}`)).tokens!.accessToken);
  const probes: Probe[] = tokens.map((token) => ({ token, expect: "active" }));
  if (mix) {
    const n = TOKEN_POOL / 20; // 5 % of the pool per kind of bad token
    for (let i = 0; i < 2 * n; i++) {
      const token = tokens[i]!;
      await client.revoke({ target: { case: "token", value: token }, reason: "bench" });
      probes[i] = { token, expect: InactiveReason[InactiveReason.REVOKED] };
    }
    for (let i = 2 * n; i < 3 * n; i++) probes[i] = { token: badSignature(tokens[i]!), expect: "BAD_SIGNATURE" };
    for (let i = 3 * n; i < 4 * n; i++) probes[i] = { token: randomBytes(240).toString("base64url"), expect: "MALFORMED" };
    shuffle(probes);
  }
  let next = 0;
  return async (slot) => {
    const probe = probes[next++ % probes.length]!;
    const res = await pick(slot).introspect({ token: probe.token }, { timeoutMs: CALL_TIMEOUT_MS });
    const got = res.active ? "active" : InactiveReason[res.inactiveReason];
    if (got !== probe.expect) throw new Error(`expected ${probe.expect}, got ${got}`);
    return got ?? "unknown";
  };
}

/** Flips one character in the middle of the signature: same shape, wrong signature. */
function badSignature(token: string): string {
  const at = token.lastIndexOf(".") + 20;
  return token.slice(0, at) + (token[at] === "A" ? "B" : "A") + token.slice(at + 1);
}

/** Refresh: slot i always presents the refresh token its previous call got (each token is used exactly once). */
async function refresh(pick: (slot: number) => TokenClient, slots: number): Promise<Workload["call"]> {
  const client = { ...CLIENT, deviceId: randomUUID() };
  const open = async (slot: number) => (await issue(pick(slot), `bench-refresh-${slot}-${randomUUID()}`)).tokens!.refreshToken;
  const chains = await inBatches(slots, 64, open);
  return async (slot) => {
    try {
      const res = await pick(slot).refresh({ refreshToken: chains[slot]!, client }, { timeoutMs: CALL_TIMEOUT_MS });
      chains[slot] = res.tokens!.refreshToken;
      return "ok";
    } catch (err) {
      chains[slot] = await open(slot); // the chain is broken (the token may be spent): start a new session
      throw err;
    }
  };
}

/** RFC 7662 introspection at oidc-provider over HTTP/1.1 keep-alive, one connection per call in flight. */
async function oidcIntrospect(
  target: { url: string; clientId: string; clientSecret: string },
  concurrency: number,
): Promise<Workload> {
  const pool = new Pool(target.url, { connections: concurrency, pipelining: 1 });
  const headers = {
    authorization: `Basic ${Buffer.from(`${target.clientId}:${target.clientSecret}`).toString("base64")}`,
    "content-type": "application/x-www-form-urlencoded",
  };
  const post = async (path: string, body: string): Promise<Record<string, unknown>> => {
    const res = await pool.request({ method: "POST", path, headers, body, headersTimeout: CALL_TIMEOUT_MS });
    const json = (await res.body.json()) as Record<string, unknown>;
    if (res.statusCode !== 200) throw new Error(`${path}: HTTP ${res.statusCode} ${JSON.stringify(json)}`);
    return json;
  };
  const tokens = await inBatches(TOKEN_POOL, 64, async () => {
    const res = await post("/token", "grant_type=client_credentials");
    return String(res.access_token);
  });
  let next = 0;
  return {
    async call() {
      const res = await post("/token/introspection", `token=${tokens[next++ % tokens.length]}`);
      if (res.active !== true) throw new Error(`expected active, got ${JSON.stringify(res)}`);
      return "active";
    },
    close: () => pool.close(),
  };
}

/** Runs make(0..n-1), `width` at a time, and returns the results in order. */
async function inBatches<T>(n: number, width: number, make: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  const lane = async () => {
    while (next < n) {
      const i = next++;
      out[i] = await make(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, n) }, lane));
  return out;
}

function shuffle<T>(xs: T[]): void {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
}
