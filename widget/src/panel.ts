/** The frame: a launcher button and a modal chat dialog inside an open shadow root; opening,
 * closing (remembered for the tab), the focus trap, fitting narrow screens, keeping the log
 * scrolled, the connection line and the polite live region. */
import { CHAT, CLOSE, h, icon, NEW } from "./dom";
import type { Strings } from "./strings";
import { CSS } from "./styles";
import type { LinkState } from "./transport";

export interface Look {
  title: string;
  accent: string;
  position: "right" | "left";
  theme: "auto" | "light" | "dark";
  strings: Strings;
}

export class Panel {
  readonly host = document.createElement("sidechat-widget");
  /** The message list. */
  readonly log: HTMLElement;
  private root = this.host.attachShadow({ mode: "open" });
  private s: Strings;
  private launcher: HTMLButtonElement;
  private dialog: HTMLElement;
  private state: HTMLElement;
  private live: HTMLElement;
  private teardown: (() => void)[] = [];

  /** `form` goes under the log; `focus` puts the focus in it; `clear` starts a new conversation. */
  constructor(look: Look, form: HTMLElement, private focus: () => void, clear: () => void) {
    const s = (this.s = look.strings);
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
    this.root.adoptedStyleSheets = [sheet];
    this.host.setAttribute("data-theme", look.theme);
    this.host.setAttribute("data-position", look.position);
    if (look.accent) this.host.style.setProperty("--a", look.accent);

    this.launcher = h("button", { class: "launch", type: "button", "aria-label": s.open, "aria-expanded": "false", "aria-controls": "sc-panel", onclick: () => this.toggle() });
    this.launcher.append(icon(CHAT));
    const close = h("button", { class: "icon", type: "button", "aria-label": s.close, title: s.close, onclick: () => this.close() });
    close.append(icon(CLOSE));
    const fresh = h("button", { class: "icon", type: "button", "aria-label": s.clear, title: s.clear, onclick: clear });
    fresh.append(icon(NEW));
    this.log = h("div", { class: "log", role: "log", "aria-live": "off", "aria-label": look.title, tabindex: "0" });
    this.state = h("div", { class: "state", role: "status" });
    this.live = h("div", { class: "sr", role: "status", "aria-live": "polite", "aria-atomic": "true" });
    this.dialog = h("div", { class: "panel", id: "sc-panel", role: "dialog", "aria-modal": "true", "aria-labelledby": "sc-title", hidden: true, onkeydown: (e) => this.trap(e as KeyboardEvent) },
      h("header", {}, h("h2", { id: "sc-title" }, look.title), fresh, close), this.log, this.state, form, this.live);
    this.root.append(this.dialog, this.launcher);
    document.body.append(this.host);

    const vv = window.visualViewport;
    const fit = (): void => {
      // Narrow screens: the panel fills the visual viewport, so the input stays above the keyboard.
      const narrow = innerWidth <= 600 && vv;
      this.dialog.style.height = narrow ? `${vv.height}px` : "";
      this.dialog.style.top = narrow ? `${vv.offsetTop}px` : "";
    };
    vv?.addEventListener("resize", fit);
    vv?.addEventListener("scroll", fit);
    this.teardown.push(() => (vv?.removeEventListener("resize", fit), vv?.removeEventListener("scroll", fit)));
  }

  /** Whether the panel was open before this page load (in this tab). */
  static wasOpen(): boolean {
    try {
      return sessionStorage.getItem("sidechat.open") === "1";
    } catch {
      return false; // storage disabled
    }
  }

  destroy(): void {
    this.teardown.forEach((f) => f());
    this.host.remove();
  }

  open(focus = true): void {
    this.dialog.hidden = false;
    this.host.setAttribute("data-open", "");
    this.launcher.setAttribute("aria-expanded", "true");
    this.launcher.setAttribute("aria-label", this.s.close);
    this.remember("1");
    this.scroll();
    if (focus) this.focus();
  }

  close(): void {
    if (this.dialog.hidden) return;
    this.dialog.hidden = true;
    this.host.removeAttribute("data-open");
    this.launcher.setAttribute("aria-expanded", "false");
    this.launcher.setAttribute("aria-label", this.s.open);
    this.remember("0");
    this.launcher.focus();
  }

  toggle(): void {
    if (this.dialog.hidden) this.open();
    else this.close();
  }

  scroll(): void {
    const log = this.log;
    requestAnimationFrame(() => (log.scrollTop = log.scrollHeight));
  }

  /** Follows new text only when the reader is already at (or near) the bottom. */
  stickToBottom(): void {
    const log = this.log;
    if (log.scrollHeight - log.scrollTop - log.clientHeight < 80) this.scroll();
  }

  /** The connection line under the log: empty while live, or when `text` is "". */
  link(state: LinkState | "", text?: string): void {
    const s = this.s;
    const msg = text ?? (state === "reconnecting" ? s.reconnecting : state === "offline" ? s.offline : "");
    if (this.state.textContent !== msg) this.state.textContent = msg;
    this.state.className = msg ? "state warn" : "state";
  }

  /** Says `text` once to screen readers, politely. */
  announce(text: string): void {
    this.live.textContent = text;
  }

  private remember(v: string): void {
    try {
      sessionStorage.setItem("sidechat.open", v);
    } catch {
      /* storage disabled */
    }
  }

  private trap(e: KeyboardEvent): void {
    if (e.key === "Escape") {
      e.preventDefault();
      e.stopPropagation();
      this.close();
      return;
    }
    if (e.key !== "Tab") return;
    const items = [...this.dialog.querySelectorAll<HTMLElement>("button,textarea,a[href],[tabindex='0']")].filter(
      (el) => !(el as HTMLButtonElement).disabled && el.getClientRects().length,
    );
    if (!items.length) return;
    const first = items[0];
    const last = items[items.length - 1];
    const current = this.root.activeElement;
    if (e.shiftKey && (current === first || !this.dialog.contains(current))) {
      e.preventDefault();
      last.focus();
    } else if (!e.shiftKey && (current === last || !this.dialog.contains(current))) {
      e.preventDefault();
      first.focus();
    }
  }
}
