/**
 * Random protobuf-es messages of any schema, from a seed (the encoder's and the decoder's property tests,
 * test/unit/proto-encode.test.ts and proto-decode.test.ts): every field kind, Struct positions as JsonObjects the way
 * protobuf-es holds them, and now and then an unknown field.
 */
import { ScalarType, create, type DescField, type DescMessage } from "@bufbuild/protobuf";

/** A deterministic pseudo-random source (fast-check picks the seed). */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

export const STRINGS = ["", "a", "tessera", "ünïcödé ✓", "𝄞 surrogate pair", "x".repeat(200), "0", "\u0000\u001b"];

function scalarValue(type: ScalarType, r: () => number): unknown {
  const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)]!;
  switch (type) {
    case ScalarType.STRING:
      return pick(STRINGS);
    case ScalarType.BYTES:
      return pick([new Uint8Array(0), Uint8Array.of(1, 2, 3), new Uint8Array(300).fill(7)]);
    case ScalarType.BOOL:
      return r() < 0.5;
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return pick([0, -0, 1.5, -2.25, 1e300, Number.NaN, 3]);
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return pick([0, 1, -1, 127, 128, 2 ** 31 - 1, -(2 ** 31), 300]);
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return pick([0, 1, 127, 128, 2 ** 32 - 1, 16384]);
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return pick([0n, 1n, -1n, 2n ** 63n - 1n, -(2n ** 63n), 1796042910n]);
    default:
      return pick([0n, 1n, 2n ** 64n - 1n, 128n]);
  }
}

function fieldValue(f: DescField, r: () => number, depth: number): unknown {
  const many = (make: () => unknown) => Array.from({ length: Math.floor(r() * 4) }, make);
  switch (f.fieldKind) {
    case "scalar":
      return scalarValue(f.scalar, r);
    case "enum":
      return f.enum.values[Math.floor(r() * f.enum.values.length)]!.number;
    case "message":
      return messageValue(f, f.message, r, depth);
    case "list":
      if (f.listKind === "message") return many(() => messageValue(f, f.message, r, depth));
      if (f.listKind === "enum") return many(() => f.enum.values[Math.floor(r() * f.enum.values.length)]!.number);
      return many(() => scalarValue(f.scalar, r));
    case "map": {
      const out: Record<string, unknown> = {};
      for (let i = Math.floor(r() * 3); i > 0; i--) {
        const key = String(scalarValue(f.mapKey, r));
        out[key] =
          f.mapKind === "message"
            ? messageValue(f, f.message, r, depth)
            : f.mapKind === "enum"
              ? f.enum.values[0]!.number
              : scalarValue(f.scalar, r);
      }
      return out;
    }
  }
}

/** protobuf-es holds a google.protobuf.Struct as a JsonObject wherever it appears, except inside Value. */
function messageValue(f: DescField, desc: DescMessage, r: () => number, depth: number): unknown {
  if (desc.typeName === "google.protobuf.Struct" && f.parent.typeName !== "google.protobuf.Value") return randomJson(r, depth);
  return randomMessage(desc, r, depth + 1);
}

export function randomJson(r: () => number, depth: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const values = (): unknown => {
    const pick = r();
    if (pick < 0.15) return null;
    if (pick < 0.35) return scalarValue(ScalarType.DOUBLE, r);
    if (pick < 0.55) return scalarValue(ScalarType.STRING, r);
    if (pick < 0.7) return r() < 0.5;
    if (pick < 0.85 && depth < 3) return Array.from({ length: Math.floor(r() * 3) }, values);
    return depth < 3 ? randomJson(r, depth + 1) : "leaf";
  };
  for (let i = Math.floor(r() * 4); i > 0; i--) out[String(scalarValue(ScalarType.STRING, r)) + i] = values();
  return out;
}

export function randomMessage(desc: DescMessage, r: () => number, depth = 0): unknown {
  const init: Record<string, unknown> = {};
  for (const f of desc.fields) {
    if (r() < 0.3 || (depth > 3 && (f.fieldKind === "message" || f.fieldKind === "list" || f.fieldKind === "map"))) continue;
    const value = fieldValue(f, r, depth);
    if (f.oneof) init[f.oneof.localName] = { case: f.localName, value };
    else init[f.localName] = value;
  }
  const m = create(desc, init as never) as Record<string, unknown>;
  if (r() < 0.1) m.$unknown = [{ no: 1000, wireType: 0, data: Uint8Array.of(42) }];
  return m;
}

