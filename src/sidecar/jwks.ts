/**
 * The authority's public keys, as the sidecar verifies with them: fetched from its `/.well-known/jwks.json`, refreshed
 * every `refreshMs`, and fetched again when a token names a kid not in the set (a key rotated in since), at most once
 * per `unknownKidCooldownMs` however many unknown kids arrive, so random kids cannot make the sidecar hammer the
 * authority. A failed fetch keeps the keys it had.
 */
import http from "node:http";
import https from "node:https";
import { importJWK, type CryptoKey, type JWK } from "jose";
import { SIGNING_ALGORITHMS } from "../domain/keys.js";
import type { VerificationKeys } from "../domain/tokens.js";

export interface JwksOptions {
  /** The authority's base URL. */
  url: URL;
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
  refreshMs?: number;
  unknownKidCooldownMs?: number;
  /** Told of every failed fetch. */
  onError?: (err: unknown) => void;
  /** Told of every key set fetched: the kids it took (none: an HS256 authority publishes no key). */
  onLoaded?: (kids: string[]) => void;
}

interface Key {
  alg: string;
  publicKey: CryptoKey;
  jwk: JWK;
}

const MAX_BODY = 1 << 20;
const ALGORITHMS = new Set<string>(SIGNING_ALGORITHMS);

export class JwksKeys implements VerificationKeys {
  private byKid = new Map<string, Key>();
  private fetching: Promise<void> | undefined;
  private lastFetch = -Infinity;
  private loadedOnce = false;
  private readonly timer: NodeJS.Timeout;
  private readonly endpoint: URL;

  constructor(private readonly opts: JwksOptions) {
    this.endpoint = new URL(".well-known/jwks.json", opts.url.href.endsWith("/") ? opts.url : `${opts.url.href}/`);
    this.timer = setInterval(() => void this.refresh().catch(() => {}), opts.refreshMs ?? 60_000);
    this.timer.unref();
  }

  /** Whether a key set was ever loaded. */
  get loaded(): boolean {
    return this.loadedOnce;
  }

  /** The keys as JWKs (the sidecar's own `/.well-known/jwks.json` serves them again). */
  publicKeys(): JWK[] {
    return [...this.byKid.values()].map((k) => ({ ...k.jwk }));
  }

  async lookup(kid: string): Promise<{ alg: string; publicKey: CryptoKey } | undefined> {
    const hit = this.byKid.get(kid);
    if (hit) return hit;
    if (performance.now() - this.lastFetch >= (this.opts.unknownKidCooldownMs ?? 5_000)) await this.refresh().catch(() => {});
    else if (this.fetching) await this.fetching.catch(() => {});
    return this.byKid.get(kid);
  }

  /** Fetches the key set now (one fetch at a time; callers during one share it). Rejects if it failed. */
  refresh(): Promise<void> {
    this.fetching ??= this.fetchOnce().finally(() => (this.fetching = undefined));
    return this.fetching;
  }

  close(): void {
    clearInterval(this.timer);
  }

  private async fetchOnce(): Promise<void> {
    this.lastFetch = performance.now();
    try {
      const body = await get(this.endpoint, this.opts.tls ?? {});
      const set = JSON.parse(body) as { keys?: unknown };
      if (!Array.isArray(set.keys)) throw new Error("JWKS without a keys array");
      const next = new Map<string, Key>();
      for (const jwk of set.keys as JWK[]) {
        if (typeof jwk?.kid !== "string" || typeof jwk.alg !== "string" || !ALGORITHMS.has(jwk.alg)) continue;
        const known = this.byKid.get(jwk.kid);
        const publicKey = known?.alg === jwk.alg ? known.publicKey : ((await importJWK(jwk, jwk.alg)) as CryptoKey);
        next.set(jwk.kid, { alg: jwk.alg, publicKey, jwk });
      }
      this.byKid = next; // a key the authority no longer publishes stops verifying here too
      this.loadedOnce = true;
      this.opts.onLoaded?.([...next.keys()]);
    } catch (err) {
      this.opts.onError?.(err);
      throw err;
    }
  }
}

/** GET a small JSON document over http or https (with the authority's TLS settings); at most 1 MiB, 5 s. */
function get(url: URL, tls: { ca?: Buffer; cert?: Buffer; key?: Buffer }): Promise<string> {
  return new Promise((resolve, reject) => {
    const options = { timeout: 5_000, headers: { accept: "application/jwk-set+json, application/json" } };
    const req =
      url.protocol === "https:"
        ? https.get(url, { ...options, ...tls }, onResponse)
        : http.get(url, options, onResponse);
    req.on("timeout", () => req.destroy(new Error(`GET ${url.href} took over 5s`)));
    req.on("error", reject);
    function onResponse(res: http.IncomingMessage): void {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`GET ${url.href}: HTTP ${res.statusCode}`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (c: Buffer) => {
        size += c.length;
        if (size > MAX_BODY) req.destroy(new Error(`GET ${url.href}: body over ${MAX_BODY} bytes`));
        else chunks.push(c);
      });
      res.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
      res.on("error", reject);
    }
  });
}
