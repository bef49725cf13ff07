/**
 * Redis goes away and comes back, on a throwaway persistent server (AOF, appendfsync always) that the test kills with
 * SIGKILL: every RPC that needs the store fails closed with UNAVAILABLE and quickly; once Redis is back on the same
 * port, the same Tessera answers again and no acknowledged revocation was lost. Then Tessera itself restarts and
 * finds its keys, tokens and sessions in Redis.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, codeOf, ConnectError, statusOf, tesseraClient, TokenType, type Issued, type TesseraClient } from "../helpers/clients.js";
import { RedisServer } from "../helpers/redis-server.js";
import { startServer, type StartedServer } from "../helpers/server.js";

const PHONE = { deviceId: "phone-f", userAgent: "tessera-e2e/1.0" };
/** A call that fails closed must still answer promptly: a sanity bound, far above the 300ms store timeout. */
const PROMPT_MS = 5_000;

let redis: RedisServer;
let env: Record<string, string>;
let server: StartedServer | undefined;
let c: TesseraClient | undefined;

beforeAll(async () => {
  redis = await RedisServer.start({ persistent: true });
  env = { TESSERA_REDIS_URL: redis.url, TESSERA_REDIS_PREFIX: "tessera-failure:", TESSERA_STORE_TIMEOUT: "300ms" };
});
afterAll(async () => {
  c?.close();
  await server?.close();
  await redis?.stop();
});

async function connect(): Promise<TesseraClient> {
  c?.close();
  await server?.close();
  server = await startServer(env);
  c = tesseraClient("connect-grpc", server.url);
  return c;
}

/** The code a call fails with, checking that it failed within PROMPT_MS. */
async function failsPromptly(call: () => Promise<unknown>): Promise<Code> {
  const started = performance.now();
  const code = await codeOf(call());
  expect(performance.now() - started).toBeLessThan(PROMPT_MS);
  return code;
}

/** Polls until the store answers again through Tessera (Introspect stops failing), at most 15s. */
async function untilStoreAnswers(client: TesseraClient, token: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      await client.introspect(token);
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

describe("Redis outage", () => {
  let revoked: Issued;
  let kept: Issued;

  it("fails closed with UNAVAILABLE while Redis is down, and never reports a token active", async () => {
    const client = await connect();
    revoked = await client.issue({ subject: "outage-user", scopes: ["a"], client: PHONE });
    kept = await client.issue({ subject: "outage-user", scopes: ["b"], client: PHONE });
    expect(await client.revoke({ token: revoked.tokens.accessToken })).toMatchObject({ tokenRevoked: true });

    await redis.kill();

    for (let round = 0; round < 2; round++) {
      expect(await failsPromptly(() => client.introspect(kept.tokens.accessToken))).toBe(Code.Unavailable);
      expect(await failsPromptly(() => client.introspect(revoked.tokens.accessToken))).toBe(Code.Unavailable);
      expect(await failsPromptly(() => client.introspect(kept.tokens.refreshToken, TokenType.REFRESH))).toBe(
        Code.Unavailable,
      );
      expect(await failsPromptly(() => client.issue({ subject: "outage-user", client: PHONE }))).toBe(Code.Unavailable);
      expect(await failsPromptly(() => client.refresh(kept.tokens.refreshToken, PHONE))).toBe(Code.Unavailable);
      expect(await failsPromptly(() => client.revoke({ sessionId: kept.sessionId }))).toBe(Code.Unavailable);
      expect(await failsPromptly(() => client.revoke({ subject: "outage-user" }))).toBe(Code.Unavailable);
      expect(await failsPromptly(() => client.listSessions("outage-user"))).toBe(Code.Unavailable);
    }
    // Many at once: still every one fails closed.
    const burst = await Promise.allSettled(Array.from({ length: 10 }, () => client.introspect(kept.tokens.accessToken)));
    expect(burst.map((r) => (r.status === "fulfilled" ? `active=${r.value.active}` : ConnectError.from(r.reason).code))).toEqual(
      Array(10).fill(Code.Unavailable),
    );
  });

  it("recovers without a Tessera restart once Redis is back; no revocation was lost", async () => {
    const client = c!;
    await redis.start();
    await untilStoreAnswers(client, kept.tokens.accessToken);

    expect(await statusOf(client, revoked.tokens.accessToken)).toBe("REVOKED");
    expect(await client.introspect(kept.tokens.accessToken)).toMatchObject({ active: true, scopes: ["b"] });
    const next = await client.refresh(kept.tokens.refreshToken, PHONE);
    expect(await statusOf(client, next.tokens.accessToken)).toBe("ACTIVE");
    kept = next;
    const fresh = await client.issue({ subject: "outage-user", client: PHONE });
    expect(await statusOf(client, fresh.tokens.accessToken)).toBe("ACTIVE");
    expect(await client.revoke({ sessionId: fresh.sessionId })).toEqual({ sessionsRevoked: 1, tokenRevoked: false });
    expect(await statusOf(client, fresh.tokens.accessToken)).toBe("REVOKED");
  });

  it("state survives a Tessera restart: keys, revocations and sessions live in Redis", async () => {
    const before = server!.app.keys.publicKeys().map((k) => k.kid);
    const client = await connect(); // closes the old app, builds a new one on the same Redis and prefix
    expect(server!.app.keys.publicKeys().map((k) => k.kid)).toEqual(before);

    expect(await client.introspect(kept.tokens.accessToken)).toMatchObject({ active: true, subject: "outage-user" });
    expect(await statusOf(client, revoked.tokens.accessToken)).toBe("REVOKED");
    const next = await client.refresh(kept.tokens.refreshToken, PHONE);
    expect(next.sessionId).toBe(kept.sessionId);
    expect(await statusOf(client, next.tokens.accessToken)).toBe("ACTIVE");
    expect(await statusOf(client, kept.tokens.refreshToken, TokenType.REFRESH)).toBe("ROTATED");
  });

  it("state survives a Redis restart too (AOF): a killed and restarted Redis still knows every session", async () => {
    const client = c!;
    const issued = await client.issue({ subject: "aof-user", client: PHONE });
    await client.revoke({ token: issued.tokens.accessToken });
    await redis.kill();
    await redis.start();
    await untilStoreAnswers(client, issued.tokens.accessToken);
    expect(await statusOf(client, issued.tokens.accessToken)).toBe("REVOKED");
    const next = await client.refresh(issued.tokens.refreshToken, PHONE);
    expect(await statusOf(client, next.tokens.accessToken)).toBe("ACTIVE");
  });
});

describe("Redis that comes back empty (no persistence)", () => {
  let empty: RedisServer;
  let app: StartedServer | undefined;
  let client: TesseraClient | undefined;

  beforeAll(async () => {
    empty = await RedisServer.start();
    app = await startServer({ TESSERA_REDIS_URL: empty.url, TESSERA_REDIS_PREFIX: "tessera-empty:", TESSERA_STORE_TIMEOUT: "300ms" });
    client = tesseraClient("connect-grpc", app.url);
  });
  afterAll(async () => {
    client?.close();
    await app?.close();
    await empty?.stop();
  });

  it("makes a new signing key without a restart: the tokens from before are inactive, new ones active", async () => {
    const before = await client!.issue({ subject: "empty-user", client: PHONE });
    const kidOf = (token: string) => (JSON.parse(Buffer.from(token.split(".")[0]!, "base64url").toString()) as { kid: string }).kid;
    const oldKid = kidOf(before.tokens.accessToken);

    await empty.kill();
    await empty.start(); // the same port, nothing kept: keys, sessions, revocations and the feed are gone

    // Every answer meanwhile is a token pair or UNAVAILABLE, never another failure; then a pair under a new key.
    const deadline = Date.now() + 20_000;
    let after: Issued | undefined;
    while (after === undefined) {
      try {
        const issued = await client!.issue({ subject: "empty-user", client: PHONE });
        if (kidOf(issued.tokens.accessToken) !== oldKid) after = issued;
      } catch (err) {
        expect(ConnectError.from(err).code).toBe(Code.Unavailable);
      }
      if (after === undefined) {
        expect(Date.now()).toBeLessThan(deadline);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    expect(app!.app.keys.publicKeys().map((k) => k.kid)).toEqual([kidOf(after.tokens.accessToken)]);
    expect(await statusOf(client!, after.tokens.accessToken)).toBe("ACTIVE");
    // The lost key is gone from the ring: what it signed no longer verifies.
    expect(await statusOf(client!, before.tokens.accessToken)).toBe("UNKNOWN_KEY");
    expect(await codeOf(client!.refresh(before.tokens.refreshToken, PHONE))).toBe(Code.Unauthenticated);
    const next = await client!.refresh(after.tokens.refreshToken, PHONE);
    expect(await statusOf(client!, next.tokens.accessToken)).toBe("ACTIVE");
  });
});
