/**
 * Issue 13, point 5: sensitive claims, end to end over real clients (connect's gRPC transport and @grpc/grpc-js on the
 * lean path, the Connect protocol over HTTP/1.1 through connect-node), with a callers file:
 *
 * - Issue's `sensitive_claims` travel inside the tokens encrypted (a compact JWE under TESSERA_CLAIMS_KEY): the
 *   bearer, decoding its tokens, sees neither their values nor their names;
 * - Introspect gives them back decrypted only to a caller holding `introspect.sensitive`; any other caller gets the
 *   same answer without them, and the JWE is never among `claims`;
 * - Refresh carries them into every successor (sealed in the refresh token's grant too);
 * - a rotation (TESSERA_CLAIMS_KEY_PREVIOUS) keeps old tokens readable, and a refresh seals them again under the new key;
 *   a process without the key that sealed them refuses with FAILED_PRECONDITION instead of guessing;
 * - without a configured key, Issue with sensitive claims is FAILED_PRECONDITION naming the variable;
 * - bad sensitive claims are INVALID_ARGUMENT as bad extra_claims are;
 * - a sidecar (which holds no claims key) answers without them, for every caller.
 */
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { JsonObject } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { decodeJwt, decodeProtectedHeader } from "jose";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.js";
import { TokenType } from "../../gen/tessera/v1/common_pb.js";
import { InactiveReason, TokenService } from "../../gen/tessera/v1/token_pb.js";
import { createSidecar, type Sidecar } from "../../src/sidecar/app.js";
import { loadSidecarConfig } from "../../src/sidecar/config.js";
import { claimsKeyId } from "../../src/domain/sealed-claims.js";
import { connectTransport, fromGrpcStruct, grpcJsClient, toGrpcStruct } from "../helpers/clients.js";
import { redisScope, startServer, type RedisScope, type StartedServer } from "../helpers/server.js";
import { until } from "../helpers/wait.js";

const rawKey = () => randomBytes(32);
const K1 = rawKey();
const K2 = rawKey();
const K3 = rawKey();
const b64 = (k: Buffer) => k.toString("base64");

/** Health data a bearer must not read: values and names alike. */
const SENSITIVE: JsonObject = {
  diagnosis_code: "F32.1-moderate-depressive-episode",
  mrn: "MRN-7731-0042",
  medications: ["sertraline-50mg"],
  care: { program: "oncology-trial-B17", weekly_sessions: 2, consented: true },
};
const HIDDEN_TEXTS = ["F32.1", "depressive", "MRN-7731", "sertraline", "oncology", "diagnosis_code", "medications", "B17"];
const EXTRA: JsonObject = { tenant: "clinic-north", tier: "gold" };
const DEVICE = { deviceId: "tablet-3", userAgent: "sensitive-e2e/1.0", ip: "192.0.2.33", platform: "web" };

const apiKey = () => `tk_${randomBytes(24).toString("base64url")}`;
const KEYS = { gateway: apiKey(), clinic: apiKey(), billing: apiKey(), "sensitive-only": apiKey() };
const sha256 = (key: string) => createHash("sha256").update(key).digest("hex");
const CALLERS = {
  callers: [
    { name: "gateway", api_keys: [{ sha256: sha256(KEYS.gateway) }], permissions: ["issue", "refresh", "revoke"] },
    { name: "clinic", api_keys: [{ sha256: sha256(KEYS.clinic) }], permissions: ["introspect", "introspect.sensitive"] },
    { name: "billing", api_keys: [{ sha256: sha256(KEYS.billing) }], permissions: ["introspect"] },
    { name: "sensitive-only", api_keys: [{ sha256: sha256(KEYS["sensitive-only"]) }], permissions: ["introspect.sensitive"] },
  ],
};
type Who = keyof typeof KEYS | "anonymous";

// -------------------------------------------------------------------------------------------------------------------
// One small client interface over connect and grpc-js, with the caller's API key

interface IssueReq {
  subject: string;
  scopes?: string[];
  extraClaims?: JsonObject;
  sensitiveClaims?: JsonObject;
}
interface Pair {
  access: string;
  refresh: string;
  sessionId: string;
}
interface Answer {
  active: boolean;
  subject: string;
  inactiveReason: InactiveReason;
  claims: JsonObject | undefined;
  sensitiveClaims: JsonObject | undefined;
}
interface Api {
  kind: string;
  issue(who: Who, req: IssueReq): Promise<Pair>;
  refresh(who: Who, refreshToken: string): Promise<Pair>;
  introspect(who: Who, token: string, expectedType?: TokenType): Promise<Answer>;
  close(): void;
}

const KINDS = ["connect-grpc", "connect-h1", "grpc-js"] as const;
type Kind = (typeof KINDS)[number];

function api(kind: Kind, url: string): Api {
  return kind === "grpc-js" ? grpcJsApi(url) : connectApi(kind, url);
}

const headersOf = (who: Who) => (who === "anonymous" ? {} : { headers: { authorization: `Bearer ${KEYS[who]}` } });

function connectApi(kind: "connect-grpc" | "connect-h1", url: string): Api {
  const { transport, close } = connectTransport(kind, url);
  const tokens: Client<typeof TokenService> = createClient(TokenService, transport);
  const pair = (r: { tokens?: { accessToken: string; refreshToken: string } | undefined; sessionId: string }): Pair => ({
    access: r.tokens!.accessToken,
    refresh: r.tokens!.refreshToken,
    sessionId: r.sessionId,
  });
  return {
    kind,
    async issue(who, req) {
      return pair(await tokens.issue({ client: DEVICE, ...req }, headersOf(who)));
    },
    async refresh(who, refreshToken) {
      return pair(await tokens.refresh({ refreshToken, client: DEVICE }, headersOf(who)));
    },
    async introspect(who, token, expectedType = TokenType.ACCESS) {
      const r = await tokens.introspect({ token, expectedType }, headersOf(who));
      return { active: r.active, subject: r.subject, inactiveReason: r.inactiveReason, claims: r.claims, sensitiveClaims: r.sensitiveClaims };
    },
    close,
  };
}

type Msg = Record<string, unknown>;

function grpcJsApi(url: string): Api {
  const client = grpcJsClient("TokenService", url);
  const call = (method: string, who: Who, req: Msg) =>
    new Promise<Msg>((resolve, reject) => {
      const md = new grpc.Metadata();
      if (who !== "anonymous") md.set("authorization", `Bearer ${KEYS[who]}`);
      const fn = (client as unknown as Record<string, (r: unknown, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: Msg) => void) => void>)[method]!;
      fn.call(client, req, md, { deadline: Date.now() + 20_000 }, (err, res) => {
        if (err) reject(new ConnectError(err.details, err.code as number as Code, err.metadata.toHttp2Headers() as never, undefined, err));
        else resolve(res!);
      });
    });
  const pair = (r: Msg): Pair => {
    const t = r.tokens as Msg;
    return { access: t.accessToken as string, refresh: t.refreshToken as string, sessionId: r.sessionId as string };
  };
  return {
    kind: "grpc-js",
    async issue(who, req) {
      return pair(
        await call("issue", who, {
          subject: req.subject,
          scopes: req.scopes ?? [],
          client: DEVICE,
          extraClaims: req.extraClaims ? toGrpcStruct(req.extraClaims) : null,
          sensitiveClaims: req.sensitiveClaims ? toGrpcStruct(req.sensitiveClaims) : null,
        }),
      );
    },
    async refresh(who, refreshToken) {
      return pair(await call("refresh", who, { refreshToken, client: DEVICE }));
    },
    async introspect(who, token, expectedType = TokenType.ACCESS) {
      const r = await call("introspect", who, { token, expectedType, audience: "" });
      return {
        active: r.active as boolean,
        subject: r.subject as string,
        inactiveReason: r.inactiveReason as InactiveReason,
        claims: fromGrpcStruct(r.claims),
        sensitiveClaims: fromGrpcStruct(r.sensitiveClaims),
      };
    },
    close: () => client.close(),
  };
}

/** The call's error (fails the test if it succeeds). */
async function failure(p: Promise<unknown>): Promise<ConnectError> {
  return p.then(
    () => expect.fail("expected the call to fail, but it succeeded"),
    (e: unknown) => ConnectError.from(e),
  );
}

/** The field a BadRequest names: from connect's details, or from grpc-js's grpc-status-details-bin. */
function badRequestField(err: ConnectError): string | undefined {
  return err.findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field;
}

let seq = 0;
const subjectOf = (label: string) => `patient-${label}-${++seq}-${randomUUID().slice(0, 8)}`;
const payloadText = (token: string) => Buffer.from(token.split(".")[1]!, "base64url").toString("utf8");

let dir: string;
let callersFile: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tessera-sensitive-"));
  callersFile = join(dir, "callers.json");
  await writeFile(callersFile, JSON.stringify(CALLERS));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

// -------------------------------------------------------------------------------------------------------------------

describe("an authority with a claims key and a callers file", () => {
  let server: StartedServer;
  beforeAll(async () => {
    server = await startServer({ TESSERA_CALLERS_FILE: callersFile, TESSERA_CLAIMS_KEY: b64(K1) });
  });
  afterAll(async () => {
    await server?.close();
  });

  describe.each(KINDS)("over %s", (kind) => {
    let c: Api;
    beforeAll(() => {
      c = api(kind, server.url);
    });
    afterAll(() => c?.close());

    it("the bearer's tokens show no sensitive claim in clear, neither value nor name: only a JWE naming the claims key", async () => {
      const issued = await c.issue("gateway", { subject: subjectOf("clear"), extraClaims: EXTRA, sensitiveClaims: SENSITIVE });
      const access = decodeJwt(issued.access);
      const refresh = decodeJwt(issued.refresh) as { grant: Record<string, unknown> };
      for (const text of HIDDEN_TEXTS) {
        expect(payloadText(issued.access)).not.toContain(text);
        expect(payloadText(issued.refresh)).not.toContain(text);
        expect(JSON.stringify(access)).not.toContain(text);
      }
      expect(access).toMatchObject(EXTRA);
      const jwe = access.sensitive_claims as string;
      expect(jwe.split(".")).toHaveLength(5);
      expect(decodeProtectedHeader(jwe)).toEqual({ alg: "dir", enc: "A256GCM", kid: claimsKeyId(K1) });
      expect(refresh.grant.enc).toBe(jwe); // the refresh token carries the same sealed claims, never in clear
      expect(refresh.grant.ext).toEqual(EXTRA);
    });

    it("Introspect: decrypted for a caller with introspect.sensitive; the same answer without them for one without; never the JWE in claims", async () => {
      const subject = subjectOf("introspect");
      const issued = await c.issue("gateway", { subject, extraClaims: EXTRA, sensitiveClaims: SENSITIVE });
      const clinic = await c.introspect("clinic", issued.access);
      expect(clinic).toMatchObject({ active: true, subject, claims: EXTRA, sensitiveClaims: SENSITIVE });
      const billing = await c.introspect("billing", issued.access);
      expect(billing).toEqual({ ...clinic, sensitiveClaims: undefined });
      expect(billing.claims).toEqual(EXTRA);
      for (const answer of [clinic, billing]) expect(answer.claims).not.toHaveProperty("sensitive_claims");
      // A token without sensitive claims: nothing for anyone.
      const plain = await c.issue("gateway", { subject, extraClaims: EXTRA });
      expect(await c.introspect("clinic", plain.access)).toMatchObject({ active: true, claims: EXTRA, sensitiveClaims: undefined });
      // introspect.sensitive alone opens no RPC: Introspect still needs introspect.
      const denied = await failure(c.introspect("sensitive-only", issued.access));
      expect([denied.code, denied.rawMessage]).toEqual([Code.PermissionDenied, "caller sensitive-only may not call TokenService.Introspect"]);
      // A refresh token's introspection reports no claims, sensitive or not (as ever for extra claims).
      expect(await c.introspect("clinic", issued.refresh, TokenType.REFRESH)).toMatchObject({ active: true, sensitiveClaims: undefined });
    });

    it("Refresh keeps them: the successor access token, and after a second refresh", async () => {
      const subject = subjectOf("refresh");
      const issued = await c.issue("gateway", { subject, extraClaims: EXTRA, sensitiveClaims: SENSITIVE });
      const first = await c.refresh("gateway", issued.refresh);
      const second = await c.refresh("gateway", first.refresh);
      for (const pair of [first, second]) {
        expect(pair.sessionId).toBe(issued.sessionId);
        for (const text of HIDDEN_TEXTS) {
          expect(payloadText(pair.access)).not.toContain(text);
          expect(payloadText(pair.refresh)).not.toContain(text);
        }
        expect(await c.introspect("clinic", pair.access)).toMatchObject({ active: true, subject, claims: EXTRA, sensitiveClaims: SENSITIVE });
        expect((await c.introspect("billing", pair.access)).sensitiveClaims).toBeUndefined();
      }
      // Under the same key the sealed claims go on as they are (no new encryption for a refresh).
      expect(decodeJwt(second.access).sensitive_claims).toBe(decodeJwt(issued.access).sensitive_claims);
      expect(await c.introspect("clinic", issued.refresh, TokenType.REFRESH)).toMatchObject({ active: false, inactiveReason: InactiveReason.ROTATED });
    });

    it("bad sensitive claims are INVALID_ARGUMENT naming the field, as for extra_claims; nothing is issued", async () => {
      const cases: [JsonObject, string][] = [
        [{ note: "line\nbreak" }, "sensitive_claims.note"],
        [{ deep: { list: ["ok", "bell\u0007"] } }, "sensitive_claims.deep.list[1]"],
        [{ "": "empty name" }, "sensitive_claims"],
        [{ big: "x".repeat(4096) }, "sensitive_claims"],
        [{ sub: "someone-else" }, "sensitive_claims"],
        [{ sensitive_claims: "eyJ.forged" }, "sensitive_claims"],
        [{ tenant: "clash with extra_claims" }, "sensitive_claims"],
      ];
      if (kind !== "connect-h1") cases.push([{ score: Number.NaN }, "sensitive_claims.score"]); // binary protobuf carries NaN
      for (const [sensitiveClaims, field] of cases) {
        const err = await failure(c.issue("gateway", { subject: subjectOf("bad"), extraClaims: EXTRA, sensitiveClaims }));
        expect(Code[err.code], `${JSON.stringify(sensitiveClaims).slice(0, 60)}: ${err.rawMessage}`).toBe(Code[Code.InvalidArgument]);
        expect(err.rawMessage.startsWith(field), err.rawMessage).toBe(true);
        if (kind !== "grpc-js") expect(badRequestField(err)).toBe(field);
      }
      // An extra claim may not take the JWE's name either.
      const err = await failure(c.issue("gateway", { subject: subjectOf("bad"), extraClaims: { sensitive_claims: "eyJ.forged" } }));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toMatch(/^extra_claims: extra claim "sensitive_claims" is reserved$/);
    });
  });
});

describe("an authority without a claims key", () => {
  let server: StartedServer;
  beforeAll(async () => {
    server = await startServer({ TESSERA_CALLERS_FILE: callersFile });
  });
  afterAll(async () => {
    await server?.close();
  });

  it.each(KINDS)("over %s: Issue with sensitive claims is FAILED_PRECONDITION naming TESSERA_CLAIMS_KEY; without them it works as ever", async (kind) => {
    const c = api(kind, server.url);
    try {
      const subject = subjectOf("nokey");
      const err = await failure(c.issue("gateway", { subject, extraClaims: EXTRA, sensitiveClaims: SENSITIVE }));
      expect(err.code).toBe(Code.FailedPrecondition);
      expect(err.rawMessage).toBe("sensitive_claims need a claims key: set TESSERA_CLAIMS_KEY (or TESSERA_CLAIMS_KEY_FILE)");
      expect((await server.app.authority.listSessions(subject)).length).toBe(0);
      const issued = await c.issue("gateway", { subject, extraClaims: EXTRA });
      expect(decodeJwt(issued.access)).not.toHaveProperty("sensitive_claims");
      expect(await c.introspect("clinic", issued.access)).toMatchObject({ active: true, claims: EXTRA, sensitiveClaims: undefined });
    } finally {
      c.close();
    }
  });
});

describe("open mode: the anonymous caller holds every permission, introspect.sensitive included", () => {
  it("gets them decrypted", async () => {
    const server = await startServer({ TESSERA_CLAIMS_KEY: b64(K1) });
    const c = api("connect-grpc", server.url);
    try {
      const issued = await c.issue("anonymous", { subject: subjectOf("open"), sensitiveClaims: SENSITIVE });
      expect(await c.introspect("anonymous", issued.access)).toMatchObject({ active: true, claims: {}, sensitiveClaims: SENSITIVE });
    } finally {
      c.close();
      await server.close();
    }
  });
});

describe("rotating the claims key: three authorities on one Redis", () => {
  let scope: RedisScope;
  /** K1 only; K2 with K1 as the previous key; K2 only (K1 dropped too early, or a wrong key). */
  let old: StartedServer;
  let rotated: StartedServer;
  let fresh: StartedServer;
  const clients: Api[] = [];
  const at = (server: StartedServer, kind: Kind = "grpc-js") => {
    const c = api(kind, server.url);
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    scope = redisScope(inject("redisUrl"), "sensitive");
    const env = { ...scope.env, TESSERA_CALLERS_FILE: callersFile };
    old = await startServer({ ...env, TESSERA_CLAIMS_KEY: b64(K1) });
    rotated = await startServer({ ...env, TESSERA_CLAIMS_KEY: K2.toString("base64url"), TESSERA_CLAIMS_KEY_PREVIOUS: b64(K1) });
    fresh = await startServer({ ...env, TESSERA_CLAIMS_KEY: b64(K2) });
  }, 60_000);
  afterAll(async () => {
    for (const c of clients) c.close();
    await Promise.all([old, rotated, fresh].map((s) => s?.close()));
    await scope?.cleanup();
  });

  it("with TESSERA_CLAIMS_KEY_PREVIOUS old tokens still decrypt; without it, FAILED_PRECONDITION naming the key (never wrong claims)", async () => {
    const subject = subjectOf("rotate");
    const issued = await at(old, "connect-grpc").issue("gateway", { subject, extraClaims: EXTRA, sensitiveClaims: SENSITIVE });
    expect(decodeProtectedHeader(decodeJwt(issued.access).sensitive_claims as string).kid).toBe(claimsKeyId(K1));
    for (const kind of KINDS) {
      expect(await at(rotated, kind).introspect("clinic", issued.access)).toMatchObject({ active: true, subject, sensitiveClaims: SENSITIVE });
      const err = await failure(at(fresh, kind).introspect("clinic", issued.access));
      expect(err.code).toBe(Code.FailedPrecondition);
      expect(err.rawMessage).toContain(`claims key ${claimsKeyId(K1)}, which is neither TESSERA_CLAIMS_KEY nor TESSERA_CLAIMS_KEY_PREVIOUS`);
      // A caller that may not read them is answered as ever.
      expect(await at(fresh, kind).introspect("billing", issued.access)).toMatchObject({ active: true, subject, claims: EXTRA, sensitiveClaims: undefined });
    }
  });

  it("a refresh under the rotated key seals them again under the new one; a process that cannot open them refuses before rotating", async () => {
    const subject = subjectOf("reseal");
    const issued = await at(old).issue("gateway", { subject, sensitiveClaims: SENSITIVE });
    // No key of `fresh` opens them: FAILED_PRECONDITION, and the refresh token was not used up.
    const err = await failure(at(fresh).refresh("gateway", issued.refresh));
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(err.rawMessage).toContain(claimsKeyId(K1));
    expect(await at(rotated).introspect("clinic", issued.refresh, TokenType.REFRESH)).toMatchObject({ active: true });

    const next = await at(rotated).refresh("gateway", issued.refresh);
    expect(decodeProtectedHeader(decodeJwt(next.access).sensitive_claims as string).kid).toBe(claimsKeyId(K2));
    expect((decodeJwt(next.refresh) as { grant: { enc: string } }).grant.enc).toBe(decodeJwt(next.access).sensitive_claims);
    // Now the new key alone reads them, and the old one alone does not.
    expect(await at(fresh).introspect("clinic", next.access)).toMatchObject({ active: true, sensitiveClaims: SENSITIVE });
    expect((await failure(at(old).introspect("clinic", next.access))).code).toBe(Code.FailedPrecondition);
    const last = await at(fresh).refresh("gateway", next.refresh);
    expect(await at(rotated).introspect("clinic", last.access)).toMatchObject({ active: true, sensitiveClaims: SENSITIVE });
  });

  it("a wrong key never yields claims: FAILED_PRECONDITION", async () => {
    const wrong = await startServer({ ...scope.env, TESSERA_CALLERS_FILE: callersFile, TESSERA_CLAIMS_KEY: b64(K3) });
    try {
      const issued = await at(rotated).issue("gateway", { subject: subjectOf("wrong"), sensitiveClaims: SENSITIVE });
      for (const kind of KINDS) {
        expect((await failure(at(wrong, kind).introspect("clinic", issued.access))).code).toBe(Code.FailedPrecondition);
      }
    } finally {
      await wrong.close();
    }
  });
});

describe("a sidecar (no claims key): answers without them, for every caller", () => {
  let server: StartedServer;
  let sidecar: Sidecar;
  let sidecarUrl: string;
  beforeAll(async () => {
    server = await startServer({ TESSERA_CLAIMS_KEY: b64(K1) }); // open mode: the sidecar's credential may read them
    sidecar = await createSidecar(loadSidecarConfig({ TESSERA_AUTHORITY_URL: server.url, TESSERA_LISTEN: "127.0.0.1:0" }), {
      logger: (await import("../../src/observability/logger.js")).createLogger("silent"),
    });
    const { port } = await sidecar.listen();
    sidecarUrl = `http://127.0.0.1:${port}`;
  });
  afterAll(async () => {
    await sidecar?.close();
    await server?.close();
  });

  it.each(KINDS)("over %s: active, its extra claims, no sensitive claims and no JWE; a refresh token passed on to the authority alike", async (kind) => {
    const authority = api(kind, server.url);
    const c = api(kind, sidecarUrl);
    try {
      const issued = await authority.issue("anonymous", { subject: subjectOf("sidecar"), extraClaims: EXTRA, sensitiveClaims: SENSITIVE });
      expect((await authority.introspect("anonymous", issued.access)).sensitiveClaims).toEqual(SENSITIVE);
      const answer = await until(async () => {
        const a = await c.introspect("anonymous", issued.access).catch(() => undefined); // UNAVAILABLE until its snapshot is in
        return a?.active ? a : undefined;
      }, 15_000, "the sidecar to serve");
      expect(answer).toMatchObject({ active: true, claims: EXTRA, sensitiveClaims: undefined });
      expect(answer.claims).not.toHaveProperty("sensitive_claims");
      expect(await c.introspect("anonymous", issued.refresh, TokenType.REFRESH)).toMatchObject({ active: true, sensitiveClaims: undefined });
    } finally {
      authority.close();
      c.close();
    }
  });
});
