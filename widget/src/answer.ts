/** Renders a growing Markdown answer: finished blocks are rendered once and kept; only the last,
 * unfinished block is re-rendered as tokens arrive, at most once per animation frame. */
import { h } from "./dom";
import { renderMarkdown, stableLength } from "./markdown";
import { sanitize } from "./sanitize";

export class Answer {
  readonly el = h("div", { class: "md" });
  private done = h("div");
  private tail = h("div");
  private committed = 0;
  private text = "";
  private frame = 0;

  constructor() {
    this.el.append(this.done, this.tail);
  }

  /** The whole text so far; rendered on the next frame (or by `flush`). */
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
