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
import type { AuditStore } from "../../domain/store.js";
import type { Horizon } from "./shared.js";

export class MemoryAuditStore implements AuditStore {
  /** The audit trail, oldest first. */
  private audit: StoredAuditEvent[] = [];
  /** The newest id ever given, so ids keep growing even after trimming emptied the trail. */
  private lastAuditId: string | null = null;
  /** Subject -> risk observations and the instant they may be forgotten. */
  private risk = new Map<string, { obs: RiskObservations; dropAt: number }>();

  constructor(private readonly horizon: Horizon) {}

  async appendAudit(events: readonly AuditEvent[], b: AuditBounds): Promise<{ subject: string; risk: RiskObservations }[]> {
    this.horizon.tick(b.now);
    for (const e of events) {
      this.lastAuditId = nextAuditId(this.lastAuditId, e.at);
      this.audit.push({ ...e, detail: { ...e.detail }, id: this.lastAuditId });
    }
    const minId = `${b.now - b.maxAgeMs}-0`;
    let drop = Math.max(0, this.audit.length - b.maxEvents);
    while (drop < this.audit.length && compareAuditIds(this.audit[drop]!.id, minId) < 0) drop++;
    if (drop > 0) this.audit.splice(0, drop);
    const out: { subject: string; risk: RiskObservations }[] = [];
    for (const [subject, list] of riskSignalsBySubject(events)) {
      const obs = mergeRisk(this.held(subject), list, b.now, b.riskWindowMs);
      this.risk.set(subject, { obs, dropAt: b.now + b.riskWindowMs });
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
    const held = this.held(subject);
    return held && structuredClone(held);
  }

  async claimRiskAlert(q: { subject: string; now: number; windowMs: number }): Promise<boolean> {
    this.horizon.tick(q.now);
    const held = this.held(q.subject);
    if (held && alertedWithin(held, q.now, q.windowMs)) return false;
    const obs = { ...(held ?? emptyRisk()), alertedAt: q.now };
    const dropAt = Math.max(this.risk.get(q.subject)?.dropAt ?? 0, q.now + q.windowMs);
    this.risk.set(q.subject, { obs, dropAt });
    return true;
  }

  /** Drops what has expired. */
  sweep(now: number): void {
    for (const [subject, r] of this.risk) if (r.dropAt <= now) this.risk.delete(subject);
  }

  size(): { audit: number; risk: number } {
    return { audit: this.audit.length, risk: this.risk.size };
  }

  /**
   * A subject's risk observations unless expired (by the latest instant a caller told us), as held: every change
   * replaces the object (domain mergeRisk is pure), so the session part's tokenState can hand it out read-only.
   */
  held(subject: string): Readonly<RiskObservations> | null {
    const r = this.risk.get(subject);
    return r && r.dropAt > this.horizon.latest ? r.obs : null;
  }
}
