/** Signing keys: KeyService.ListKeys (keys.read) and RotateKeys (keys.rotate), confirmed first. */
import { KeyState, type KeyInfo } from "../../../gen/tessera/v1/key_pb.js";
import { api } from "../api.js";
import { fill, h, table } from "../dom.js";
import { enumName, time } from "../format.js";
import { attempt, confirmAction, loading, say, statusLine } from "../ui.js";

export async function keysScreen(root: HTMLElement): Promise<void> {
  const immediate = h("input", { type: "checkbox", id: "rotate-immediate" });
  const rotate = h("button", { type: "button", class: "danger", id: "rotate-keys" }, "Rotate keys");
  const status = statusLine();
  status.id = "keys-status";
  const list = h("div", { class: "result", id: "keys-result" });
  fill(
    root,
    h("h1", null, "Signing keys"),
    h(
      "div",
      { class: "toolbar" },
      rotate,
      h("div", { class: "check" }, immediate, h("label", { for: "rotate-immediate" }, "Sign with the new key at once (skip the pre-publication)")),
    ),
    status,
    list,
  );
  const load = async () => {
    loading(list, "the keys");
    const res = await attempt("tessera.v1.KeyService/ListKeys", list, () => api.keys.listKeys({}));
    if (res) fill(list, keysTable(res.keys));
  };
  rotate.addEventListener("click", async () => {
    const now = immediate.checked;
    const reason = await confirmAction({
      title: "Rotate the signing keys?",
      body: now
        ? "A new key is made and signs every token from now on. Verifiers that cached the JWKS meet an unknown kid and must fetch it again."
        : "A new key is made and published now; it signs once TESSERA_KEY_PREPUBLISH has passed, so verifiers that cache the JWKS have it first. Older keys stay published until their tokens have expired.",
      confirmLabel: "Rotate keys",
    });
    if (reason === undefined) return say(status, "Nothing rotated.");
    const res = await attempt("tessera.v1.KeyService/RotateKeys", status, () => api.keys.rotateKeys({ immediate: now }));
    if (res?.key) say(status, `New key ${res.key.kid} (${enumName(KeyState, res.key.state)}).`);
    await load();
  });
  await load();
}

function keysTable(keys: KeyInfo[]): HTMLElement {
  if (keys.length === 0) return h("p", { class: "muted" }, "No keys.");
  const t = table(
    "Signing keys, newest first",
    ["Key id", "Algorithm", "State", "Signing", "Created (UTC)", "Signs from (UTC)", "Retired (UTC)", "Leaves the JWKS (UTC)", "Revoked (UTC)"],
    keys.map((k) => [
      h("code", { class: "kid" }, k.kid),
      k.alg,
      h("span", { class: `state state-${KeyState[k.state]?.toLowerCase() ?? "unspecified"}` }, enumName(KeyState, k.state)),
      k.signing ? "yes" : "no",
      time(k.createdAt),
      time(k.activatesAt),
      time(k.retiredAt),
      time(k.removedAt),
      time(k.revokedAt),
    ]),
    { class: "keys" },
  );
  t.tBodies[0]?.querySelectorAll("tr").forEach((tr, i) => tr.setAttribute("data-kid", keys[i]?.kid ?? ""));
  return t;
}
