/** The question box and its button: Enter sends, Shift+Enter is a new line, the box grows with
 * its text, and while an answer is being written the button is Stop. */
import { h } from "./dom";
import type { Strings } from "./strings";

export class Composer {
  readonly input: HTMLTextAreaElement;
  readonly form: HTMLFormElement;
  private go: HTMLButtonElement;
  private held = 0; // the timer while sending waits for a rate limit

  /** `send` gets the trimmed question and says whether it took it (the box is then emptied). */
  constructor(private s: Strings, placeholder: string, private send: (text: string) => boolean, private stop: () => void) {
    this.input = h("textarea", { rows: "1", id: "sc-input", placeholder, "aria-label": s.inputLabel, enterkeyhint: "send", onkeydown: (e) => this.onKey(e as KeyboardEvent), oninput: () => this.grow() });
    this.go = h("button", { class: "go", type: "submit" }, s.send);
    this.form = h("form", { onsubmit: (e) => (e.preventDefault(), this.submit()) }, h("label", { class: "sr", for: "sc-input" }, s.inputLabel), this.input, this.go);
  }

  focus(): void {
    this.input.focus();
  }

  /** Send or Stop. */
  busy(on: boolean): void {
    this.go.textContent = on ? this.s.stop : this.s.send;
    this.go.classList.toggle("stop", on);
    this.go.type = on ? "button" : "submit";
    this.go.onclick = on ? () => this.stop() : null;
  }

  /** Puts a refused question back (unless something new was typed meanwhile), and holds
   * sending for `seconds`, calling `tick` with the seconds left each second (0 at the end). */
  hold(question: string, seconds: number, tick: (left: number) => void): void {
    if (!this.input.value.trim()) this.input.value = question;
    this.grow();
    clearInterval(this.held);
    const until = Date.now() + seconds * 1000;
    const step = (): void => {
      const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      this.go.disabled = left > 0;
      if (!left) clearInterval(this.held), (this.held = 0);
      tick(left);
    };
    this.held = setInterval(step, 1000) as unknown as number;
    step();
  }

  private submit(): void {
    if (this.held) return;
    const text = this.input.value.trim();
    if (!text || !this.send(text)) return;
    this.input.value = "";
    this.grow();
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
}
