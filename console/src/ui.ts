/** Pieces every screen uses: the refusal box, the status line, the confirmation dialog, a call wrapper. */
import { explain, type Refusal } from "./api.js";
import { fill, h } from "./dom.js";
import type { ConsoleRpc } from "./permissions.js";

/** Set by main.ts: what to do when the key itself is refused (back to the login, saying why). */
let onBadKey: (why: string) => void = () => {};
export function whenKeyRefused(handler: (why: string) => void): void {
  onBadKey = handler;
}

/** A readable refusal, announced to screen readers. */
export function refusalBox(r: Refusal): HTMLElement {
  return h("div", { class: "refusal", role: "alert", "data-code": r.code }, h("strong", null, `${r.title}. `), r.text);
}

/**
 * Runs one call; on failure shows its refusal in `into` (replacing what was there) and returns undefined. A key the
 * authority does not accept ends the console session.
 */
export async function attempt<T>(rpc: ConsoleRpc, into: Element, call: () => Promise<T>): Promise<T | undefined> {
  try {
    return await call();
  } catch (err) {
    const r = explain(err, rpc);
    if (r.badKey) onBadKey(r.text);
    else fill(into, refusalBox(r));
    return undefined;
  }
}

/** A polite live region for results of actions ("1 session revoked"). */
export function statusLine(): HTMLElement {
  return h("p", { class: "status", role: "status", "aria-live": "polite" });
}

export function say(status: HTMLElement, text: string, kind: "ok" | "error" = "ok"): void {
  status.dataset["kind"] = kind;
  fill(status, text);
}

export function loading(into: Element, what: string): void {
  fill(into, h("p", { class: "loading" }, `Loading ${what}…`));
}

export interface ConfirmOptions {
  title: string;
  body: string;
  confirmLabel: string;
  /** Ask for a reason (recorded in the audit trail); its initial value. */
  reason?: string;
}

/**
 * A modal confirmation (<dialog>): resolves with the reason (or "") when confirmed, undefined when cancelled (Cancel
 * or Escape). Focus starts on Cancel, so Enter alone never confirms a destructive action.
 */
export function confirmAction(opts: ConfirmOptions): Promise<string | undefined> {
  return new Promise((resolve) => {
    const reason = opts.reason === undefined ? undefined : h("input", { type: "text", value: opts.reason, maxlength: 200, autocomplete: "off" });
    const cancel = h("button", { type: "button", class: "secondary" }, "Cancel");
    const confirm = h("button", { type: "button", class: "danger" }, opts.confirmLabel);
    const titleId = `dlg-${Math.random().toString(36).slice(2, 10)}`;
    const dialog = h(
      "dialog",
      { class: "confirm", "aria-labelledby": titleId },
      h("h2", { id: titleId }, opts.title),
      h("p", null, opts.body),
      reason ? h("div", { class: "field" }, h("label", { for: `${titleId}-reason` }, "Reason (for the audit trail)"), reason) : null,
      h("div", { class: "actions" }, cancel, confirm),
    );
    if (reason) reason.id = `${titleId}-reason`;
    let answer: string | undefined;
    const opener = document.activeElement as HTMLElement | null;
    cancel.addEventListener("click", () => dialog.close());
    confirm.addEventListener("click", () => {
      answer = reason?.value.trim() ?? "";
      dialog.close();
    });
    dialog.addEventListener("close", () => {
      dialog.remove();
      opener?.focus();
      resolve(answer);
    });
    document.body.appendChild(dialog);
    dialog.showModal();
    cancel.focus();
  });
}
