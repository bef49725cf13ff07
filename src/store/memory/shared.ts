/** What the parts of the memory store share. */

/**
 * The latest instant any caller has told the store (every part ticks it): expiry sweeps and the risk observations'
 * expiry are judged by it, so they agree with the callers' clock rather than the machine's.
 */
export class Horizon {
  latest = 0;

  tick(now: number): void {
    if (now > this.latest) this.latest = now;
  }
}
