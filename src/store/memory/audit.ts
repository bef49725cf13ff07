/** The memory store's audit trail and risk observations (AuditStore). */
import {
  AUDIT_SCAN_LIMIT,
  alertedWithin,
  auditMatches,
  compareAuditIds,
  emptyRisk,
  isAuditId,
  mergeRisk,
  nextAuditId,
  riskSignalsBySubject,
  type AuditBounds,
  type AuditEvent,
  type AuditPage,
  type AuditQuery,
  type RiskObservations,
  type StoredAuditEvent,
} from "../../domain/audit.js";
import { subjectTag } from "../../domain/ids.js";
import { statsOps } from "../../domain/stats.js";
import type { AuditStore } from "../../domain/store.js";
import type { Lifetimes } from "./shared.js";
import type { MemoryStatsStore } from "./stats.js";

export class MemoryAuditStore implements AuditStore {
  /** The audit trail, oldest first. */
  private audit: StoredAuditEvent[] = [];
  /** The newest id ever given, so ids keep growing even after trimming emptied the trail. */
  private lastAuditId: string | null = null;
  /**
   * The subject's tag (ids.subjectTag) -> its risk observations and the store-clock instant they are gone (shared.ts
   * Lifetimes). By tag, as Redis keys them (`P{t}:risk`), so that tokenState finds them from a session id alone, as
   * Redis's does.
   */
  private risk = new Map<string, { obs: RiskObservations; expiry: number }>();

  /** `stats`: fed the statistics of every batch appended (domain/stats.ts statsOps), in the same call. */
  constructor(
    private readonly lifetimes: Lifetimes,
    private readonly stats?: MemoryStatsStore,
  ) {}

  async appendAudit(events: readonly AuditEvent[], b: AuditBounds): Promise<{ subject: string; risk: RiskObservations }[]> {
    for (const { endedSessions: _, ...e } of events) {
      // endedSessions feeds the statistics only: the stored event is what Redis's stream keeps.
      this.lastAuditId = nextAuditId(this.lastAuditId, e.at);
      this.audit.push({ ...e, detail: { ...e.detail }, id: this.lastAuditId });
    }
    const minId = `${b.now - b.maxAgeMs}-0`;
    let drop = Math.max(0, this.audit.length - b.maxEvents);
    while (drop < this.audit.length && compareAuditIds(this.audit[drop]!.id, minId) < 0) drop++;
    if (drop > 0) this.audit.splice(0, drop);
    this.stats?.apply(statsOps(events, b.now), b.now);
    const out: { subject: string; risk: RiskObservations }[] = [];
    for (const [subject, list] of riskSignalsBySubject(events)) {
      const tag = subjectTag(subject);
      const obs = mergeRisk(this.kept(tag)?.obs ?? null, list, b.now, b.riskWindowMs);
      // Redis: SET PX riskWindowMs.
      this.risk.set(tag, { obs, expiry: this.lifetimes.expiry(b.now + b.riskWindowMs, b.now) });
      out.push({ subject, risk: structuredClone(obs) });
    }
    return out;
  }

  async listAudit(q: AuditQuery): Promise<AuditPage> {
    const limit = Math.floor(q.limit);
    if (!(limit > 0) || (q.cursor && !isAuditId(q.cursor))) return { events: [], next: null };
    // Newest first: the first event older than the cursor, found by binary search (ids only grow).
    let lo = q.cursor ? 0 : this.audit.length;
    let hi = this.audit.length;
    if (q.cursor) {
      const cursor = q.cursor;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (compareAuditIds(this.audit[mid]!.id, cursor) < 0) lo = mid + 1;
        else hi = mid;
      }
    }
    // Ids are never below their event's time, so nothing older than `${from}-0` can match.
    const floor = q.from === undefined ? null : `${q.from}-0`;
    const events: StoredAuditEvent[] = [];
    let i = lo - 1;
    for (let scanned = 0; i >= 0 && events.length < limit && scanned < AUDIT_SCAN_LIMIT; i--, scanned++) {
      const e = this.audit[i]!;
      if (floor !== null && compareAuditIds(e.id, floor) < 0) {
        i = -1;
        break;
      }
      if (auditMatches(e, q)) events.push({ ...e, detail: { ...e.detail } });
    }
    // The cursor is the last event examined: the next page starts just below it.
    return { events, next: i >= 0 ? this.audit[i + 1]!.id : null };
  }

  async riskOf(subject: string): Promise<RiskObservations | null> {
    const held = this.held(subjectTag(subject));
    return held && structuredClone(held);
  }

  async claimRiskAlert(q: { subject: string; now: number; windowMs: number }): Promise<boolean> {
    const tag = subjectTag(q.subject);
    const kept = this.kept(tag);
    if (kept && alertedWithin(kept.obs, q.now, q.windowMs)) return false;
    const obs = { ...(kept?.obs ?? emptyRisk()), alertedAt: q.now };
    // As Redis: the mark keeps the observations at least windowMs, never shorter than they were kept already.
    const expiry = Math.max(kept?.expiry ?? -Infinity, this.lifetimes.expiry(q.now + q.windowMs, q.now));
    this.risk.set(tag, { obs, expiry });
    return true;
  }

  /** Frees what has expired (reads ignore it already). */
  sweep(): void {
    for (const [tag, r] of this.risk) if (!this.lifetimes.held(r.expiry)) this.risk.delete(tag);
  }

  size(): { audit: number; risk: number } {
    return { audit: this.audit.length, risk: this.risk.size };
  }

  /**
   * The risk observations of the subject whose tag is `tag`, unless expired (shared.ts Lifetimes), as held: every
   * change replaces the object (domain mergeRisk is pure), so the session part's tokenState can hand it out read-only.
   */
  held(tag: string): Readonly<RiskObservations> | null {
    return this.kept(tag)?.obs ?? null;
  }

  /** The observations of `tag` and their expiry, unless expired. */
  private kept(tag: string): { obs: RiskObservations; expiry: number } | null {
    const r = this.risk.get(tag);
    return r && this.lifetimes.held(r.expiry) ? r : null;
  }
}
