/** A real Authority on the memory store with a manual clock: the domain unit tests' fixture. */
import type { AuditInput } from "../../src/domain/audit-trail.js";
import { Authority, type AuthorityConfig, type AuthorityEvent } from "../../src/domain/authority.js";
import { ManualClock } from "../../src/domain/clock.js";
import { KeyRing, type SigningAlgorithm } from "../../src/domain/keys.js";
import type { ClaimsCipher } from "../../src/domain/sealed-claims.js";
import type { ClientInfo, Store } from "../../src/domain/store.js";
import { TokenCodec } from "../../src/domain/tokens.js";
import { MemoryStore } from "../../src/store/memory.js";

export const S = 1000;
export const MIN = 60 * S;
export const H = 60 * MIN;
export const D = 24 * H;

export const ISSUER = "https://tessera.test";

export const DEFAULT_CONFIG: AuthorityConfig = {
  defaultAudience: ["api"],
  accessTtlMs: 15 * MIN,
  accessTtlMaxMs: H,
  refreshTtlMs: 7 * D,
  refreshTtlMaxMs: 30 * D,
  refreshIdleTtlMs: D,
  refreshGraceMs: 10 * S,
  maxSessions: 5,
  clockSkewMs: 0,
};

export const PHONE: ClientInfo = { deviceId: "phone-1", userAgent: "app/1.0", ip: "10.0.0.1", platform: "ios" };
export const LAPTOP: ClientInfo = { deviceId: "laptop-7", userAgent: "firefox", ip: "10.0.0.2", platform: "web" };

export interface Fixture {
  authority: Authority;
  clock: ManualClock;
  store: Store;
  keys: KeyRing;
  codec: TokenCodec;
  events: AuthorityEvent[];
  /** What the authority recorded in the audit trail, in order. */
  audited: AuditInput[];
}

export async function makeAuthority(
  overrides: Partial<AuthorityConfig> = {},
  opts: {
    store?: Store;
    alg?: SigningAlgorithm;
    clock?: ManualClock;
    verifiedCacheSize?: number;
    claims?: ClaimsCipher;
    /** Refresh tokens MAC'd (TESSERA_REFRESH_TOKEN_MAC): on unless told, as in production. */
    refreshMac?: boolean;
  } = {},
): Promise<Fixture> {
  const clock = opts.clock ?? new ManualClock(Date.UTC(2026, 0, 1, 12, 0, 0, 500));
  const store = opts.store ?? new MemoryStore();
  const keys = new KeyRing(store, opts.alg ?? "ES256", clock);
  await keys.init();
  // The verified-signature cache is on, as in production, so every domain test also exercises the cached path.
  const codec = new TokenCodec(keys, {
    issuer: ISSUER,
    clockSkewMs: overrides.clockSkewMs ?? 0,
    maxTokenLength: 8192,
    verifiedCacheSize: opts.verifiedCacheSize ?? 1000,
    refreshTokenMac: opts.refreshMac ?? true,
  });
  const events: AuthorityEvent[] = [];
  const audited: AuditInput[] = [];
  const authority = new Authority({
    store,
    codec,
    clock,
    config: { ...DEFAULT_CONFIG, ...overrides },
    onEvent: (e) => events.push(e),
    audit: { record: (e) => audited.push(e) },
    claims: opts.claims,
  });
  return { authority, clock, store, keys, codec, events, audited };
}

export function issueFor(f: Fixture, subject = "alice", client: ClientInfo = PHONE) {
  return f.authority.issue({ subject, audience: [], scopes: ["read", "write"], claims: { tenant: "t1" }, client });
}
