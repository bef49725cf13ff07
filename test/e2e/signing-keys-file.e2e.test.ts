/**
 * TESSERA_SIGNING_KEYS_FILE against running authorities: a file with a current and a next key signs with the current
 * one and publishes both; RotateKeys is FAILED_PRECONDITION naming the file; RevokeKey still works, its mark in the
 * store; no private key goes to the store (a Redis dump holds none); SIGHUP after editing the file (a real process)
 * takes the new key set; a bad file on SIGHUP keeps the set in use and the log says why, without key material.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createLocalJWKSet, decodeProtectedHeader, exportJWK, generateKeyPair, jwtVerify, type JWK } from "jose";
import { afterEach, describe, expect, inject, it } from "vitest";
import { KeyService, KeyState } from "../../gen/tessera/v1/key_pb.js";
import { TokenService } from "../../gen/tessera/v1/token_pb.js";
import { dumpUnder, privateKeyMaterial } from "../helpers/redis-dump.js";
import { redisScope, spawnAuthority, startServer, type RedisScope, type SpawnedAuthority, type StartedServer } from "../helpers/server.js";
import { until } from "../helpers/wait.js";

const ISSUER = "https://keys-file.test";
const dir = mkdtempSync(join(tmpdir(), "tessera-keys-file-"));
const MIN = 60_000;

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

type FileKey = JWK & Record<string, unknown>;

async function key(alg: string, kid: string, activateAt?: number): Promise<FileKey> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  return { ...(await exportJWK(privateKey)), kid, alg, ...(activateAt === undefined ? {} : { tessera_activate_at: new Date(activateAt).toISOString() }) };
}

function writeKeys(path: string, keys: FileKey[]): void {
  writeFileSync(path, JSON.stringify({ keys }));
}

const jwksOf = async (url: string) => ((await (await fetch(`${url}/.well-known/jwks.json`)).json()) as { keys: JWK[] }).keys;
const kidsOf = async (url: string) => (await jwksOf(url)).map((k) => k.kid).sort();

function clients(url: string) {
  const transport = createGrpcTransport({ baseUrl: url });
  return { tokens: createClient(TokenService, transport), keys: createClient(KeyService, transport) };
}

describe("keys from a file, on Redis", () => {
  it("one key current, one next: signing and JWKS as expected; RotateKeys refused naming the file; RevokeKey works; no private key in the store", async () => {
    const scope: RedisScope = redisScope(inject("redisUrl"), "keys-file");
    cleanups.push(() => scope.cleanup());
    const path = join(dir, "two-keys.json");
    const current = await key("ES256", "k-current", Date.now() - MIN);
    const next = await key("ES384", "k-next", Date.now() + 60 * MIN);
    writeKeys(path, [current, next]);
    // With a KEK too: it concerns keys kept in the store, and there are none.
    const env = { ...scope.env, TESSERA_ISSUER: ISSUER, TESSERA_SIGNING_KEYS_FILE: path, TESSERA_KEY_ENCRYPTION_KEY: randomBytes(32).toString("base64") };
    const srv: StartedServer = await startServer(env);
    cleanups.push(() => srv.close());
    const { tokens, keys } = clients(srv.url);

    const issued = await tokens.issue({ subject: "alice", audience: ["api"] });
    const access = issued.tokens!.accessToken;
    expect(decodeProtectedHeader(access)).toMatchObject({ kid: "k-current", alg: "ES256" });
    expect((await tokens.introspect({ token: access })).active).toBe(true);
    const published = await jwksOf(srv.url);
    expect(published.map((k) => [k.kid, k.alg, k.crv]).sort()).toEqual([["k-current", "ES256", "P-256"], ["k-next", "ES384", "P-384"]]);
    for (const k of published) expect(k).not.toHaveProperty("d");
    await expect(jwtVerify(access, createLocalJWKSet({ keys: published }), { issuer: ISSUER, audience: "api" })).resolves.toBeDefined();
    const listed = (await keys.listKeys({})).keys;
    expect(listed.map((k) => [k.kid, k.state, k.signing])).toEqual([["k-next", KeyState.NEXT, false], ["k-current", KeyState.CURRENT, true]]);

    const refused = await keys.rotateKeys({}).catch((e: unknown) => ConnectError.from(e));
    expect(refused).toBeInstanceOf(ConnectError);
    expect((refused as ConnectError).code).toBe(Code.FailedPrecondition);
    expect((refused as ConnectError).rawMessage).toContain(`TESSERA_SIGNING_KEYS_FILE (${path})`);

    // Another process on the same store, from the same file.
    const other = await startServer(env);
    cleanups.push(() => other.close());
    expect((await clients(other.url).tokens.introspect({ token: access })).active).toBe(true);

    // Nothing stored for the keys so far; a revocation stores a mark with the public key only.
    expect(privateKeyMaterial(await dumpUnder(inject("redisUrl"), scope.prefix))).toEqual([]);
    const revoked = await keys.revokeKey({ kid: "k-current", reason: "stolen" });
    expect(revoked.revoked?.state).toBe(KeyState.REVOKED);
    expect(revoked.signing).toBeUndefined(); // no other key of the file has started
    expect((await tokens.introspect({ token: access })).active).toBe(false);
    const noSigner = await tokens.issue({ subject: "bob" }).catch((e: unknown) => ConnectError.from(e));
    expect((noSigner as ConnectError).code).toBe(Code.FailedPrecondition);
    const dump = await dumpUnder(inject("redisUrl"), scope.prefix);
    expect(privateKeyMaterial(dump)).toEqual([]);
    const text = dump.join("\n");
    for (const k of [current, next]) expect(text).not.toContain(k.d as string);
    expect(text).toContain("k-current");
    // The mark reaches the other process (the revocation feed's wake-up); a process starting now would have no key
    // that can sign: it refuses to start, saying so.
    await until(async () => !(await clients(other.url).tokens.introspect({ token: access })).active, 5_000, "the revocation in the other process");
    expect(await kidsOf(other.url)).toEqual(["k-next"]);
    await expect(startServer(env)).rejects.toThrow(/^TESSERA_SIGNING_KEYS_FILE \(.*\): no key can sign now: every key in it that has started is revoked/);
  });
});

describe("SIGHUP reloads the keys file (a real process)", () => {
  it("takes the edited file's keys; a bad file keeps the keys in use and the log says why", async () => {
    const path = join(dir, "hup-keys.json");
    const a = await key("ES256", "a");
    const b = await key("EdDSA", "b");
    writeKeys(path, [a]);
    const proc: SpawnedAuthority = await spawnAuthority({ TESSERA_LOG_LEVEL: "info", TESSERA_ISSUER: ISSUER, TESSERA_SIGNING_KEYS_FILE: path });
    cleanups.push(() => proc.kill());
    const { tokens } = clients(proc.url);
    const lines = () => proc.stdout.map((l) => JSON.parse(l) as { msg: string; level: string; err?: { message: string }; kids?: string[] });
    const reloads = () => lines().filter((l) => l.msg.startsWith("signing keys file"));
    const hup = () => void proc.kill("SIGHUP");

    const before = (await tokens.issue({ subject: "alice" })).tokens!.accessToken;
    expect(decodeProtectedHeader(before).kid).toBe("a");
    expect(await kidsOf(proc.url)).toEqual(["a"]);

    // Edited: b added after a (the last key signs), then a dropped.
    writeKeys(path, [a, b]);
    hup();
    await until(() => reloads().length === 1, 5_000, "the reload's log line");
    expect(reloads()[0]).toMatchObject({ level: "info", msg: "signing keys file reloaded", kids: ["a", "b"], signing: "b" });
    expect(await kidsOf(proc.url)).toEqual(["a", "b"]);
    expect(decodeProtectedHeader((await tokens.issue({ subject: "alice" })).tokens!.accessToken)).toMatchObject({ kid: "b", alg: "EdDSA" });
    expect((await tokens.introspect({ token: before })).active).toBe(true); // a is still in the file

    writeKeys(path, [b]);
    hup();
    await until(() => reloads().length === 2, 5_000, "the second reload's log line");
    expect(await kidsOf(proc.url)).toEqual(["b"]);
    expect((await tokens.introspect({ token: before })).active).toBe(false); // a left the file: removed at once

    // Bad files: a key without its private part, then not JSON. The keys in use stay.
    writeKeys(path, [{ ...(await key("ES256", "c")), d: undefined }]);
    hup();
    await until(() => reloads().length === 3, 5_000, "the failed reload's log line");
    expect(reloads()[2]).toMatchObject({ level: "error", msg: "signing keys file not reloaded: keeping the keys in use" });
    expect(reloads()[2]!.err!.message).toMatch(/^TESSERA_SIGNING_KEYS_FILE: ".*hup-keys\.json": keys\[0\] \(kid "c"\): holds no private key/);
    writeFileSync(path, `{"keys": [{"kid": "d", "d": "${b.d as string}"`);
    hup();
    await until(() => reloads().length === 4, 5_000, "the second failed reload's log line");
    expect(reloads()[3]!.err!.message).toMatch(/is not JSON$/);
    // A file whose only key starts in an hour: nothing could sign, so nothing changes.
    writeKeys(path, [await key("ES256", "later", Date.now() + 60 * MIN)]);
    hup();
    await until(() => reloads().length === 5, 5_000, "the third failed reload's log line");
    expect(reloads()[4]!.err!.message).toMatch(/no key can sign now/);

    expect(await kidsOf(proc.url)).toEqual(["b"]);
    expect(decodeProtectedHeader((await tokens.issue({ subject: "alice" })).tokens!.accessToken).kid).toBe("b");
    const output = [...proc.stdout, ...proc.stderr].join("\n");
    for (const k of [a, b]) expect(output).not.toContain(k.d as string);
  }, 30_000);
});
