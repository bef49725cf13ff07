/** What the parts of the memory store share. */
import { systemClock, type Clock } from "../../domain/clock.js";

/**
 * How long what the memory store holds lives, measured as Redis measures its keys' lives. Redis keeps a key written
 * with `PX deadline - now` (client.ts ttl) for that long by its own clock, whatever instants callers pass later; so
 * does the memory store, by its own clock (MemoryStore's `clock` option; the system clock unless given): an entry
 * written by a call at `now` with deadline `d` is held until `lifetimes.expiry(d, now)` = its clock's reading then
 * plus d - now, and is gone from that instant on, at every read (a sweep only frees the memory). Where the callers'
 * clock is the store's (production, and the differential test, which gives both the same virtual clock), that is
 * exactly `d`. Liveness (domain/sessions.ts isLive) is judged separately, by the `now` a call passes.
 */
export class Lifetimes {
  constructor(private readonly clock: Clock = systemClock) {}

  /** The store-clock instant at which an entry written now by a call at `now`, due at `deadline`, is gone. */
  expiry(deadline: number, now: number): number {
    return this.clock.now() + (deadline - now);
  }

  /** Whether an entry that is gone at store-clock instant `expiry` is still held. */
  held(expiry: number): boolean {
    return expiry > this.clock.now();
  }

  /** The store's clock now. */
  now(): number {
    return this.clock.now();
  }
}
