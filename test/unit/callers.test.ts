/**
 * The callers file and TLS settings are validated at start with errors that name the exact place; API keys are found
 * by constant-time hash comparison over every entry; a certificate names its URI SAN, else its CN. A caller's
 * `subjects` are validated, compiled once into the Caller, and matched exactly or by prefix.
 */
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createContextValues, type HandlerContext } from "@connectrpc/connect";
import type { DescMethod } from "@bufbuild/protobuf";
import { KeyService } from "../../gen/tessera/v1/key_pb.js";
import { TokenService } from "../../gen/tessera/v1/token_pb.js";
import type { Call } from "../../src/api/pipeline.js";
import { callerAuth, matchApiKey, METHOD_PERMISSIONS, outOfScopeMessage, requireSubject, scopeOf, type ApiKeyEntry } from "../../src/api/auth.js";
import type { AuditInput } from "../../src/domain/audit-trail.js";
import { ANSWER_PERMISSIONS, PERMISSIONS } from "../../src/domain/permissions.js";
import { parseCallers } from "../../src/config/callers.js";
import { ConfigError, loadConfig } from "../../src/config/config.js";
import { certificateIdentity, peerIdentity, subjectAltNames } from "../../src/server/peer.js";

const sha = (key: string) => createHash("sha256").update(key).digest("hex");
const dir = mkdtempSync(join(tmpdir(), "tessera-callers-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
function callersFile(content: unknown): string {
  const path = join(dir, `callers-${files++}.json`);
  writeFileSync(path, typeof content === "string" ? content : JSON.stringify(content));
  return path;
}

/** The message loadConfig throws for this callers file (and other env), or "ok". */
function errorFor(content: unknown, env: Record<string, string> = {}): string {
  try {
    loadConfig({ TESSERA_CALLERS_FILE: callersFile(content), ...env });
    return "ok";
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
}

const billing = { name: "billing", api_keys: [{ sha256: sha("k1") }], permissions: ["introspect"] };
const gateway = { name: "gateway", mtls: { uri: "spiffe://prod/gateway" }, permissions: ["issue"] };

describe("callers file", () => {
  it("parses names, permissions, key digests and certificate identities", () => {
    const callers = parseCallers({
      callers: [billing, { name: "ops", mtls: { cn: "ops-console" }, api_keys: [{ sha256: sha("k2").toUpperCase() }], permissions: [] }],
    });
    expect(callers.map((c) => c.name)).toEqual(["billing", "ops"]);
    expect(callers[0]?.permissions).toEqual(["introspect"]);
    expect(callers[0]?.apiKeySha256[0]?.toString("hex")).toBe(sha("k1"));
    expect(callers[1]?.apiKeySha256[0]?.toString("hex")).toBe(sha("k2"));
    expect(callers[1]?.mtls).toEqual({ kind: "cn", value: "ops-console" });
    expect(Object.isFrozen(callers)).toBe(true);
  });

  it("the example file in docs/ is valid", () => {
    expect(() => loadConfig({ TESSERA_CALLERS_FILE: "docs/callers.example.json" })).toThrow(
      // it has mtls callers, so it needs a client CA; everything before that check passed
      /callers\[1\]\.mtls: needs TESSERA_TLS_CLIENT_CA/,
    );
  });

  it.each<[string, unknown, string]>([
    ["a bad permission", { callers: [billing, gateway, { ...billing, name: "x", api_keys: [{ sha256: sha("k3") }], permissions: ["isue"] }] }, 'callers[2].permissions[0]: "isue" is not a permission'],
    ["a non-string permission", { callers: [{ ...billing, permissions: ["introspect", 7] }] }, "callers[0].permissions[1]: 7 is not a permission"],
    ["a repeated permission", { callers: [{ ...billing, permissions: ["introspect", "introspect"] }] }, 'callers[0].permissions[1]: "introspect" is listed twice'],
    ["permissions missing", { callers: [{ name: "a", api_keys: [{ sha256: sha("a") }] }] }, "callers[0].permissions: must be an array"],
    ["a duplicate name", { callers: [billing, { ...billing, api_keys: [{ sha256: sha("k9") }] }] }, 'callers[1].name: "billing" is already used at callers[0].name'],
    ["a bad name", { callers: [{ ...billing, name: "bill ing" }] }, "callers[0].name: must be 1 to 64 letters"],
    ["the reserved name", { callers: [{ ...billing, name: "anonymous" }] }, 'callers[0].name: "anonymous" is reserved'],
    ["a hash used twice", { callers: [billing, { ...gateway, api_keys: [{ sha256: sha("k1").toUpperCase() }] }] }, "callers[1].api_keys[0].sha256: this hash is already used at callers[0].api_keys[0].sha256"],
    ["a short hash", { callers: [{ ...billing, api_keys: [{ sha256: "abc" }] }] }, "callers[0].api_keys[0].sha256: must be the SHA-256 of the key as 64 hex digits"],
    ["a plaintext key", { callers: [{ ...billing, api_keys: [{ key: "secret" }] }] }, "callers[0].api_keys[0].key: unknown property"],
    ["no identity", { callers: [{ name: "a", permissions: [] }] }, 'callers[0]: needs an identity: "api_keys" or "mtls"'],
    ["an empty api_keys list", { callers: [{ name: "a", api_keys: [], permissions: [] }] }, "callers[0]: needs an identity"],
    ["mtls with both uri and cn", { callers: [{ ...gateway, mtls: { uri: "spiffe://a", cn: "a" } }] }, 'callers[0].mtls: needs exactly one of "uri" or "cn"'],
    ["mtls uri that is no URI", { callers: [{ ...gateway, mtls: { uri: "gateway" } }] }, 'callers[0].mtls.uri: "gateway" is not a URI'],
    ["an identity used twice", { callers: [gateway, { ...gateway, name: "g2" }] }, 'callers[1].mtls.uri: "spiffe://prod/gateway" is already used at callers[0].mtls.uri'],
    ["a typo in a property", { callers: [{ ...billing, permission: ["issue"] }] }, "callers[0].permission: unknown property"],
    ["no callers", { callers: [] }, "callers: needs at least one caller"],
    ["not an object", [billing], "(root): must be an object"],
    ["a typo at the top", { caller: [billing] }, "caller: unknown property"],
  ])("%s: the error names the place", (_what, content, message) => {
    expect(errorFor(content)).toContain(`TESSERA_CALLERS_FILE: ${message}`);
  });

  it("names the variable when the file is missing or not JSON", () => {
    expect(() => loadConfig({ TESSERA_CALLERS_FILE: join(dir, "nope.json") })).toThrow(/^TESSERA_CALLERS_FILE: cannot read .*ENOENT/);
    expect(errorFor("{ callers: ")).toMatch(/^TESSERA_CALLERS_FILE: ".*" is not JSON/);
  });

  it("mtls callers need a client CA", () => {
    expect(errorFor({ callers: [billing, gateway] })).toContain(
      "TESSERA_CALLERS_FILE: callers[1].mtls: needs TESSERA_TLS_CLIENT_CA",
    );
  });
});

describe("open mode", () => {
  it("without a callers file, runs open on loopback", () => {
    const c = loadConfig({ TESSERA_LISTEN: "127.0.0.1:0" });
    expect(c.access.callers).toBeUndefined();
    expect(c.access.allowUnauthenticated).toBe(false);
  });

  it.each(["0.0.0.0:8080", "[::]:8080", "10.0.0.1:8080"])("refuses %s without callers unless explicitly allowed", (listen) => {
    expect(() => loadConfig({ TESSERA_LISTEN: listen })).toThrow(
      /^TESSERA_CALLERS_FILE: is not set and TESSERA_LISTEN .* set TESSERA_ALLOW_UNAUTHENTICATED=true/,
    );
    expect(loadConfig({ TESSERA_LISTEN: listen, TESSERA_ALLOW_UNAUTHENTICATED: "true" }).access.allowUnauthenticated).toBe(true);
  });

  it("TESSERA_ALLOW_UNAUTHENTICATED is true or false, and not together with a callers file", () => {
    expect(() => loadConfig({ TESSERA_ALLOW_UNAUTHENTICATED: "yes" })).toThrow(/^TESSERA_ALLOW_UNAUTHENTICATED: "yes" is not true or false/);
    expect(errorFor({ callers: [billing] }, { TESSERA_ALLOW_UNAUTHENTICATED: "true" })).toBe(
      "TESSERA_ALLOW_UNAUTHENTICATED: cannot be true when TESSERA_CALLERS_FILE is set",
    );
    expect(loadConfig({ TESSERA_LISTEN: "0.0.0.0:1", TESSERA_CALLERS_FILE: callersFile({ callers: [billing] }) }).access.callers).toHaveLength(1);
  });
});

describe("TLS settings", () => {
  const pem = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };

  it.each<[Record<string, string>, RegExp]>([
    [{ TESSERA_TLS_CERT: "/x.crt" }, /^TESSERA_TLS_KEY: must be set together with TESSERA_TLS_CERT/],
    [{ TESSERA_TLS_KEY: "/x.key" }, /^TESSERA_TLS_CERT: must be set together with TESSERA_TLS_KEY/],
    [{ TESSERA_TLS_CLIENT_CA: "/ca.crt" }, /^TESSERA_TLS_CLIENT_CA: needs TLS/],
    [{ TESSERA_TLS_CERT: "/nonexistent.crt", TESSERA_TLS_KEY: "/x.key" }, /^TESSERA_TLS_CERT: cannot read "\/nonexistent.crt" \(ENOENT\)/],
  ])("%o is refused", (env, message) => {
    expect(() => loadConfig(env)).toThrow(message);
  });

  it("refuses a file that is not PEM", () => {
    const path = pem("not.pem", "hello");
    expect(() => loadConfig({ TESSERA_TLS_CERT: path, TESSERA_TLS_KEY: path })).toThrow(/^TESSERA_TLS_CERT: ".*" is not a PEM file/);
  });
});

describe("API key lookup", () => {
  const entries: ApiKeyEntry<string>[] = ["a", "b", "c"].map((k) => ({ sha256: Buffer.from(sha(`key-${k}`), "hex"), caller: k }));

  it("finds the caller whose key's SHA-256 matches", () => {
    expect(matchApiKey(entries, "key-a")).toBe("a");
    expect(matchApiKey(entries, "key-c")).toBe("c");
    expect(matchApiKey(entries, "key-d")).toBeUndefined();
    expect(matchApiKey(entries, "")).toBeUndefined();
    expect(matchApiKey([], "key-a")).toBeUndefined();
  });

  it("compares against every digest, even after a match", () => {
    let reads = 0;
    const counted = entries.map((e) => ({
      caller: e.caller,
      get sha256() {
        reads++;
        return e.sha256;
      },
    }));
    expect(matchApiKey(counted, "key-a")).toBe("a");
    expect(reads).toBe(3);
  });
});

describe("client certificate identity", () => {
  it.each<[string, Parameters<typeof certificateIdentity>[0], ReturnType<typeof certificateIdentity>]>([
    ["the URI SAN", { subject: { CN: "gw" }, subjectaltname: "DNS:gw.internal, URI:spiffe://prod/gateway" }, { kind: "uri", value: "spiffe://prod/gateway" }],
    ["a quoted URI SAN", { subjectaltname: 'DNS:a, URI:"spiffe://prod/a,b", IP Address:10.0.0.1' }, { kind: "uri", value: "spiffe://prod/a,b" }],
    ["the CN without a URI SAN", { subject: { CN: "ops-console" }, subjectaltname: "DNS:ops.internal" }, { kind: "cn", value: "ops-console" }],
    ["the CN without any SAN", { subject: { CN: "ops-console" } }, { kind: "cn", value: "ops-console" }],
    ["nothing for two URI SANs", { subject: { CN: "x" }, subjectaltname: "URI:spiffe://a, URI:spiffe://b" }, undefined],
    ["nothing for two CNs", { subject: { CN: ["a", "b"] } }, undefined],
    ["nothing for no certificate", {}, undefined],
  ])("%s", (_what, cert, identity) => {
    expect(certificateIdentity(cert)).toEqual(identity);
  });

  it("parses Node's subjectaltname format", () => {
    expect(subjectAltNames('DNS:localhost, IP Address:127.0.0.1, URI:"a\\"b", email:x@y')).toEqual([
      { type: "DNS", value: "localhost" },
      { type: "IP Address", value: "127.0.0.1" },
      { type: "URI", value: 'a"b' },
      { type: "email", value: "x@y" },
    ]);
    expect(subjectAltNames("")).toEqual([]);
    expect(subjectAltNames('URI:"unterminated')).toEqual([]);
  });

  it("counts only a certificate the server verified, over HTTP/1.1 and HTTP/2", () => {
    const cert = { subject: { CN: "ops-console" } };
    const socket = (authorized: boolean) => ({ authorized, getPeerCertificate: () => cert });
    const h1 = (authorized: boolean) => ({ socket: socket(authorized) }) as unknown as Parameters<typeof peerIdentity>[0];
    const h2 = (authorized: boolean) => ({ stream: { session: { socket: socket(authorized) } } }) as unknown as Parameters<typeof peerIdentity>[0];
    expect(peerIdentity(h1(true))).toEqual({ kind: "cn", value: "ops-console" });
    expect(peerIdentity(h2(true))).toEqual({ kind: "cn", value: "ops-console" });
    expect(peerIdentity(h1(false))).toBeUndefined();
    expect(peerIdentity(h2(false))).toBeUndefined();
    expect(peerIdentity({ socket: {} } as unknown as Parameters<typeof peerIdentity>[0])).toBeUndefined();
  });
});

describe("callerAuth", () => {
  /** Runs the interceptor on a bare request for service/method; resolves with the caller name or the error code. */
  /** The generated descriptor of a real RPC, or a look-alike of one the table does not have. */
  const method = (service: string, name: string): DescMethod => {
    const real = [TokenService, KeyService].find((s) => s.typeName === service)?.methods.find((m) => m.name === name);
    return real ?? ({ name, parent: { typeName: service, name: service.split(".").at(-1) } } as unknown as DescMethod);
  };
  async function outcome(auth: ReturnType<typeof callerAuth>, service: string, name: string, authorization?: string) {
    const call = {
      method: method(service, name),
      header: new Headers(authorization ? { authorization } : {}),
      values: createContextValues(),
      message: undefined,
      signal: new AbortController().signal,
    } as unknown as Call;
    try {
      return auth(call)?.name ?? "(no caller)";
    } catch (err) {
      return Code[ConnectError.from(err).code];
    }
  }
  const full = callerAuth({
    callers: parseCallers({ callers: [{ name: "full", api_keys: [{ sha256: sha("k") }], permissions: [...PERMISSIONS] }] }),
  });

  it("maps every permission to at least one RPC, but those that only widen an RPC's answer (introspect.sensitive)", () => {
    const used = new Set(METHOD_PERMISSIONS.values());
    expect(ANSWER_PERMISSIONS).toEqual(["introspect.sensitive"]);
    expect(ANSWER_PERMISSIONS.filter((p) => used.has(p))).toEqual([]);
    expect([...used, ...ANSWER_PERMISSIONS].sort()).toEqual([...PERMISSIONS].sort());
  });

  it("keys the table by the generated descriptors: a look-alike of a real RPC is not in it", async () => {
    const lookAlike = { name: "Issue", parent: { typeName: "tessera.v1.TokenService", name: "TokenService" } } as unknown as DescMethod;
    expect(METHOD_PERMISSIONS.get(lookAlike)).toBeUndefined();
    expect(METHOD_PERMISSIONS.get(TokenService.method.issue)).toBe("issue");
  });

  it("denies an RPC missing from the table, even to a caller with every permission, even in open mode", async () => {
    expect(await outcome(full, "tessera.v1.AuditService", "List", "Bearer k")).toBe("PermissionDenied");
    expect(await outcome(callerAuth({ open: true }), "tessera.v1.AuditService", "List")).toBe("PermissionDenied");
    expect(await outcome(full, "tessera.v1.TokenService", "Mint", "Bearer k")).toBe("PermissionDenied");
    expect(await outcome(full, "tessera.v1.TokenService", "Issue", "Bearer k")).toBe("full");
  });

  it("lets health and reflection through without credentials", async () => {
    for (const service of ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]) {
      expect(await outcome(full, service, "Check")).toBe("(no caller)");
    }
    expect(await outcome(full, "grpc.health.v2.Health", "Check")).toBe("Unauthenticated");
  });

  it("open mode: every mapped RPC is 'anonymous'", async () => {
    expect(await outcome(callerAuth({ open: true }), "tessera.v1.KeyService", "RotateKeys")).toBe("anonymous");
  });
});

describe("subjects: which subjects a caller may act on", () => {
  const tenant = (subjects: unknown) => ({ callers: [billing, { ...gateway, mtls: undefined, api_keys: [{ sha256: sha("t") }], subjects }] });
  const compiled = (subjects: unknown) => parseCallers(tenant(subjects))[1]!.subjects;

  it("absent, or '*' alone (even among others): every subject, no scope at all", () => {
    expect(parseCallers({ callers: [billing] })[0]!.subjects).toBeUndefined();
    expect(compiled(["*"])).toBeUndefined();
    expect(compiled(["tenant-a:*", "*"])).toBeUndefined();
  });

  it("exact subjects match only themselves; a pattern ending in '*' matches what starts with its prefix", () => {
    const scope = compiled(["tenant-b:*", "ops@tenant-b", "x.*"])!;
    expect(scope.patterns).toEqual(["tenant-b:*", "ops@tenant-b", "x.*"]);
    for (const subject of ["tenant-b:alice", "tenant-b:", "tenant-b:*", "tenant-b::deep:er", "ops@tenant-b", "x.", "x.y", "x.*z"]) {
      expect(scope.allows(subject), subject).toBe(true);
    }
    for (const subject of ["tenant-b", "Tenant-b:alice", "tenant-a:alice", " tenant-b:alice", "ops@tenant-b2", "ops@tenant-", "xy", "x", ""]) {
      expect(scope.allows(subject), subject).toBe(false);
    }
  });

  it("exact subjects only: no prefix matching at all", () => {
    const scope = compiled(["alice", "bob"])!;
    expect(["alice", "bob"].map(scope.allows)).toEqual([true, true]);
    expect(["alic", "alicex", "bo", ""].map(scope.allows)).toEqual([false, false, false, false]);
  });

  it("is compiled once, frozen, and carried by every Caller the caller's credentials resolve to", async () => {
    const specs = parseCallers({
      callers: [
        { name: "tenant-a", api_keys: [{ sha256: sha("ka1") }, { sha256: sha("ka2") }], permissions: ["issue"], subjects: ["tenant-a:*"] },
        { name: "root", api_keys: [{ sha256: sha("kr") }], permissions: ["issue"] },
      ],
    });
    expect(Object.isFrozen(specs[0]!.subjects)).toBe(true);
    expect(Object.isFrozen(specs[0]!.subjects!.patterns)).toBe(true);
    const auth = callerAuth({ callers: specs });
    const who = (key: string) => {
      const call = {
        method: TokenService.method.issue,
        header: new Headers({ authorization: `Bearer ${key}` }),
        values: createContextValues(),
        message: undefined,
        signal: new AbortController().signal,
      } as unknown as Call;
      return auth(call)!;
    };
    const [a1, a2, root] = [who("ka1"), who("ka2"), who("kr")];
    expect(a1.scope?.allows("tenant-a:alice")).toBe(true);
    expect(a1.scope?.allows("tenant-b:alice")).toBe(false);
    expect(a1.scope).toBe(a2.scope); // one scope per caller, built with callerAuth, not per call
    expect(who("ka1").scope).toBe(a1.scope);
    expect(root.scope).toBeUndefined(); // unscoped: nothing to ask on the hot path
    const open = { method: TokenService.method.issue, header: new Headers(), values: createContextValues() } as unknown as Call;
    expect(callerAuth({ open: true })(open)?.scope).toBeUndefined();
  });

  it.each<[string, unknown, string]>([
    ["not an array", "tenant-b:*", 'callers[1].subjects: must be an array of subject patterns (exact subjects, or prefixes ending in "*")'],
    ["an empty list", [], 'callers[1].subjects: must list at least one pattern (leave "subjects" out for every subject)'],
    ["too many patterns", Array.from({ length: 257 }, (_, i) => `s${i}`), "callers[1].subjects: has 257 patterns, more than 256"],
    ["an empty pattern", ["a", ""], "callers[1].subjects[1]: must be a non-empty string"],
    ["a non-string pattern", [7], "callers[1].subjects[0]: must be a non-empty string"],
    ["null", [null], "callers[1].subjects[0]: must be a non-empty string"],
    ["a '*' inside", ["tenant-*:x"], 'callers[1].subjects[0]: "tenant-*:x": "*" may only end a pattern'],
    ["two '*'", ["a", "tenant-b:**"], 'callers[1].subjects[1]: "tenant-b:**": "*" may only end a pattern'],
    ["a leading '*' (no suffix patterns)", ["*@tenant-b"], 'callers[1].subjects[0]: "*@tenant-b": "*" may only end a pattern'],
    ["a control character", ["tenant-b:\n*"], "callers[1].subjects[0]: contains control characters or invalid Unicode"],
    ["a bidi override", ["tenant-\u202eb"], "callers[1].subjects[0]: contains control characters or invalid Unicode"],
    ["a lone surrogate", ["a\ud800"], "callers[1].subjects[0]: contains control characters or invalid Unicode"],
    ["too long", ["x".repeat(257)], "callers[1].subjects[0]: is longer than 256 characters (the longest subject)"],
    ["too long before the '*'", ["x".repeat(257) + "*"], "callers[1].subjects[0]: is longer than 256 characters"],
    ["a pattern twice", ["a:*", "b", "a:*"], 'callers[1].subjects[2]: "a:*" is already used at callers[1].subjects[0]'],
  ])("%s: the error names the place", (_what, subjects, message) => {
    expect(errorFor(tenant(subjects))).toContain(`TESSERA_CALLERS_FILE: ${message}`);
  });

  it("the example file's scoped caller parses to its scope", () => {
    const specs = parseCallers(JSON.parse(readFileSync("docs/callers.example.json", "utf8")));
    const admin = specs.find((c) => c.name === "tenant-b-admin")!;
    expect(admin.subjects?.patterns).toEqual(["tenant-b:*", "support@tenant-b.example"]);
    expect(["tenant-b:alice", "support@tenant-b.example"].map(admin.subjects!.allows)).toEqual([true, true]);
    expect(["tenant-a:alice", "support@tenant-a.example"].map(admin.subjects!.allows)).toEqual([false, false]);
    expect(specs.filter((c) => c.name !== "tenant-b-admin").every((c) => c.subjects === undefined)).toBe(true);
  });

  it("the longest allowed patterns load", () => {
    expect(compiled(["x".repeat(256), "y".repeat(256) + "*"])!.allows("y".repeat(256))).toBe(true);
    expect(compiled(Array.from({ length: 256 }, (_, i) => `s${i}`))!.allows("s255")).toBe(true);
  });
});

describe("requireSubject", () => {
  const specs = parseCallers({
    callers: [
      { name: "tenant-a", api_keys: [{ sha256: sha("ka") }], permissions: ["issue", "revoke"], subjects: ["tenant-a:*"] },
      { name: "root", api_keys: [{ sha256: sha("kr") }], permissions: ["issue", "revoke"] },
    ],
  });
  const recorded: AuditInput[] = [];
  const auth = callerAuth({ callers: specs }, { record: (e) => void recorded.push(e) });
  /** A handler's context after callerAuth let `key`'s caller in. */
  const ctxOf = (key: string) => {
    const values = createContextValues();
    const call = { method: TokenService.method.revoke, header: new Headers({ authorization: `Bearer ${key}` }), values, message: undefined, signal: new AbortController().signal };
    auth(call as unknown as Call);
    return { method: TokenService.method.revoke, service: TokenService, values, requestHeader: new Headers() } as unknown as HandlerContext;
  };

  it("lets a scoped caller act on its subjects, and an unscoped caller on any", () => {
    expect(() => requireSubject(ctxOf("ka"), "tenant-a:alice")).not.toThrow();
    expect(() => requireSubject(ctxOf("kr"), "tenant-b:alice")).not.toThrow();
    expect(scopeOf(ctxOf("kr"))).toBeUndefined();
  });

  it("refuses another subject PERMISSION_DENIED, saying nothing of it, and records caller_denied", () => {
    recorded.length = 0;
    const err = (() => {
      try {
        requireSubject(ctxOf("ka"), "tenant-b:alice");
      } catch (e) {
        return ConnectError.from(e);
      }
    })();
    expect(err?.code).toBe(Code.PermissionDenied);
    expect(err?.rawMessage).toBe(outOfScopeMessage("tenant-a"));
    expect(err?.rawMessage).not.toContain("tenant-b");
    expect(recorded).toEqual([
      expect.objectContaining({
        type: "caller_denied",
        subject: "tenant-b:alice",
        context: expect.objectContaining({ caller: "tenant-a" }),
        detail: expect.objectContaining({ rpc: "TokenService.Revoke", code: "permission_denied", permission: "revoke" }),
      }),
    ]);
  });

  it("an unknown target gets the very same answer as an out-of-scope one", () => {
    const ctx = ctxOf("ka");
    const unknown = scopeOf(ctx)!.refuse(ctx, { why: "no such live session" });
    expect([unknown.code, unknown.rawMessage]).toEqual([Code.PermissionDenied, outOfScopeMessage("tenant-a")]);
  });
});
