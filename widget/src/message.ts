/** One message in the log: a question, or an answer with its sources, its progress or error
 * note and its feedback buttons, all drawn from the stored message. */
import { Answer } from "./answer";
import { isBusy } from "./chunks";
import { DOWN, h, icon, UP } from "./dom";
import { readingTitle, sourceLinks } from "./sources";
import type { Message } from "./store";
import type { Strings } from "./strings";

export interface MessageActions {
  retry(view: MessageView): void;
  rate(view: MessageView, rating: "up" | "down"): void;
}

/** The greeting: Markdown, shown first and never stored. */
export function greeting(text: string): HTMLElement {
  const answer = new Answer();
  answer.set(text);
  answer.flush();
  return h("div", { class: "msg bot" }, answer.el);
}

/** `template` with `{title}` replaced by the title in emphasis. */
function fill(template: string, title: string): (Node | string)[] {
  const [before, ...rest] = template.split("{title}");
  return rest.length ? [before, h("em", {}, title), rest.join(title)] : [template];
}

export class MessageView {
  readonly el: HTMLElement;
  private answer = new Answer();
  private sources = h("div", { class: "src" });
  private note = h("div", { class: "note" });
  private fb = h("div", { class: "fb" });

  constructor(readonly msg: Message, private s: Strings, private actions: MessageActions) {
    if (msg.role === "user") {
      this.el = h("div", { class: "msg user" }, h("span", { class: "sr" }, `${s.you}: `), msg.content);
      return;
    }
    const who = h("span", { class: "sr" }, `${s.assistant}: `);
    this.el = h("div", { class: "msg bot", "aria-busy": "false" }, who, this.answer.el, this.sources, this.note, this.fb);
    this.update();
  }

  /** The message's text grew: rendered on the next animation frame. */
  grow(): void {
    this.answer.set(this.msg.content);
  }

  /** The answer as rendered (what the live region reads out). */
  text(): string {
    return this.answer.el.textContent ?? "";
  }

  /** Brings sources, note and feedback up to date, and the text too unless `text` is false. */
  update(text = true): void {
    const { msg } = this;
    if (text) {
      this.answer.set(msg.content);
      this.answer.flush();
    }
    this.el.setAttribute("aria-busy", String(isBusy(msg)));
    this.drawSources();
    this.drawNote();
    this.drawFeedback();
  }

  /** Only the pressed state changes, so the focused button stays focused. */
  rated(): void {
    this.fb.querySelectorAll("button").forEach((b, i) => b.setAttribute("aria-pressed", String((i ? "down" : "up") === this.msg.rating)));
  }

  private drawSources(): void {
    const links = sourceLinks(this.msg.sources, document.baseURI);
    this.sources.replaceChildren();
    if (!links.length) return;
    const s = this.s;
    const item = (l: { url: string; title: string }): HTMLElement =>
      h("li", {}, h("a", { href: l.url, target: "_blank", rel: "noopener noreferrer" }, l.title, h("span", { class: "sr" }, ` ${s.newTab}`)));
    this.sources.append(h("span", {}, s.sources), h("ul", {}, ...links.map(item)));
  }

  private drawNote(): void {
    const { msg, s, note } = this;
    note.replaceChildren();
    note.className = "note";
    const reading = readingTitle(msg, document.baseURI);
    if (reading !== null) note.append(h("span", { class: "reading" }, ...fill(s.reading, reading)));
    else if (isBusy(msg) && !msg.content) note.append(h("span", { class: "dots", "aria-label": s.thinking, role: "img" }, h("i"), h("i"), h("i")));
    if (msg.status === "aborted") note.append(s.stopped);
    if (msg.status === "error") {
      note.className = "note err";
      note.append(msg.error || s.error, h("button", { class: "small", type: "button", onclick: () => this.actions.retry(this) }, s.retry));
    }
  }

  private drawFeedback(): void {
    const { msg, s } = this;
    this.fb.replaceChildren();
    if (msg.status !== "done" || !msg.turnId) return;
    const button = (rating: "up" | "down", label: string, d: string): HTMLButtonElement => {
      const b = h("button", { type: "button", "aria-label": label, title: label, "aria-pressed": String(msg.rating === rating), onclick: () => this.actions.rate(this, rating) });
      b.append(icon(d));
      return b;
    };
    this.fb.append(button("up", s.helpful, UP), button("down", s.notHelpful, DOWN));
  }
}
