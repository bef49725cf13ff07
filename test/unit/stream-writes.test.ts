/** grpc-message percent-encoding as the gRPC over HTTP/2 spec words it. */
import { describe, expect, it } from "vitest";
import { percentEncode } from "../../src/server/stream-writes.js";

describe("percentEncode", () => {
  it("leaves printable ASCII but % as it is, and encodes % and every byte of UTF-8 outside 0x20-0x7E", () => {
    expect(percentEncode("subject: must not be empty")).toBe("subject: must not be empty");
    expect(percentEncode("100% ü\nx")).toBe("100%25 %C3%BC%0Ax");
    expect(percentEncode("\u202e")).toBe("%E2%80%AE");
  });

  it("round-trips through decodeURIComponent, as clients read it", () => {
    for (const m of ["a%b", "ünïcödé ✓", "line\r\nbreak", "tab\there", "𝄞", "plain"]) expect(decodeURIComponent(percentEncode(m))).toBe(m);
  });
});
