/**
 * Whether this process should receive traffic: the store answers and the process is not shutting down. A ping loop
 * (started and stopped explicitly, its timer unref'd) keeps the store half current; `beginShutdown()` flips the other
 * half for good. Listeners hear every change of `serving`. The gRPC health service and `GET /readyz` read it.
 *
 * Shutdown has two steps: `beginShutdown()` (NOT_SERVING, while the port still serves for TESSERA_SHUTDOWN_DELAY, so
 * load balancers and health watchers hear it first), then `drain()`, which fires `draining`: long-lived health Watch
 * streams end then, with UNAVAILABLE, as the connections are asked to close.
 */
import { setMaxListeners } from "node:events";
import type { StoreLifecycle } from "../domain/store.js";

export type ReadinessListener = (serving: boolean) => void;

export interface ReadinessOptions {
  store: Pick<StoreLifecycle, "ping">;
  /** Pause between the end of one ping and the start of the next. */
  intervalMs?: number;
  /** A ping that takes longer counts as a failure (the store's own command timeout normally fires first). */
  pingTimeoutMs?: number;
  /** Told when the store goes away or comes back. */
  onStoreChange?: (reachable: boolean, err?: unknown) => void;
}

export class Readiness {
  // The app pinged the store successfully before building this, so it starts reachable.
  private storeUp = true;
  private stopping = false;
  private running = false;
  /** Bumped by every start(), so a ping still in flight from an earlier loop does not schedule another. */
  private generation = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners = new Set<ReadinessListener>();
  private readonly intervalMs: number;
  private readonly pingTimeoutMs: number;
  private readonly drained = new AbortController();

  constructor(private readonly opts: ReadinessOptions) {
    this.intervalMs = opts.intervalMs ?? 1000;
    this.pingTimeoutMs = opts.pingTimeoutMs ?? 2000;
    setMaxListeners(0, this.drained.signal); // one listener per open health Watch
  }

  /** Fires when the drain begins (drain()): streams that would stay open (health Watch) end then. */
  get draining(): AbortSignal {
    return this.drained.signal;
  }

  /** True while the store is reachable and the process is not shutting down. */
  get serving(): boolean {
    return this.storeUp && !this.stopping;
  }

  /** True once beginShutdown() was called. */
  get shuttingDown(): boolean {
    return this.stopping;
  }

  /** Starts the ping loop (first ping at once). Idempotent. */
  start(): void {
    if (this.running) return;
    this.running = true;
    void this.tick(++this.generation);
  }

  /** Stops the ping loop; `serving` keeps its last value. Idempotent. */
  stop(): void {
    this.running = false;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** The process is going away: NOT_SERVING from now on, whatever the store says. */
  beginShutdown(): void {
    this.update(() => (this.stopping = true));
  }

  /**
   * Shutdown's first step: NOT_SERVING at once (health, /readyz 503), then `ms` while the port still serves, so what
   * routes traffic here (a load balancer, Kubernetes endpoints, clients watching health) stops before the drain.
   */
  async notServingFor(ms: number): Promise<void> {
    this.beginShutdown();
    if (ms > 0) await new Promise((r) => setTimeout(r, ms));
  }

  /** The drain begins: NOT_SERVING (if it was not already), and `draining` fires. Idempotent. */
  drain(): void {
    this.beginShutdown();
    this.drained.abort();
  }

  /** Calls `fn` with the new value on every change of `serving`; returns the matching unsubscribe. */
  subscribe(fn: ReadinessListener): () => void {
    this.listeners.add(fn);
    return () => this.unsubscribe(fn);
  }

  unsubscribe(fn: ReadinessListener): void {
    this.listeners.delete(fn);
  }

  /** Pings the store once and records the answer; resolves with whether it answered. */
  async check(): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.opts.store.ping(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`store ping took over ${this.pingTimeoutMs}ms`)), this.pingTimeoutMs);
          timer.unref();
        }),
      ]);
      this.setStore(true);
      return true;
    } catch (err) {
      this.setStore(false, err);
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  private async tick(generation: number): Promise<void> {
    await this.check();
    if (!this.running || generation !== this.generation) return;
    this.timer = setTimeout(() => void this.tick(generation), this.intervalMs);
    this.timer.unref();
  }

  private setStore(up: boolean, err?: unknown): void {
    if (up === this.storeUp) return;
    this.update(() => (this.storeUp = up));
    this.opts.onStoreChange?.(up, err);
  }

  private update(change: () => void): void {
    const before = this.serving;
    change();
    const after = this.serving;
    if (after === before) return;
    for (const fn of [...this.listeners]) {
      try {
        fn(after);
      } catch {
        // a listener's failure is its own business; the others still hear the change
      }
    }
  }
}
