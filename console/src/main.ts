/**
 * The operator console: a login that keeps the API key in memory, and four screens (overview, subjects, audit trail,
 * signing keys), each calling the RPCs its name says with the key. No state outside this tab's memory.
 */
import "./style.css";
import { forgetKey, setKey } from "./api.js";
import { destroyCharts } from "./charts.js";
import { fill } from "./dom.js";
import { auditScreen } from "./screens/audit.js";
import { keysScreen } from "./screens/keys.js";
import { overviewScreen } from "./screens/overview.js";
import { subjectScreen } from "./screens/subject.js";
import { whenKeyRefused } from "./ui.js";

const SCREENS = {
  overview: overviewScreen,
  subject: subjectScreen,
  audit: auditScreen,
  keys: keysScreen,
} as const;
type ScreenName = keyof typeof SCREENS;

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing from index.html`);
  return el as T;
};

function start(): void {
  const login = $("login");
  const form = $<HTMLFormElement>("login-form");
  const keyInput = $<HTMLInputElement>("api-key");
  const loginError = $("login-error");
  const nav = $("nav");
  const logout = $("logout");
  const screen = $("screen");
  const main = $("main");

  const show = (name: ScreenName): void => {
    destroyCharts();
    for (const b of nav.querySelectorAll<HTMLButtonElement>("button[data-screen]")) {
      if (b.dataset["screen"] === name) b.setAttribute("aria-current", "page");
      else b.removeAttribute("aria-current");
    }
    fill(screen);
    screen.dataset["screen"] = name;
    void SCREENS[name](screen);
  };

  const signOut = (why?: string): void => {
    forgetKey();
    destroyCharts();
    fill(screen);
    screen.hidden = true;
    nav.hidden = true;
    logout.hidden = true;
    login.hidden = false;
    loginError.hidden = why === undefined;
    loginError.textContent = why ?? "";
    keyInput.value = "";
    keyInput.focus();
  };

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    setKey(keyInput.value.trim());
    keyInput.value = ""; // the only copy is api.ts's
    login.hidden = true;
    loginError.hidden = true;
    nav.hidden = false;
    logout.hidden = false;
    screen.hidden = false;
    show("overview");
    main.focus();
  });
  nav.addEventListener("click", (ev) => {
    const button = (ev.target as HTMLElement).closest<HTMLButtonElement>("button[data-screen]");
    const name = button?.dataset["screen"];
    if (name && name in SCREENS) {
      show(name as ScreenName);
      main.focus();
    }
  });
  logout.addEventListener("click", () => signOut());
  whenKeyRefused((why) => signOut(why));
  keyInput.focus();
}

start();
