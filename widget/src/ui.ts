/** The widget: a launcher button and a chat dialog inside an open shadow root. */
import { renderMarkdown, safeUrl, stableLength } from "./markdown";
import { sanitize } from "./sanitize";
import { load, save, type Conversation, type Message } from "./store";
import { STRINGS, type Strings } from "./strings";
import { CSS } from "./styles";
import { backoff, follow, nap, type LinkState, type Mode, type UIChunk } from "./transport";

export interface Config {
  server: string;
  title: string;
  greeting: string;
  placeholder: string;
  accent: string;
  position: "right" | "left";
  theme: "auto" | "light" | "dark";
  open: boolean;
  bufferTimeout: number;
  transport?: Mode;
  strings: Strings;
}

type Attrs = Record<string, string | boolean | ((e: Event) => void)>;

function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...kids: (Node | string)[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else if (v !== false) el.setAttribute(k, v);
  }
  el.append(...kids);
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";
function icon(d: string): SVGSVGElement {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(SVG_NS, "path");
  path.setAttribute("d", d);
  svg.append(path);
  return svg;
}
const CHAT = "M21 12a8 8 0 0 1-11.6 7.1L4 20l1-4.6A8 8 0 1 1 21 12z";
const CLOSE = "M6 6l12 12M18 6L6 18";
const NEW = "M12 5v14M5 12h14";
const UP = "M7 10v11H3V10zm0 0l4-8a2 2 0 0 1 3 2l-1 5h6a2 2 0 0 1 2 2.3l-1.4 8A2 2 0 0 1 17.6 21H7";
const DOWN = "M17 14V3h4v11zm0 0l-4 8a2 2 0 0 1-3-2l1-5H5a2 2 0 0 1-2-2.3l1.4-8A2 2 0 0 1 6.4 3H17";

/** Renders a growing Markdown answer: finished blocks are rendered once and kept; only the last,
 * unfinished block is re-rendered as tokens arrive, at most once per animation frame. */
class Answer {
  readonly el = h("div", { class: "md" });
  private done = h("div");
  private tail = h("div");
  private committed = 0;
  private text = "";
  private frame = 0;

  constructor() {
    this.el.append(this.done, this.tail);
  }

  set(text: string): void {
    if (!text.startsWith(this.text.slice(0, this.committed))) {
      this.committed = 0;
      this.done.replaceChildren();
    }
    this.text = text;
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  flush(): void {
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    const stable = stableLength(this.text, this.committed);
    if (stable > this.committed) {
      this.done.append(sanitize(renderMarkdown(this.text.slice(this.committed, stable))));
      this.committed = stable;
    }
    this.tail.replaceChildren(sanitize(renderMarkdown(this.text.slice(this.committed))));
  }
}

interface View {
  msg: Message;
  el: HTMLElement;
  answer?: Answer;
  sources?: HTMLElement;
  note?: HTMLElement;
  fb?: HTMLElement;
}

export class Widget {
  readonly host = document.createElement("sidechat-widget");
  private root = this.host.attachShadow({ mode: "open" });
  private s: Strings;
  private launcher: HTMLButtonElement;
  private panel: HTMLElement;
  private log: HTMLElement;
  private input: HTMLTextAreaElement;
  private go: HTMLButtonElement;
  private state: HTMLElement;
  private live: HTMLElement;
  private conv: Conversation;
  private views: View[] = [];
  private active: { view: View; ctrl: AbortController; stop: boolean } | null = null;
  private saveTimer = 0;
  private channel: BroadcastChannel | null = null;
  private teardown: (() => void)[] = [];

  constructor(private cfg: Config) {
    const s = (this.s = cfg.strings);
    this.conv = { key: cfg.server, conversationId: null, messages: [], updated: 0 };
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
    this.root.adoptedStyleSheets = [sheet];
    this.host.setAttribute("data-theme", cfg.theme);
    this.host.setAttribute("data-position", cfg.position);
    if (cfg.accent) this.host.style.setProperty("--a", cfg.accent);

    this.launcher = h("button", { class: "launch", type: "button", "aria-label": s.open, "aria-expanded": "false", "aria-controls": "sc-panel", onclick: () => this.toggle() });
    this.launcher.append(icon(CHAT));
    const close = h("button", { class: "icon", type: "button", "aria-label": s.close, title: s.close, onclick: () => this.close() });
    close.append(icon(CLOSE));
    const fresh = h("button", { class: "icon", type: "button", "aria-label": s.clear, title: s.clear, onclick: () => this.clear() });
    fresh.append(icon(NEW));
    this.log = h("div", { class: "log", role: "log", "aria-live": "off", "aria-label": cfg.title, tabindex: "0" });
    this.state = h("div", { class: "state", role: "status" });
    this.live = h("div", { class: "sr", role: "status", "aria-live": "polite", "aria-atomic": "true" });
    this.input = h("textarea", { rows: "1", id: "sc-input", placeholder: cfg.placeholder, "aria-label": s.inputLabel, enterkeyhint: "send", onkeydown: (e) => this.onKey(e as KeyboardEvent), oninput: () => this.grow() });
    this.go = h("button", { class: "go", type: "submit" }, s.send);
    const form = h("form", { onsubmit: (e) => (e.preventDefault(), this.submit()) }, h("label", { class: "sr", for: "sc-input" }, s.inputLabel), this.input, this.go);
    this.panel = h("div", { class: "panel", id: "sc-panel", role: "dialog", "aria-modal": "true", "aria-labelledby": "sc-title", hidden: true, onkeydown: (e) => this.trap(e as KeyboardEvent) },
      h("header", {}, h("h2", { id: "sc-title" }, cfg.title), fresh, close), this.log, this.state, form, this.live);
    this.root.append(this.panel, this.launcher);
    document.body.append(this.host);

    const vv = window.visualViewport;
    const fit = (): void => {
      // Narrow screens: the panel fills the visual viewport, so the input stays above the keyboard.
      const narrow = innerWidth <= 600 && vv;
      this.panel.style.height = narrow ? `${vv.height}px` : "";
      this.panel.style.top = narrow ? `${vv.offsetTop}px` : "";
    };
    vv?.addEventListener("resize", fit);
    vv?.addEventListener("scroll", fit);
    this.teardown.push(() => (vv?.removeEventListener("resize", fit), vv?.removeEventListener("scroll", fit)));
    const onVisible = (): void => {
      if (document.visibilityState === "visible" && !this.active) void this.reload();
    };
    document.addEventListener("visibilitychange", onVisible);
    this.teardown.push(() => document.removeEventListener("visibilitychange", onVisible));
    const flush = (): void => void this.persist(true);
    addEventListener("pagehide", flush);
    this.teardown.push(() => removeEventListener("pagehide", flush));
    if (typeof BroadcastChannel === "function") {
      this.channel = new BroadcastChannel("sidechat");
      this.channel.onmessage = (e) => e.data === cfg.server && !this.active && void this.reload();
    }
    let wasOpen = false;
    try {
      wasOpen = sessionStorage.getItem("sidechat.open") === "1";
    } catch {
      /* storage disabled */
    }
    if (cfg.open || wasOpen) this.open(false);
    void this.reload(true);
  }

  destroy(): void {
    this.active?.ctrl.abort();
    this.channel?.close();
    this.teardown.forEach((f) => f());
    this.host.remove();
  }

  // -- opening, closing, keyboard -------------------------------------------------------------
  open(focus = true): void {
    this.panel.hidden = false;
    this.host.setAttribute("data-open", "");
    this.launcher.setAttribute("aria-expanded", "true");
    this.launcher.setAttribute("aria-label", this.s.close);
    this.remember("1");
    this.scroll();
    if (focus) this.input.focus();
  }

  close(): void {
    if (this.panel.hidden) return;
    this.panel.hidden = true;
    this.host.removeAttribute("data-open");
    this.launcher.setAttribute("aria-expanded", "false");
    this.launcher.setAttribute("aria-label", this.s.open);
    this.remember("0");
    this.launcher.focus();
  }

  toggle(): void {
    if (this.panel.hidden) this.open();
    else this.close();
  }

  private remember(v: string): void {
    try {
      sessionStorage.setItem("sidechat.open", v);
    } catch {
      /* storage disabled */
    }
  }

  private onKey(e: KeyboardEvent): void {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      this.submit();
    }
  }

  private grow(): void {
    this.input.style.height = "auto";
    this.input.style.height = `${Math.min(this.input.scrollHeight + 2, 140)}px`;
  }

  private trap(e: KeyboardEvent): void {
    if (e.key === "Escape") {
      e.preventDefault();
      e.stopPropagation();
      this.close();
      return;
    }
    if (e.key !== "Tab") return;
    const items = [...this.panel.querySelectorAll<HTMLElement>("button,textarea,a[href],[tabindex='0']")].filter(
      (el) => !(el as HTMLButtonElement).disabled && el.getClientRects().length,
    );
    if (!items.length) return;
    const first = items[0];
    const last = items[items.length - 1];
    const current = this.root.activeElement;
    if (e.shiftKey && (current === first || !this.panel.contains(current))) {
      e.preventDefault();
      last.focus();
    } else if (!e.shiftKey && (current === last || !this.panel.contains(current))) {
      e.preventDefault();
      first.focus();
    }
  }

  // -- history ----------------------------------------------------------------------------------
  private async reload(initial = false): Promise<void> {
    const conv = await load(this.cfg.server);
    if (this.active) return;
    this.conv = conv;
    this.render();
    // A reply that was streaming when the page went away (or that another tab is streaming)
    // continues from its last event id.
    const last = conv.messages[conv.messages.length - 1];
    if (last?.role === "assistant") {
      if (last.status === "streaming" && last.turnId) void this.stream(this.views[this.views.length - 1]);
      else if (last.status === "pending" && initial) {
        last.status = "error";
        last.error = this.s.error;
        this.update(this.views[this.views.length - 1]);
      }
    }
  }

  private render(): void {
    this.views = [];
    this.log.replaceChildren();
    if (this.cfg.greeting) {
      const greet = new Answer();
      greet.set(this.cfg.greeting);
      greet.flush();
      this.log.append(h("div", { class: "msg bot" }, greet.el));
    }
    for (const msg of this.conv.messages) this.add(msg);
    this.scroll();
  }

  private add(msg: Message): View {
    let view: View;
    if (msg.role === "user") {
      view = { msg, el: h("div", { class: "msg user" }, h("span", { class: "sr" }, `${this.s.you}: `), msg.content) };
    } else {
      const answer = new Answer();
      view = { msg, answer, el: h("div", { class: "msg bot", "aria-busy": "false" }, h("span", { class: "sr" }, `${this.s.assistant}: `), answer.el) };
      view.sources = h("div", { class: "src" });
      view.note = h("div", { class: "note" });
      view.fb = h("div", { class: "fb" });
      view.el.append(view.sources, view.note, view.fb);
      this.update(view);
    }
    this.views.push(view);
    this.log.append(view.el);
    return view;
  }

  /** Brings an assistant message's sources, status and feedback up to date (not its text). */
  private update(view: View, text = true): void {
    const { msg } = view;
    if (text) {
      view.answer!.set(msg.content);
      view.answer!.flush();
    }
    const busy = msg.status === "pending" || msg.status === "streaming";
    view.el.setAttribute("aria-busy", String(busy));
    const sources = (msg.sources ?? []).filter((src) => safeUrl(src.url) !== null && /^https?:/i.test(src.url));
    view.sources!.replaceChildren();
    if (sources.length) {
      view.sources!.append(
        h("span", {}, this.s.sources),
        h("ul", {}, ...sources.map((src) => h("li", {}, h("a", { href: src.url, target: "_blank", rel: "noopener noreferrer" }, src.title || src.url, h("span", { class: "sr" }, ` ${this.s.newTab}`))))),
      );
    }
    const note = view.note!;
    note.replaceChildren();
    note.className = "note";
    if (busy && !msg.content) note.append(h("span", { class: "dots", "aria-label": this.s.thinking, role: "img" }, h("i"), h("i"), h("i")));
    if (msg.status === "aborted") note.append(this.s.stopped);
    if (msg.status === "error") {
      note.className = "note err";
      note.append(msg.error || this.s.error, h("button", { class: "small", type: "button", onclick: () => this.retry(view) }, this.s.retry));
    }
    view.fb!.replaceChildren();
    if (msg.status === "done" && msg.turnId) {
      const rate = (rating: "up" | "down", label: string, d: string): HTMLButtonElement => {
        const b = h("button", { type: "button", "aria-label": label, title: label, "aria-pressed": String(msg.rating === rating), onclick: () => void this.rate(view, rating) });
        b.append(icon(d));
        return b;
      };
      view.fb!.append(rate("up", this.s.helpful, UP), rate("down", this.s.notHelpful, DOWN));
    }
  }

  private scroll(): void {
    const log = this.log;
    requestAnimationFrame(() => (log.scrollTop = log.scrollHeight));
  }

  private persist(now = false): Promise<void> | void {
    // Throttled while tokens stream: at most one write per 250 ms (text and id always together).
    if (!now) {
      this.saveTimer ||= window.setTimeout(() => void this.persist(true), 250);
      return;
    }
    clearTimeout(this.saveTimer);
    this.saveTimer = 0;
    return save(this.conv).then(() => this.channel?.postMessage(this.cfg.server));
  }

  private setState(state: LinkState | "" , text?: string): void {
    const s = this.s;
    const msg = text ?? (state === "reconnecting" ? s.reconnecting : state === "offline" ? s.offline : "");
    if (this.state.textContent !== msg) this.state.textContent = msg;
    this.state.className = msg ? "state warn" : "state";
  }

  private busy(on: boolean): void {
    this.go.textContent = on ? this.s.stop : this.s.send;
    this.go.classList.toggle("stop", on);
    this.go.type = on ? "button" : "submit";
    this.go.onclick = on ? () => this.stop() : null;
  }

  // -- turns ------------------------------------------------------------------------------------
  private submit(): void {
    const text = this.input.value.trim();
    if (!text || this.active) return;
    this.input.value = "";
    this.grow();
    this.conv.messages.push({ role: "user", content: text });
    this.add(this.conv.messages[this.conv.messages.length - 1]);
    const msg: Message = { role: "assistant", content: "", status: "pending" };
    this.conv.messages.push(msg);
    const view = this.add(msg);
    this.scroll();
    void this.persist(true);
    void this.start(view, text);
  }

  private retry(view: View): void {
    if (this.active) return;
    const i = this.conv.messages.indexOf(view.msg);
    const question = this.conv.messages[i - 1];
    if (!question || question.role !== "user") return;
    Object.assign(view.msg, { content: "", status: "pending", error: undefined, sources: [], turnId: undefined, lastEventId: 0, rating: undefined });
    this.update(view);
    this.input.focus(); // the Retry button is gone
    void this.start(view, question.content);
  }

  private async start(view: View, text: string): Promise<void> {
    const ctrl = new AbortController();
    this.active = { view, ctrl, stop: false };
    this.busy(true);
    const { msg } = view;
    let res: Response | null = null;
    for (let attempt = 0; !ctrl.signal.aborted && !this.active?.stop; attempt++) {
      try {
        res = await fetch(`${this.cfg.server}/api/chat`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ message: text, conversation_id: this.conv.conversationId }),
          signal: ctrl.signal,
        });
        if (res.status === 404 && this.conv.conversationId) {
          this.conv.conversationId = null; // the server forgot it (restart): start a new one
          continue;
        }
        if (res.status !== 429 && res.status < 500) break;
      } catch {
        res = null;
      }
      if (attempt >= 6) break;
      this.setState(navigator.onLine === false ? "offline" : "reconnecting");
      const after = Number(res?.headers.get("retry-after"));
      await nap(after > 0 ? after * 1000 : backoff(attempt), ctrl.signal);
    }
    this.setState("");
    if (ctrl.signal.aborted) return; // cleared or torn down meanwhile
    if (res?.status === 202) {
      const body = (await res.json()) as { conversation_id: string; turn_id: string };
      this.conv.conversationId = body.conversation_id;
      Object.assign(msg, { turnId: body.turn_id, status: "streaming", lastEventId: 0 });
      await this.persist(true);
      return this.stream(view, ctrl); // cancels at once if Stop was pressed meanwhile
    }
    if (this.active.stop) {
      msg.status = "aborted";
    } else {
      msg.status = "error";
      try {
        msg.error = ((await res!.json()) as { error: { message: string } }).error.message;
      } catch {
        msg.error = this.s.error;
      }
    }
    this.finish(view);
  }

  private async stream(view: View, ctrl = new AbortController()): Promise<void> {
    const { msg } = view;
    this.active = { view, ctrl, stop: this.active?.view === view && this.active.stop };
    this.busy(true);
    this.update(view, false);
    if (this.active.stop) void this.cancel(msg.turnId!);
    let textChanged = false;
    const outcome = await follow({
      base: this.cfg.server,
      turnId: msg.turnId!,
      after: msg.lastEventId ?? 0,
      bufferTimeout: this.cfg.bufferTimeout,
      mode: this.cfg.transport,
      signal: ctrl.signal,
      onState: (state) => this.setState(state === "live" ? "" : state),
      onEvent: (id, chunk: UIChunk) => {
        this.setState("");
        msg.lastEventId = id;
        switch (chunk.type) {
          case "text-delta":
            msg.content += String(chunk.delta ?? "");
            view.answer!.set(msg.content);
            if (!textChanged) this.update(view, false); // hide the thinking dots
            textChanged = true;
            this.stickToBottom();
            break;
          case "source-url":
            (msg.sources ??= []).some((s) => s.id === chunk.sourceId) ||
              msg.sources.push({ id: String(chunk.sourceId), url: String(chunk.url), title: String(chunk.title ?? "") });
            this.update(view, false);
            break;
          case "error":
            msg.status = "error";
            msg.error = String(chunk.errorText ?? "");
            break;
          case "abort":
            msg.status = "aborted";
            break;
        }
        void this.persist();
      },
    });
    if (outcome === "stopped" && !this.active?.stop) return; // torn down: keep "streaming" for later
    if (outcome === "gone") {
      msg.status = "error";
      msg.error = this.s.unavailable;
    } else if (outcome === "stopped") {
      msg.status = "aborted";
    } else if (msg.status === "streaming") {
      msg.status = "done";
    }
    this.finish(view, true);
  }

  private finish(view: View, announce = false): void {
    const { msg } = view;
    this.active = null;
    this.busy(false);
    this.setState("");
    this.update(view);
    void this.persist(true);
    if (announce) {
      // One polite announcement per answer, when it is complete (never token by token).
      const text = msg.status === "error" ? msg.error || this.s.error : msg.status === "aborted" ? this.s.stopped : `${this.s.answerReady}${view.answer!.el.textContent ?? ""}`;
      this.live.textContent = text;
    }
    this.stickToBottom();
  }

  private stickToBottom(): void {
    const log = this.log;
    if (log.scrollHeight - log.scrollTop - log.clientHeight < 80) this.scroll();
  }

  private stop(): void {
    const active = this.active;
    if (!active || active.stop) return;
    active.stop = true;
    if (active.view.msg.turnId) {
      void this.cancel(active.view.msg.turnId).then((ok) => ok || active.ctrl.abort());
    }
  }

  private async cancel(turnId: string): Promise<boolean> {
    // The stream then ends with `abort` and [DONE]; if cancel cannot be sent, stop locally.
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const res = await fetch(`${this.cfg.server}/api/turns/${encodeURIComponent(turnId)}/cancel`, { method: "POST" });
        if (res.ok) return true;
        if (res.status < 500) return false;
      } catch {
        /* retry */
      }
      await nap(backoff(attempt));
    }
    return false;
  }

  private async rate(view: View, rating: "up" | "down"): Promise<void> {
    const { msg } = view;
    msg.rating = rating;
    // Only the pressed state changes, so the focused button stays focused.
    view.fb!.querySelectorAll("button").forEach((b, i) => b.setAttribute("aria-pressed", String((i ? "down" : "up") === rating)));
    void this.persist(true);
    try {
      const res = await fetch(`${this.cfg.server}/api/turns/${encodeURIComponent(msg.turnId!)}/feedback`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ rating }),
      });
      if (res.ok) this.live.textContent = this.s.thanks;
    } catch {
      /* feedback is best effort */
    }
  }

  private clear(): void {
    if (this.active) {
      this.stop();
      this.active.ctrl.abort();
      this.active = null;
      this.busy(false);
    }
    this.conv = { key: this.cfg.server, conversationId: null, messages: [], updated: 0 };
    void this.persist(true);
    this.render();
    this.input.focus();
  }
}
