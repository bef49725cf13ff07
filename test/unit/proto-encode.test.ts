/**
 * The lean path's encoder against protobuf-es: for random messages of every message type of the API (and the
 * well-known and error-detail types they use), `encodeMessage` gives the very bytes `toBinary` gives.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { create, toBinary, type DescMessage } from "@bufbuild/protobuf";
import { nestedTypes } from "@bufbuild/protobuf/reflect";
import { file_google_protobuf_struct, file_google_protobuf_timestamp } from "@bufbuild/protobuf/wkt";
import { file_google_rpc_error_details } from "../../gen/google/rpc/error_details_pb.js";
import { file_tessera_v1_audit } from "../../gen/tessera/v1/audit_pb.js";
import { file_tessera_v1_common } from "../../gen/tessera/v1/common_pb.js";
import { file_tessera_v1_key } from "../../gen/tessera/v1/key_pb.js";
import { file_tessera_v1_session } from "../../gen/tessera/v1/session_pb.js";
import { file_tessera_v1_token } from "../../gen/tessera/v1/token_pb.js";
import { encodeMessage } from "../../src/server/proto-encode.js";
import { randomMessage, rng } from "../helpers/random-messages.js";

const FILES = [
  file_tessera_v1_token,
  file_tessera_v1_session,
  file_tessera_v1_key,
  file_tessera_v1_audit,
  file_tessera_v1_common,
  file_google_rpc_error_details,
  file_google_protobuf_struct,
  file_google_protobuf_timestamp,
];
const MESSAGES = FILES.flatMap((f) => [...nestedTypes(f)].filter((t): t is DescMessage => t.kind === "message"));

describe("encodeMessage", () => {
  it("covers every message type of the API", () => {
    expect(MESSAGES.map((m) => m.typeName)).toEqual(
      expect.arrayContaining(["tessera.v1.IntrospectResponse", "tessera.v1.IssueResponse", "google.protobuf.Struct", "google.rpc.BadRequest"]),
    );
  });

  it.each(MESSAGES.map((m) => [m.typeName, m] as const))("%s: the same bytes as protobuf-es toBinary", (_name, desc) => {
    fc.assert(
      fc.property(fc.integer(), (seed) => {
        const message = randomMessage(desc, rng(seed));
        expect(Buffer.from(encodeMessage(desc, message)).toString("hex")).toBe(Buffer.from(toBinary(desc, message as never)).toString("hex"));
      }),
      { numRuns: 200 },
    );
  });

  it("writes an empty message as no bytes", () => {
    for (const desc of MESSAGES) expect(encodeMessage(desc, create(desc)).length).toBe(0);
  });
});
