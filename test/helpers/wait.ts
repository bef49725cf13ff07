/**
 * Waiting for a condition instead of sleeping a fixed time: a wait ends as soon as what it waits for has happened,
 * and fails (naming it) if it has not within the timeout, so a slow machine makes a test slower, not wrong.
 */

/**
 * Polls `cond` (every `intervalMs`) until it returns a truthy value, and returns that value; throws if that has not
 * happened within `timeoutMs`. A `cond` that throws fails the wait at once.
 */
export async function until<T>(
  cond: () => T | Promise<T>,
  timeoutMs = 10_000,
  what = "the condition",
  intervalMs = 10,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await cond();
    if (value) return value as NonNullable<T>;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
