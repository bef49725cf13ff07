/**
 * The signatures cheap enough to make without the thread pool (ES256, EdDSA: about 30 µs each), and HMACs (HS256:
 * refresh tokens' MACs), are made on one worker thread of their own, a turn's worth at a time: the calls of one
 * event-loop turn go over as one message (at most BATCH_MAX), and their signatures come back as one. The event loop
 * that serves Introspect no longer makes them, and
 * the hop costs one message a batch rather than a callback a signature, which is what made libuv's pool cost more
 * than signing in place (jws.ts `asymmetric`). Under h2load Issue for one subject (64 in flight, a Redis of its own),
 * three pairs of runs against signing in place: 3 027, 2 403, 2 892 against 2 444, 2 182, 2 208 calls/s; the main
 * thread 232-290 against 352-387 µs a call, the whole process 353-439 against 441-472; Introspect at 2 000/s beside
 * Issue at 1 600/s: p50 4.6-5.0 against 9.8-10.3 ms (docs/performance.md). Batches of 16 instead of 64, and signing
 * while the session is opened instead of before, gained nothing.
 *
 * The worker holds the keys it was sent (each once, by number) until their signer is garbage-collected. If it stops
 * (it should not: it runs nothing but crypto.sign), the signatures it owed fail with an Error and the next one starts
 * a new worker. It keeps the process alive only while it owes signatures.
 */
import type { KeyObject, SignKeyObjectInput } from "node:crypto";
import { Worker } from "node:worker_threads";

/** Signatures per message at most: a burst's first calls need not wait for its last to be signed. */
const BATCH_MAX = 64;

/**
 * The worker, as a module in a data: URL: no file to find, from dist/ or under tsx alike, and none of the process's
 * preloads or flags (execArgv: []).
 */
const SOURCE = `
import { parentPort } from "node:worker_threads";
import { createHmac, sign } from "node:crypto";
const keys = new Map();
parentPort.on("message", (m) => {
  if (m.drop !== undefined) return void keys.delete(m.drop);
  if (m.key !== undefined) keys.set(m.kid, { key: m.key, mac: m.mac === true });
  const out = [];
  let error = null;
  try {
    const { key, mac } = keys.get(m.kid);
    for (const input of m.inputs) {
      const data = Buffer.from(input, "latin1");
      out.push((mac ? createHmac(m.hash, key).update(data).digest() : sign(m.hash, data, key)).toString("base64url"));
    }
  } catch (err) {
    error = String((err && err.message) || err);
  }
  parentPort.postMessage({ id: m.id, out, error });
});
`;

interface Waiter {
  resolve: (signature: string) => void;
  reject: (err: Error) => void;
}

interface Batch {
  inputs: string[];
  waiters: Waiter[];
}

/** What a signer needs: its hash (null for EdDSA) and crypto.sign's key argument. */
interface SignerKey {
  hash: string | null;
  key: KeyObject | SignKeyObjectInput;
  /** An HMAC under a secret key (HS256) rather than a signature. */
  mac: boolean;
}

class SigningThread {
  private worker: Worker | undefined;
  /** The keys the worker holds, by number (a new worker is sent each on its first use). */
  private sent = new Set<number>();
  private nextKey = 1;
  private nextBatch = 1;
  /** Batches of signatures handed to a worker so far (one message each). */
  get batchesSent(): number {
    return this.nextBatch - 1;
  }
  private readonly owed = new Map<number, Waiter[]>();
  private readonly forget = new FinalizationRegistry<number>((kid) => {
    if (this.sent.delete(kid)) this.worker?.postMessage({ drop: kid });
  });

  /**
   * A function that signs a signing input (ASCII) and resolves to the signature in base64url; with `mac`, the HMAC
   * under the secret `key` instead.
   */
  signer(hash: string | null, key: KeyObject | SignKeyObjectInput, mac = false): (input: string) => Promise<string> {
    const kid = this.nextKey++;
    // The batch's closures hold the key, not the signer: a batch still waiting for its turn to end when the signer
    // is collected goes out with its key (sent again if the worker was told to drop it).
    const signerKey: SignerKey = { hash, key, mac };
    let batch: Batch | null = null;
    const send = (b: Batch) => {
      if (batch === b) batch = null;
      this.post(kid, signerKey, b);
    };
    const sign = (input: string) =>
      new Promise<string>((resolve, reject) => {
        if (batch === null) {
          const b: Batch = (batch = { inputs: [], waiters: [] });
          setImmediate(() => batch === b && send(b));
        }
        batch.inputs.push(input);
        batch.waiters.push({ resolve, reject });
        if (batch.inputs.length >= BATCH_MAX) send(batch);
      });
    this.forget.register(sign, kid);
    return sign;
  }

  private post(kid: number, { hash, key, mac }: SignerKey, b: Batch): void {
    const worker = this.start();
    const id = this.nextBatch++;
    this.owed.set(id, b.waiters);
    const first = !this.sent.has(kid);
    try {
      worker.postMessage(first ? { id, kid, hash, inputs: b.inputs, key, mac } : { id, kid, hash, inputs: b.inputs });
    } catch (err) {
      // A key that cannot cross to the worker: its signatures fail, and nothing is thrown where nobody catches it.
      this.owed.delete(id);
      const failure = new Error(`signing failed: ${err instanceof Error ? err.message : String(err)}`);
      for (const w of b.waiters) w.reject(failure);
      return;
    }
    if (first) this.sent.add(kid);
    worker.ref();
  }

  private start(): Worker {
    if (this.worker !== undefined) return this.worker;
    const worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(SOURCE)}`), { execArgv: [], name: "tessera-signing" });
    worker.on("message", (m: { id: number; out: string[]; error: string | null }) => {
      const waiters = this.owed.get(m.id);
      this.owed.delete(m.id);
      if (this.owed.size === 0) worker.unref();
      if (waiters === undefined) return;
      if (m.error !== null) {
        const err = new Error(`signing failed: ${m.error}`);
        for (const w of waiters) w.reject(err);
      } else {
        waiters.forEach((w, i) => w.resolve(m.out[i]!));
      }
    });
    const stopped = (why: string) => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      this.sent = new Set();
      const err = new Error(`the signing thread stopped (${why})`);
      for (const waiters of this.owed.values()) for (const w of waiters) w.reject(err);
      this.owed.clear();
    };
    worker.on("error", (err) => stopped(err.message));
    worker.on("exit", (code) => stopped(`exit code ${code}`));
    worker.unref();
    this.worker = worker;
    return worker;
  }

  /** Stops the worker (tests: what the signatures it owed and the next ones do then). */
  async stop(): Promise<void> {
    await this.worker?.terminate();
  }
}

/** The process's one signing thread. */
export const signingThread = new SigningThread();
