/**
 * domain/signing-thread.ts: ES256 and EdDSA signatures (and HS256 MACs) made on one worker thread, a turn's worth
 * per message (at most 64; a later turn's go in a message of their own). Every
 * signature is its own input's, by its own key, however many are in flight at once (more than one message's worth,
 * two keys interleaved); a signature the worker cannot make fails with an Error, and the next ones are made; if the
 * worker stops, what it owed fails and the next signature starts a new one; an idle worker does not keep the process
 * alive.
 */
import { execFile } from "node:child_process";
import { createHmac, createSecretKey, generateKeyPairSync, randomBytes, verify, type KeyObject } from "node:crypto";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { signingThread } from "../../src/domain/signing-thread.js";

const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
const ec2 = generateKeyPairSync("ec", { namedCurve: "P-256" });
const ed2 = generateKeyPairSync("ed25519");
const ed = generateKeyPairSync("ed25519");
const es256 = signingThread.signer("sha256", { key: ec.privateKey, dsaEncoding: "ieee-p1363" });
const eddsa = signingThread.signer(null, ed.privateKey);

const checks = (hash: string | null, publicKey: KeyObject, input: string, signature: string) =>
  verify(hash, Buffer.from(input), hash === null ? publicKey : { key: publicKey, dsaEncoding: "ieee-p1363" }, Buffer.from(signature, "base64url"));

describe("the signing thread", () => {
  it("gives every input its own key's signature, with 300 in flight over two keys", async () => {
    const inputs = Array.from({ length: 300 }, (_, i) => `eyJhbGciOiJFUzI1NiJ9.${Buffer.from(`call ${i}`).toString("base64url")}`);
    const signatures = await Promise.all(inputs.map((input, i) => (i % 3 === 0 ? eddsa(input) : es256(input))));
    signatures.forEach((signature, i) => {
      const [hash, key, other] = i % 3 === 0 ? [null, ed.publicKey, ed2.publicKey] : ["sha256", ec.publicKey, ec2.publicKey];
      expect(Buffer.from(signature, "base64url")).toHaveLength(64);
      expect(checks(hash, key, inputs[i]!, signature)).toBe(true);
      // Not another input's signature, nor the other key's.
      expect(checks(hash, key, inputs[(i + 1) % inputs.length]!, signature)).toBe(false);
      expect(checks(hash, other, inputs[i]!, signature)).toBe(false);
    });
  });

  it("makes HMACs under secret keys beside the signatures, each under its own key", async () => {
    const secret = createSecretKey(randomBytes(32));
    const other = createSecretKey(randomBytes(32));
    const mac = signingThread.signer("sha256", secret, true);
    const mac2 = signingThread.signer("sha256", other, true);
    const inputs = Array.from({ length: 150 }, (_, i) => `eyJhbGciOiJIUzI1NiJ9.${Buffer.from(`refresh ${i}`).toString("base64url")}`);
    const out = await Promise.all(inputs.map((input, i) => (i % 3 === 0 ? es256(input) : i % 3 === 1 ? mac(input) : mac2(input))));
    out.forEach((result, i) => {
      if (i % 3 === 0) return void expect(checks("sha256", ec.publicKey, inputs[i]!, result)).toBe(true);
      const key = i % 3 === 1 ? secret : other;
      expect(result).toBe(createHmac("sha256", key).update(inputs[i]!).digest("base64url"));
      expect(result).not.toBe(createHmac("sha256", key === secret ? other : secret).update(inputs[i]!).digest("base64url"));
    });
  });

  it("sends a turn's signatures as one message, at most 64 in each", async () => {
    const before = signingThread.batchesSent;
    const turn = await Promise.all(Array.from({ length: 130 }, (_, i) => es256(`turn.${i}`)));
    expect(signingThread.batchesSent - before).toBe(3); // 64, 64, 2
    turn.forEach((signature, i) => expect(checks("sha256", ec.publicKey, `turn.${i}`, signature)).toBe(true));
    await es256("next.turn");
    expect(signingThread.batchesSent - before).toBe(4);
  });

  it("fails a signature it cannot make with an Error, and makes the next ones", async () => {
    const x25519 = generateKeyPairSync("x25519");
    const wrong = signingThread.signer("sha256", x25519.privateKey);
    await expect(wrong("a.b")).rejects.toThrow(/^signing failed: /);
    expect(checks("sha256", ec.publicKey, "a.b", await es256("a.b"))).toBe(true);
  });

  it("fails the signatures of a key that cannot be sent to the worker, and throws nowhere", async () => {
    // A key argument the structured clone refuses (a function): rejected, not thrown from the batch's timer.
    const unsendable = signingThread.signer("sha256", { key: ec.privateKey, dsaEncoding: "ieee-p1363", extra: () => 1 } as never);
    await expect(Promise.all([unsendable("a.b"), unsendable("c.d")])).rejects.toThrow(/^signing failed: /);
    expect(checks("sha256", ec.publicKey, "e.f", await es256("e.f"))).toBe(true);
  });

  it("fails what a stopped worker owed, and starts a new one for the next signature", async () => {
    await es256("warm.up"); // the worker is running
    const owed = Array.from({ length: 1280 }, (_, i) => es256(`owed.${i}`));
    await signingThread.stop();
    const settled = await Promise.allSettled(owed);
    const failed = settled.filter((s) => s.status === "rejected");
    expect(failed.length).toBeGreaterThan(0);
    for (const f of failed) expect((f as PromiseRejectedResult).reason.message).toMatch(/^the signing thread stopped/);
    settled.forEach((s, i) => {
      if (s.status === "fulfilled") expect(checks("sha256", ec.publicKey, `owed.${i}`, s.value)).toBe(true);
    });
    // A new worker, which is sent the key again.
    expect(checks("sha256", ec.publicKey, "after.stop", await es256("after.stop"))).toBe(true);
    expect(checks(null, ed.publicKey, "after.stop", await eddsa("after.stop"))).toBe(true);
  });

  it("does not keep a process alive once it owes nothing", async () => {
    const module = fileURLToPath(new URL("../../src/domain/signing-thread.ts", import.meta.url));
    const script = `
      import { generateKeyPairSync } from "node:crypto";
      const { signingThread } = await import(${JSON.stringify(module)});
      const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
      const sign = signingThread.signer("sha256", { key: privateKey, dsaEncoding: "ieee-p1363" });
      process.stdout.write((await sign("a.b")).length + "\\n");
    `;
    const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { timeout: 20_000 });
    // It printed the signature's length (64 bytes in base64url) and exited by itself, before the timeout.
    expect(stdout.trim()).toBe("86");
  });
});
