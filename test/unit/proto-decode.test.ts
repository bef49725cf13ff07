/**
 * The lean path's request decoders (src/server/proto-decode.ts) against protobuf-es: whatever `decodeFast` decodes is
 * exactly what `fromBinary` gives; what it leaves (undefined) goes to fromBinary. On random messages of each request
 * type, on two messages one after the other (protobuf's merge), and on random damage to them.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { create, fromBinary, toBinary, type DescMessage } from "@bufbuild/protobuf";
import { StructSchema, ValueSchema } from "@bufbuild/protobuf/wkt";
import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { IntrospectRequestSchema, IssueRequestSchema, RefreshRequestSchema } from "../../gen/tessera/v1/token_pb.js";
import { decodeFast } from "../../src/server/proto-decode.js";
import { randomMessage, rng } from "../helpers/random-messages.js";

const SCHEMAS = [IssueRequestSchema, RefreshRequestSchema, IntrospectRequestSchema] as const;

/** fromBinary's answer, or the error it throws. */
function reference(schema: DescMessage, bytes: Uint8Array): { message: unknown } | { error: unknown } {
  try {
    return { message: fromBinary(schema, bytes) };
  } catch (error) {
    return { error };
  }
}

/** decodeFast gives fromBinary's message, or leaves it to fromBinary; returns whether it decoded. */
function agrees(schema: DescMessage, bytes: Uint8Array): boolean {
  const fast = decodeFast(schema, bytes);
  if (fast === undefined) return false;
  const ref = reference(schema, bytes);
  expect(ref).toHaveProperty("message");
  expect(fast).toStrictEqual((ref as { message: unknown }).message);
  return true;
}

const fromJsonValue = (json: unknown) => fromJson(ValueSchema, json as JsonValue);
const bytesOf = (schema: DescMessage, message: unknown) => toBinary(schema, message as never);
/** The message with the unknown fields randomMessage adds now and then taken out, at every depth. */
function withoutUnknown(m: unknown): unknown {
  if (Array.isArray(m)) m.forEach(withoutUnknown);
  else if (typeof m === "object" && m !== null && !(m instanceof Uint8Array)) {
    delete (m as { $unknown?: unknown }).$unknown;
    Object.values(m).forEach(withoutUnknown);
  }
  return m;
}

describe("decodeFast", () => {
  it.each(SCHEMAS.map((s) => [s.typeName, s] as const))("%s: decodes every random message, as fromBinary does", (_name, schema) => {
    fc.assert(
      fc.property(fc.integer(), (seed) => {
        const bytes = bytesOf(schema, withoutUnknown(randomMessage(schema, rng(seed))));
        expect(agrees(schema, bytes)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it.each(SCHEMAS.map((s) => [s.typeName, s] as const))("%s: two messages one after the other merge as fromBinary merges them", (_name, schema) => {
    fc.assert(
      fc.property(fc.integer(), fc.integer(), (a, b) => {
        const first = bytesOf(schema, withoutUnknown(randomMessage(schema, rng(a))));
        const second = bytesOf(schema, withoutUnknown(randomMessage(schema, rng(b))));
        expect(agrees(schema, Buffer.concat([first, second]))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it.each(SCHEMAS.map((s) => [s.typeName, s] as const))("%s: damaged bytes are decoded as fromBinary decodes them, or left to it", (_name, schema) => {
    fc.assert(
      fc.property(
        fc.integer(),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
        fc.nat(),
        fc.uint8Array({ maxLength: 8 }),
        (seed, flips, cut, tail) => {
          const bytes = Buffer.from(bytesOf(schema, randomMessage(schema, rng(seed))));
          for (const [at, value] of flips) if (bytes.length > 0) bytes[at % bytes.length] = value;
          const damaged = Buffer.concat([bytes.subarray(0, bytes.length === 0 ? 0 : cut % (bytes.length + 1)), tail]);
          agrees(schema, damaged);
          // Unknown fields are kept by fromBinary; this decoder leaves such messages to it.
          if (reference(schema, damaged).hasOwnProperty("message")) {
            const ref = (reference(schema, damaged) as { message: { $unknown?: unknown } }).message;
            if (ref.$unknown !== undefined) expect(decodeFast(schema, damaged)).toBeUndefined();
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it("decodes an empty message as protobuf-es's zero message", () => {
    for (const schema of SCHEMAS) expect(decodeFast(schema, new Uint8Array(0))).toStrictEqual(create(schema));
  });

  it("decodes the bench's Issue request, extra claims and client info included", () => {
    const message = create(IssueRequestSchema, {
      subject: "bench",
      audience: ["orders-api"],
      scopes: ["openid", "profile"],
      extraClaims: { tenant: "acme", plan: "pro", nested: { list: [1, "two", null, true, { deep: [] }] } },
      client: { deviceId: "d-1", userAgent: "Mozilla/5.0", ip: "203.0.113.7", platform: "ios" },
      accessTtl: { seconds: 300n, nanos: 0 },
      refreshTtl: { seconds: 86_400n, nanos: 5_000_000 },
      sensitiveClaims: { ssn: "000-00-0000" },
    });
    expect(agrees(IssueRequestSchema, bytesOf(IssueRequestSchema, message))).toBe(true);
  });

  it("leaves out a Struct entry named __proto__, as protobuf-es does, and sets no prototype", () => {
    const entry = (key: string, value: unknown) => toBinary(StructSchema, { $typeName: "google.protobuf.Struct", fields: { [key]: value } } as never);
    const proto = toBinary(StructSchema, create(StructSchema, { fields: JSON.parse('{"__proto__":{"kind":{"case":"stringValue","value":"x"}}}') }));
    const struct = Buffer.concat([proto, entry("a", create(ValueSchema, { kind: { case: "numberValue", value: 1 } }))]);
    const bytes = Buffer.concat([Buffer.from([0x22, struct.length]), struct]);
    expect(agrees(IssueRequestSchema, bytes)).toBe(true);
    const claims = (decodeFast(IssueRequestSchema, bytes) as { extraClaims: object }).extraClaims;
    expect(Object.getPrototypeOf(claims)).toBe(Object.prototype);
    expect(Object.keys(claims)).toEqual(["a"]);
  });

  it("merges a Value's struct or list that comes twice, and lets the last kind win, as fromBinary does", () => {
    /** A length-delimited field: its tag byte, the length as a varint, the bytes. */
    const ld = (tag: number, bytes: Uint8Array) => {
      const length: number[] = [];
      for (let n = bytes.length; ; n >>>= 7) {
        if (n < 0x80) {
          length.push(n);
          break;
        }
        length.push((n & 0x7f) | 0x80);
      }
      return Buffer.concat([Buffer.from([tag, ...length]), bytes]);
    };
    const value = (json: unknown) => toBinary(ValueSchema, fromJsonValue(json));
    const claims = (key: string, valueBytes: Uint8Array) => ld(0x22, ld(0x0a, Buffer.concat([ld(0x0a, Buffer.from(key)), ld(0x12, valueBytes)])));
    const cases = [
      Buffer.concat([value({ a: 1, b: { c: 2 } }), value({ b: "x", d: [true] })]),
      Buffer.concat([value([1, "two"]), value([null, { three: 3 }])]),
      Buffer.concat([value({ a: 1 }), value("string"), value({ b: 2 })]),
      Buffer.concat([value([1]), value({ a: 1 }), value([2])]),
      Buffer.concat([value(null), value(1.5), value(false)]),
    ];
    for (const valueBytes of cases) {
      const bytes = Buffer.concat([claims("k", valueBytes), claims("other", value(1)), claims("k", value({ again: true }))]);
      expect(agrees(IssueRequestSchema, Buffer.concat([claims("k", valueBytes), claims("other", value(1))]))).toBe(true);
      expect(agrees(IssueRequestSchema, bytes)).toBe(true);
    }
  });

  it("leaves a Struct nested deeper than it follows to fromBinary", () => {
    let json: unknown = "leaf";
    for (let i = 0; i < 40; i++) json = { k: json };
    const bytes = bytesOf(IssueRequestSchema, create(IssueRequestSchema, { subject: "s", extraClaims: json as never }));
    expect(decodeFast(IssueRequestSchema, bytes)).toBeUndefined();
    expect(reference(IssueRequestSchema, bytes)).toHaveProperty("message");
  });

  it("decodes nothing of other message types", () => {
    expect(decodeFast(StructSchema, new Uint8Array(0))).toBeUndefined();
  });
});
