/**
 * The child process of the `verifier` part (bench/verifier.ts runs it; docs/performance.md explains the method): the
 * SDK's in-process verifier, `createVerifier({ mode: "local" })`, on an authority, alone in its process so that the
 * CPU it uses is its own. The SDK is loaded from the build (`dist/src/client/index.js`, what the package exports and
 * `npm run bench` builds first), not from src/ through tsx, whose keepNames transform costs per closure (bench/run.ts,
 * buildTessera).
 *
 * `node --import tsx bench/verifier-worker.ts '<WorkerSpec as JSON>'`. It writes one JSON WorkerEvent per line on
 * stdout: `ready` (the verifier has the JWKS and the feed's snapshot), `measuring` and `measured` (the measured part
 * begins and ends: the orchestrator reads the machine's CPU counters then), and last `result`.
 *
 * - throughput: verifies one valid access token (so its signature is checked once, then comes from the verified
 *   cache, as for any token a service sees again) back to back, `await`ing each answer, for `warmupMs`, then for
 *   `windowMs` measured: the verifications completed, and this process's CPU over them (process.cpuUsage: user +
 *   system of every thread, V8's GC and compiler threads and libuv's included). Every answer must be active. Every
 *   BATCH verifications the event loop is let turn once (setImmediate), as a server's would between requests, so the
 *   feed's heartbeats keep the verifier fresh; their CPU is in the figure.
 * - visibility: `revocations` access tokens minted at the authority, each for its own subject; then, one token at a
 *   time: the verifier must answer active; Revoke at the authority (by token, by session, by subject in turn; t0 = the
 *   instant its answer arrives); then verify again on every turn of the event loop until it answers revoked. The same
 *   method as the sidecars' visibility (bench/sidecar.ts), with the poll in-process instead of over the network.
 */
import type * as Sdk from "../src/client/index.js";
import type { VerifierThroughput, VerifierVisibility } from "./report.js";

export interface VerifierSettings {
  authorityUrl: string;
  /** The authority's TESSERA_ISSUER and TESSERA_CLOCK_SKEW; the sidecar's TESSERA_SIDECAR_MAX_STALENESS. */
  issuer: string;
  clockSkewMs: number;
  maxStalenessMs: number;
}

export type WorkerSpec =
  | (VerifierSettings & {
      mode: "throughput";
      token: string;
      /** The token's subject: the first answer must name it. */
      subject: string;
      audience: string;
      requiredScopes: string[];
      warmupMs: number;
      windowMs: number;
    })
  | (VerifierSettings & { mode: "visibility"; revocations: number; timeoutMs: number });

export type ThroughputResult = Omit<VerifierThroughput, "cpu" | "failed"> & { firstWrong?: string };
export type VisibilityResult = Omit<VerifierVisibility, "cpu" | "failed"> & { failures: string[] };

export type WorkerEvent =
  | { type: "ready" | "measuring" | "measured" }
  | { type: "result"; mode: "throughput"; result: ThroughputResult }
  | { type: "result"; mode: "visibility"; result: VisibilityResult };

/** Verifications between two turns of the event loop in the throughput loop. */
const BATCH = 1000;

const emit = (event: WorkerEvent) => process.stdout.write(`${JSON.stringify(event)}\n`);
/** Lets the event loop turn once (timers, I/O: the feed's messages), then resumes. */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

async function throughput(verifier: Sdk.Verifier, spec: Extract<WorkerSpec, { mode: "throughput" }>): Promise<ThroughputResult> {
  const opts: Sdk.VerifyOptions = { audience: spec.audience, requiredScopes: spec.requiredScopes };
  const first = await verifier.verify(spec.token, opts);
  if (!first.active) throw new Error(`the token is not active: ${first.reason}`);
  if (first.principal.subject !== spec.subject) throw new Error(`the token's subject is ${first.principal.subject}, not ${spec.subject}`);
  let wrong = 0;
  let firstWrong: string | undefined;
  /** Verifies back to back until `until` (checked every BATCH), letting the loop turn between batches; returns the count. */
  const spin = async (until: number): Promise<number> => {
    let n = 0;
    for (;;) {
      for (let i = 0; i < BATCH; i++) {
        try {
          const r = await verifier.verify(spec.token, opts);
          if (!r.active) {
            wrong++;
            firstWrong ??= `answered inactive: ${r.reason}`;
          }
        } catch (err) {
          wrong++;
          firstWrong ??= `threw: ${err instanceof Error ? err.message : String(err)}`;
        }
      }
      n += BATCH;
      if (performance.now() >= until) return n;
      await turn();
    }
  };
  await spin(performance.now() + spec.warmupMs);
  emit({ type: "measuring" });
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const verifications = await spin(t0 + spec.windowMs);
  const wallSeconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  emit({ type: "measured" });
  return {
    call: `verify(token, { audience: ${JSON.stringify(spec.audience)}, requiredScopes: ${JSON.stringify(spec.requiredScopes)} })`,
    warmupMs: spec.warmupMs,
    verifications,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    wallSeconds,
    wrong,
    ...(firstWrong === undefined ? {} : { firstWrong }),
  };
}

async function visibility(verifier: Sdk.Verifier, spec: Extract<WorkerSpec, { mode: "visibility" }>): Promise<VisibilityResult> {
  // Loaded here only: the throughput worker carries none of it.
  const { figures, grpcClient, KINDS, mintTokens, revocationTarget, timedClient } = await import("./sidecar.js");
  const { TokenService } = await import("../gen/tessera/v1/token_pb.js");
  const at = grpcClient(TokenService, spec.authorityUrl);
  const revoker = timedClient(spec.authorityUrl);
  try {
    const minted = await mintTokens(at.client, spec.revocations, "bench-verifier-visibility");
    const all: number[] = [];
    const byKind: Record<(typeof KINDS)[number], number[]> = { token: [], session: [], subject: [] };
    const revokeMs: number[] = [];
    const pollMs: number[] = [];
    const failures: string[] = [];
    let polls = 0;
    let atFirstPoll = 0;
    emit({ type: "measuring" });
    for (const [i, t] of minted.entries()) {
      const kind = KINDS[i % KINDS.length]!;
      const before = await verifier.verify(t.token);
      if (!before.active) {
        failures.push(`token ${i}: answered ${before.reason} before the Revoke`);
        continue;
      }
      const sent = performance.now();
      await revoker.revoke(revocationTarget(kind, t));
      const t0 = performance.now();
      revokeMs.push(t0 - sent);
      try {
        for (let n = 1; ; n++) {
          const start = performance.now();
          const r = await verifier.verify(t.token);
          const now = performance.now();
          pollMs.push(now - start);
          polls++;
          if (!r.active) {
            if (r.reason !== "revoked") throw new Error(`answered inactive for ${r.reason}, not revoked`);
            all.push(now - t0);
            byKind[kind].push(now - t0);
            if (n === 1) atFirstPoll++;
            break;
          }
          if (now > t0 + spec.timeoutMs) throw new Error(`still active ${spec.timeoutMs} ms after the Revoke was acknowledged`);
          await turn();
        }
      } catch (err) {
        failures.push(`token ${i} (by ${kind}): ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    emit({ type: "measured" });
    return {
      revocations: spec.revocations,
      all: figures(all),
      byKind: { token: figures(byKind.token), session: figures(byKind.session), subject: figures(byKind.subject) },
      revoke: figures(revokeMs),
      poll: figures(pollMs),
      polls,
      atFirstPoll,
      failures,
    };
  } finally {
    revoker.close();
    at.close();
  }
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? "") as WorkerSpec;
  const sdk = (await import(new URL("../dist/src/client/index.js", import.meta.url).href)) as typeof Sdk;
  const verifier = sdk.createVerifier({
    mode: "local",
    authorityUrl: spec.authorityUrl,
    issuer: spec.issuer,
    clockSkewMs: spec.clockSkewMs,
    maxStalenessMs: spec.maxStalenessMs,
  });
  try {
    await verifier.ready(20_000);
    emit({ type: "ready" });
    if (spec.mode === "throughput") emit({ type: "result", mode: "throughput", result: await throughput(verifier, spec) });
    else emit({ type: "result", mode: "visibility", result: await visibility(verifier, spec) });
  } finally {
    await verifier.close();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`verifier worker: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
