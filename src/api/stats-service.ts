/**
 * tessera.v1.StatsService: usage figures (domain/stats.ts), read from the StatsStore the audit part keeps up to date,
 * a subject's live sessions, recent audit events and risk. Needs `stats.read`. The overview and the daily report cover
 * every subject, so a caller limited to some subjects (`subjects` in the callers file) is refused them; it may ask
 * GetSubjectActivity for one of its subjects.
 */
import { create } from "@bufbuild/protobuf";
import { durationFromMs, durationMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import {
  EventCountsSchema,
  GetDailyReportResponseSchema,
  GetOverviewResponseSchema,
  GetSubjectActivityResponseSchema,
  HourlyStatsSchema,
  LiveSessionsSchema,
  SessionDurationsSchema,
  StatsService,
  type EventCounts,
  type SessionDurations,
} from "../../gen/tessera/v1/stats_pb.js";
import type { Audit } from "../domain/audit-trail.js";
import type { Authority } from "../domain/authority.js";
import type { Clock } from "../domain/clock.js";
import {
  DAY_MS,
  HOUR_MS,
  STATS_KEEP_MS,
  hourOf,
  sumHours,
  summarizeDurations,
  type DurationStats,
  type HourStats,
  type StatsCounter,
  type StatsStore,
} from "../domain/stats.js";
import { auditEvent, riskAssessment } from "./audit-service.js";
import { requireSubject, scopeOf } from "./auth.js";
import { session } from "./convert.js";
import { invalidArgument } from "./errors.js";
import * as v from "./validate.js";

export interface StatsDeps {
  stats: StatsStore;
  audit: Audit;
  authority: Pick<Authority, "listSessions">;
  clock: Clock;
}

export const OVERVIEW_WINDOW = { defaultMs: DAY_MS, maxMs: 7 * DAY_MS } as const;
export const RECENT_EVENTS = { default: 50, max: 200 } as const;

export function statsService({ stats, audit, authority, clock }: StatsDeps): ServiceImpl<typeof StatsService> {
  return {
    async getOverview(req, ctx) {
      everySubject(ctx);
      let windowMs: number = OVERVIEW_WINDOW.defaultMs;
      if (req.window !== undefined) {
        const ms = durationMs(req.window);
        if (!Number.isFinite(ms) || ms < 0) throw invalidArgument("window", "must not be negative");
        if (ms > OVERVIEW_WINDOW.maxMs) throw invalidArgument("window", "must be at most 7 days");
        if (ms > 0) windowMs = ms;
      }
      const now = clock.now();
      const toHour = hourOf(now);
      const fromHour = hourOf(now - windowMs);
      const snap = await stats.readStats({ fromHour, toHour, now });
      const total = sumHours(snap.hours);
      return create(GetOverviewResponseSchema, {
        startTime: timestampFromMs(fromHour),
        endTime: timestampFromMs(now),
        live: create(LiveSessionsSchema, {
          total: BigInt(snap.live.sessions),
          byPlatform: Object.fromEntries(Object.entries(snap.live.byPlatform).map(([p, n]) => [p, BigInt(n)])),
          subjects: BigInt(snap.live.subjects),
        }),
        totals: counts(total.counts),
        sessionDurations: durations(total.durations),
        hours: snap.hours.map(hourly),
      });
    },

    async getSubjectActivity(req, ctx) {
      const subject = v.subject("subject", req.subject);
      requireSubject(ctx, subject);
      if (req.eventLimit < 0) throw invalidArgument("event_limit", "must not be negative");
      const limit = req.eventLimit === 0 ? RECENT_EVENTS.default : Math.min(req.eventLimit, RECENT_EVENTS.max);
      const [sessions, page, risk] = await Promise.all([
        authority.listSessions(subject),
        audit.list({ subject, limit }),
        audit.risk(subject),
      ]);
      return create(GetSubjectActivityResponseSchema, {
        sessions: sessions.map(session),
        recentEvents: page.events.map(auditEvent),
        risk: riskAssessment(risk),
      });
    },

    async getDailyReport(req, ctx) {
      everySubject(ctx);
      const day = parseDay(req.date);
      const now = clock.now();
      if (day > now) throw invalidArgument("date", "is in the future");
      if (day + DAY_MS + STATS_KEEP_MS <= now + HOUR_MS) throw invalidArgument("date", "is older than the 8 days kept");
      const snap = await stats.readStats({ fromHour: day, toHour: day + DAY_MS - HOUR_MS, now });
      const total = sumHours(snap.hours);
      return create(GetDailyReportResponseSchema, {
        date: req.date,
        counts: counts(total.counts),
        sessionDurations: durations(total.durations),
        hours: snap.hours.map(hourly),
        complete: day + STATS_KEEP_MS > now,
      });
    },
  };
}

/** The overview and the daily report cover every subject: refused to a caller limited to some. */
function everySubject(ctx: HandlerContext): void {
  const scope = scopeOf(ctx);
  if (scope !== undefined) throw scope.refuse(ctx, { why: "usage statistics cover every subject" });
}

const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

/** A UTC day, YYYY-MM-DD, as the instant it begins. */
function parseDay(date: string): number {
  const m = DATE.exec(date);
  const ms = m ? Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])) : NaN;
  if (!m || !Number.isFinite(ms) || new Date(ms).toISOString().slice(0, 10) !== date) {
    throw invalidArgument("date", "must be a day, YYYY-MM-DD");
  }
  return ms;
}

function counts(c: Record<StatsCounter, number>): EventCounts {
  const n = (k: StatsCounter) => BigInt(c[k]);
  return create(EventCountsSchema, {
    logins: n("logins"),
    refreshes: n("refreshes"),
    revocations: BigInt(c.token_revocations + c.session_revocations + c.subject_revocations + c.evictions),
    tokenRevocations: n("token_revocations"),
    sessionRevocations: n("session_revocations"),
    subjectRevocations: n("subject_revocations"),
    evictions: n("evictions"),
    reuseDetections: n("reuse_detections"),
    lockouts: n("lockouts"),
    rateLimited: n("rate_limited"),
    suspiciousActivity: n("suspicious_activity"),
  });
}

function durations(d: DurationStats): SessionDurations {
  const s = summarizeDurations(d);
  return create(SessionDurationsSchema, {
    count: BigInt(s.count),
    mean: durationFromMs(s.meanMs),
    median: durationFromMs(s.medianMs),
    p95: durationFromMs(s.p95Ms),
    max: durationFromMs(s.maxMs),
  });
}

function hourly(h: HourStats) {
  return create(HourlyStatsSchema, { startTime: timestampFromMs(h.hour), counts: counts(h.counts), sessionDurations: durations(h.durations) });
}
