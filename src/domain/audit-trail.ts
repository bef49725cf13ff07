/**
 * The audit trail recorder. `record()` is what everything that audits calls: it writes the event's log line at once
 * (synchronously) and puts the event into a bounded in-process buffer; the buffer goes to the store in batches (every
 * `flushIntervalMs`, or at once when `batchSize` events wait), one store round trip per batch, so auditing never
 * adds a blocking store call to a request. A full buffer drops the event (it is still in the log) and counts it.
 * After each batch it checks the risk score of every subject the batch signalled and raises `suspicious_activity`.
 * A batch the store refused goes back to the front of the buffer and is tried again `flushIntervalMs` later, the wait
 * doubling after each failure up to RETRY_MAX_MS (new events meanwhile do not send it sooner), so that a store that is
 * down or out of memory is not sent every buffered event every interval by every process.
 *
 * Refusals are folded, so whoever reaches the port cannot push real events out of the bounded stored trail: an event
 * recorded with a `foldKey` (src/api/audit-context.ts: the peer, the kind of refusal, the caller, the RPC) is logged
 * as always, but of the events of one key within `foldWindowMs` only the first is stored at once; the others are
 * counted, and the count is stored as one event (`detail.count`, `first_at`, `last_at`) when the window closes (the
 * next record, flush or sweep after it; close() stores every count still open). At most `foldKeys` keys are open at
 * once: a refusal whose key finds no room is folded into one overflow key per type (`detail.overflow`), so neither
 * memory nor the stored trail grows with the number of peers.
 */
import {
  AUDIT_TYPES,
  NO_CONTEXT,
  assessRisk,
  shouldAlert,
  type AuditContext,
  type AuditEvent,
  type AuditPage,
  type AuditQuery,
  type AuditType,
  type RiskAssessment,
} from "./audit.js";
import type { Clock } from "./clock.js";
import type { AuditStore } from "./store.js";

/** What a caller of record() says; the recorder adds severity and time. */
export interface AuditInput {
  type: AuditType;
  context?: AuditContext;
  subject?: string;
  sessionId?: string;
  detail?: Record<string, string | number | boolean>;
  /** subject_revoked: the sessions it ended (AuditEvent.endedSessions: for the statistics, not logged or stored). */
  endedSessions?: readonly string[];
  /** Refusals: events with the same key within the fold window are stored as the first one plus one count. */
  foldKey?: string;
}

/** The one method the authority and the API layer need. */
export interface AuditSink {
  record(input: AuditInput): void;
}

export interface AuditTrailConfig {
  maxEvents: number;
  maxAgeMs: number;
  riskWindowMs: number;
  riskThreshold: number;
  /** Events waiting for the store at most; beyond, new events are dropped (and counted). */
  bufferSize?: number;
  /** Events per store write, and the backlog that triggers a write at once. */
  batchSize?: number;
  flushIntervalMs?: number;
  /** How long repeats of a fold key are counted rather than stored. */
  foldWindowMs?: number;
  /** Fold keys open at once at most (the overflow keys aside). */
  foldKeys?: number;
}

export interface AuditTrailDeps {
  store: AuditStore;
  clock: Clock;
  config: AuditTrailConfig;
  /** Writes the event's log line; called synchronously by record(). */
  log?: (event: AuditEvent) => void;
  /** Told of every event dropped because the buffer was full (or the trail closed); `total` counts since start. */
  onDropped?: (total: number, event: AuditEvent) => void;
  /** Told when a batch could not be written (it is retried) or a risk check failed. */
  onError?: (err: unknown, what: "flush" | "risk") => void;
}

export const AUDIT_DEFAULTS = {
  bufferSize: 10_000,
  batchSize: 500,
  flushIntervalMs: 50,
  foldWindowMs: 60_000,
  foldKeys: 256,
} as const;

/** The events of one fold key in its window: the first was stored; `count` more were only logged. */
interface Fold {
  start: number;
  count: number;
  /** The newest event folded (the stored count takes its context). */
  last: AuditEvent | undefined;
  overflow: boolean;
}

const OVERFLOW = "\u0000overflow:";

/**
 * The longest wait before a write is tried again after failures (it starts at flushIntervalMs and doubles). Without
 * it a Redis out of memory got the whole buffer every 50 ms: a full buffer is 20 scripts and one risk script per
 * subject, about 10 000 refused scripts a second from an idle process (36 % of a core, Redis 16 %).
 */
const RETRY_MAX_MS = 5_000;

const DETAIL_MAX = 256;

export class Audit implements AuditSink {
  private readonly store: AuditStore;
  private readonly clock: Clock;
  private readonly cfg: Required<AuditTrailConfig>;
  private readonly log: (event: AuditEvent) => void;
  private readonly onDropped: (total: number, event: AuditEvent) => void;
  private readonly onError: (err: unknown, what: "flush" | "risk") => void;
  private buffer: AuditEvent[] = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  /** The wait before the next write after the last one failed; 0 while writes succeed. */
  private retryMs = 0;
  private closed = false;
  private droppedTotal = 0;
  private readonly folds = new Map<string, Fold>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(deps: AuditTrailDeps) {
    this.store = deps.store;
    this.clock = deps.clock;
    this.cfg = { ...AUDIT_DEFAULTS, ...deps.config };
    this.log = deps.log ?? (() => {});
    this.onDropped = deps.onDropped ?? (() => {});
    this.onError = deps.onError ?? (() => {});
  }

  /** Events dropped so far because the buffer was full. */
  get dropped(): number {
    return this.droppedTotal;
  }

  /** Events waiting for the store. */
  get pending(): number {
    return this.buffer.length;
  }

  /** Fold keys open now (overflow keys included). */
  get folding(): number {
    return this.folds.size;
  }

  /** Records one event: logs it now, stores it soon (unless it is a repeat folded into a count). Never throws, never waits. */
  record(input: AuditInput): void {
    const event = this.build(input);
    if (event.endedSessions === undefined) this.log(event);
    else {
      const { endedSessions: _, ...logged } = event;
      this.log(logged);
    }
    if (input.foldKey !== undefined && !this.closed && this.fold(input.foldKey, event)) return;
    this.enqueue(event);
  }

  private enqueue(event: AuditEvent): void {
    if (this.closed || this.buffer.length >= this.cfg.bufferSize) {
      this.onDropped(++this.droppedTotal, event);
      return;
    }
    this.buffer.push(event);
    if (this.retryMs > 0) this.timer ??= unref(setTimeout(() => this.kick(), this.retryMs)); // after a failed write
    else if (this.buffer.length >= this.cfg.batchSize) this.kick();
    else this.timer ??= unref(setTimeout(() => this.kick(), this.cfg.flushIntervalMs));
  }

  /** Stored events matching the query, newest first. */
  list(query: AuditQuery): Promise<AuditPage> {
    return this.store.listAudit(query);
  }

  /** The subject's current risk score and the counts it is made of. */
  async risk(subject: string): Promise<RiskAssessment> {
    return assessRisk(await this.store.riskOf(subject), this.clock.now(), this.cfg.riskWindowMs);
  }

  /**
   * Writes everything buffered so far (and what those writes raise), the counts of fold windows that have closed
   * first. Resolves when done or when a write failed.
   */
  async flush(): Promise<void> {
    this.sweep(this.clock.now());
    for (let round = 0; round < 1000; round++) {
      if (this.flushing) {
        await this.flushing;
        continue;
      }
      if (this.buffer.length === 0) return;
      if (!(await this.run())) return;
    }
  }

  /** Stops taking events and writes what is buffered; events recorded afterwards are logged and counted as dropped. */
  async close(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.sweep(Infinity); // every count still open goes to the store with the rest
    await this.flush();
    this.closed = true;
    clearTimeout(this.timer);
    for (const event of this.buffer.splice(0)) this.onDropped(++this.droppedTotal, event);
  }

  /**
   * Folds a refusal into its key's window: true if it was counted (not to be stored), false if it is to be stored
   * (the first of a new window, whose key is now open).
   */
  private fold(key: string, event: AuditEvent): boolean {
    const now = event.at;
    let at = key;
    let f = this.open(at, now);
    if (f === undefined && this.folds.size >= this.cfg.foldKeys) this.sweep(now); // windows over make room
    if (f === undefined && this.folds.size >= this.cfg.foldKeys) {
      at = OVERFLOW + event.type; // no room: every key without one shares this one
      f = this.open(at, now);
    }
    if (f !== undefined) {
      f.count++;
      f.last = event;
      return true;
    }
    // The overflow keys are few (one per type of folded event), so they may go past foldKeys.
    this.folds.set(at, { start: now, count: 0, last: undefined, overflow: at !== key });
    this.sweeper ??= unref(setInterval(() => this.sweep(this.clock.now()), Math.max(1_000, this.cfg.foldWindowMs / 4)));
    return false;
  }

  /** The key's open window at `now`; a window that has closed is stored (its count) and forgotten. */
  private open(key: string, now: number): Fold | undefined {
    const f = this.folds.get(key);
    if (f === undefined || now - f.start < this.cfg.foldWindowMs) return f;
    this.closeFold(key, f);
    return undefined;
  }

  /** Closes every fold window that began at or before `now` - foldWindowMs (Infinity: all of them). */
  private sweep(now: number): void {
    for (const [key, f] of this.folds) if (now - f.start >= this.cfg.foldWindowMs) this.closeFold(key, f);
    if (this.folds.size === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  /** Forgets a window; if it folded anything, stores one event saying how many, when, and the last one's context. */
  private closeFold(key: string, f: Fold): void {
    this.folds.delete(key);
    const last = f.last;
    if (last === undefined) return;
    const detail: Record<string, string> = {
      ...last.detail,
      count: String(f.count),
      first_at: new Date(f.start).toISOString(),
      last_at: new Date(last.at).toISOString(),
    };
    if (f.overflow) detail.overflow = "true";
    // Not a new event, so no log line of its own (every refusal it counts has one): to the store only.
    this.enqueue({ ...last, detail });
  }

  private build(input: AuditInput): AuditEvent {
    const ctx = input.context ?? NO_CONTEXT;
    const detail: Record<string, string> = {};
    for (const [k, v] of Object.entries(input.detail ?? {})) detail[k] = String(v).slice(0, DETAIL_MAX);
    const event: AuditEvent = {
      type: input.type,
      severity: AUDIT_TYPES[input.type],
      at: this.clock.now(),
      caller: ctx.caller,
      subject: input.subject ?? "",
      sessionId: input.sessionId ?? "",
      ip: ctx.ip,
      userAgent: ctx.userAgent,
      deviceId: ctx.deviceId,
      requestId: ctx.requestId,
      detail,
    };
    if (input.endedSessions !== undefined) event.endedSessions = [...input.endedSessions];
    return event;
  }

  /** Starts a write now unless one is running (which starts the next one when it ends). */
  private kick(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.flushing && this.buffer.length > 0) void this.run();
  }

  /** One batch to the store, then the risk checks. True if the batch was written. */
  private run(): Promise<boolean> {
    const batch = this.buffer.splice(0, this.cfg.batchSize);
    let ok = false;
    const p = this.write(batch).then((written) => (ok = written));
    this.flushing = p.then(() => {
      this.flushing = undefined;
      this.retryMs = ok ? 0 : Math.min(Math.max(this.retryMs * 2, this.cfg.flushIntervalMs), RETRY_MAX_MS);
      clearTimeout(this.timer);
      this.timer = undefined;
      if (this.closed || this.buffer.length === 0) return;
      if (!ok) this.timer = unref(setTimeout(() => this.kick(), this.retryMs));
      else if (this.buffer.length >= this.cfg.batchSize) this.kick(); // a backlog goes out at once
      else this.timer = unref(setTimeout(() => this.kick(), this.cfg.flushIntervalMs));
    });
    return this.flushing.then(() => ok);
  }

  private async write(batch: AuditEvent[]): Promise<boolean> {
    const now = this.clock.now();
    const { maxEvents, maxAgeMs, riskWindowMs } = this.cfg;
    let risks: Awaited<ReturnType<AuditStore["appendAudit"]>>;
    try {
      risks = await this.store.appendAudit(batch, { now, maxEvents, maxAgeMs, riskWindowMs });
    } catch (err) {
      this.onError(err, "flush");
      // Back to the front of the buffer, as far as there is room; the rest is dropped (it is in the log).
      const room = Math.max(0, this.cfg.bufferSize - this.buffer.length);
      this.buffer.unshift(...batch.slice(0, room));
      for (const event of batch.slice(room)) this.onDropped(++this.droppedTotal, event);
      return false;
    }
    for (const { subject, risk } of risks) {
      const assessment = assessRisk(risk, now, riskWindowMs);
      if (!shouldAlert(risk, assessment.score, this.cfg.riskThreshold, now, riskWindowMs)) continue;
      try {
        if (!(await this.store.claimRiskAlert({ subject, now, windowMs: riskWindowMs }))) continue;
      } catch (err) {
        this.onError(err, "risk");
        continue;
      }
      // The event that tipped the score says where it came from.
      const last = batch.findLast((e) => e.subject === subject) ?? batch[batch.length - 1]!;
      const { score, ...facts } = assessment;
      this.record({
        type: "suspicious_activity",
        context: last,
        subject,
        sessionId: last.sessionId,
        detail: {
          score,
          threshold: this.cfg.riskThreshold,
          trigger: last.type,
          distinct_ips: facts.distinctIps,
          distinct_devices: facts.distinctDevices,
          refreshes: facts.refreshes,
          reuse_detections: facts.reuses,
          revoked_presented: facts.revokedPresented,
        },
      });
    }
    return true;
  }
}

function unref(t: NodeJS.Timeout): NodeJS.Timeout {
  t.unref();
  return t;
}
