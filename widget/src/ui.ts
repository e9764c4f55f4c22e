/** The widget: the panel, the composer and the messages, wired to the conversation kept in
 * this browser and to the turn in progress. */
import { sendFeedback } from "./api";
import { resetForRetry } from "./chunks";
import { Composer } from "./composer";
import { History } from "./history";
import { greeting, MessageView, type MessageActions } from "./message";
import { Panel } from "./panel";
import type { Message } from "./store";
import type { Strings } from "./strings";
import type { Mode } from "./transport";
import { Turn } from "./turn";

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

export class Widget {
  private panel: Panel;
  private composer: Composer;
  private history: History;
  private views: MessageView[] = [];
  private active: Turn | null = null;
  private teardown: (() => void)[] = [];
  private actions: MessageActions = { retry: (view) => this.retry(view), rate: (view, rating) => void this.rate(view, rating) };

  constructor(private cfg: Config) {
    this.composer = new Composer(cfg.strings, cfg.placeholder, (text) => this.submit(text), () => this.active?.stop());
    this.panel = new Panel(cfg, this.composer.form, () => this.composer.focus(), () => this.clear());
    this.history = new History(cfg.server, () => this.active || void this.reload());
    const onVisible = (): void => {
      if (document.visibilityState === "visible" && !this.active) void this.reload();
    };
    document.addEventListener("visibilitychange", onVisible);
    this.teardown.push(() => document.removeEventListener("visibilitychange", onVisible));
    const flush = (): void => void this.history.flush();
    addEventListener("pagehide", flush);
    this.teardown.push(() => removeEventListener("pagehide", flush));
    if (cfg.open || Panel.wasOpen()) this.panel.open(false);
    void this.reload(true);
  }

  destroy(): void {
    this.active?.ctrl.abort();
    this.history.close();
    this.teardown.forEach((f) => f());
    this.panel.destroy();
  }

  open(): void {
    this.panel.open();
  }

  close(): void {
    this.panel.close();
  }

  // -- the conversation -------------------------------------------------------------------------
  private async reload(initial = false): Promise<void> {
    const conv = await this.history.load();
    if (this.active) return;
    this.history.conv = conv;
    this.render();
    // A reply that was streaming when the page went away (or that another tab is streaming)
    // continues from its last event id.
    const last = conv.messages[conv.messages.length - 1];
    const view = this.views[this.views.length - 1];
    if (last?.role !== "assistant") return;
    if (last.status === "streaming" && last.turnId) void this.begin(view).follow();
    else if (last.status === "pending" && initial) {
      last.status = "error";
      last.error = this.cfg.strings.error;
      view.update();
    }
  }

  private render(): void {
    this.views = [];
    this.panel.log.replaceChildren();
    if (this.cfg.greeting) this.panel.log.append(greeting(this.cfg.greeting));
    for (const msg of this.history.conv.messages) this.add(msg);
    this.panel.scroll();
  }

  private add(msg: Message): MessageView {
    const view = new MessageView(msg, this.cfg.strings, this.actions);
    this.views.push(view);
    this.panel.log.append(view.el);
    return view;
  }

  private clear(): void {
    if (this.active) {
      this.active.stop();
      this.active.ctrl.abort();
      this.active = null;
      this.composer.busy(false);
    }
    void this.history.reset();
    this.render();
    this.composer.focus();
  }

  // -- turns ------------------------------------------------------------------------------------
  private begin(view: MessageView): Turn {
    const turn = new Turn(view, { cfg: this.cfg, history: this.history, panel: this.panel, ended: (t, announce) => this.ended(t, announce), limited: (t, q, wait, daily) => this.limited(t, q, wait, daily) });
    this.active = turn;
    this.composer.busy(true);
    return turn;
  }

  private submit(text: string): boolean {
    if (this.active) return false;
    const { messages } = this.history.conv;
    this.add(messages[messages.push({ role: "user", content: text }) - 1]);
    const view = this.add(messages[messages.push({ role: "assistant", content: "", status: "pending" }) - 1]);
    this.panel.scroll();
    void this.history.flush();
    void this.begin(view).ask(text);
    return true;
  }

  private retry(view: MessageView): void {
    if (this.active) return;
    const { messages } = this.history.conv;
    const question = messages[messages.indexOf(view.msg) - 1];
    if (!question || question.role !== "user") return;
    resetForRetry(view.msg);
    view.update();
    this.composer.focus(); // the Retry button is gone
    void this.begin(view).ask(question.content);
  }

  private ended(turn: Turn, announce: boolean): void {
    if (this.active !== turn) return; // abandoned by "New conversation"
    const { view } = turn;
    const { msg } = view;
    const s = this.cfg.strings;
    this.active = null;
    this.composer.busy(false);
    this.panel.link("");
    view.update();
    void this.history.flush();
    // One polite announcement per answer, when it is complete (never token by token).
    if (announce) this.panel.announce(msg.status === "error" ? msg.error || s.error : msg.status === "aborted" ? s.stopped : `${s.answerReady}${view.text()}`);
    this.panel.stickToBottom();
  }

  /** Refused by the visitor's own limit: the question goes back into the box (nothing lost),
   * a friendly notice counts the wait down, and sending comes back when it is over. */
  private limited(turn: Turn, question: string, wait: number, daily: boolean): void {
    if (this.active !== turn) return;
    this.active = null;
    this.composer.busy(false);
    const { messages } = this.history.conv;
    const at = messages.indexOf(turn.view.msg);
    const asked = at > 0 && messages[at - 1].role === "user";
    if (at >= 0) messages.splice(asked ? at - 1 : at, asked ? 2 : 1);
    void this.history.flush();
    this.render();
    const s = this.cfg.strings;
    const say = (left: number): string => (daily ? s.dailyLimit : s.tooFast.replace("{seconds}", String(left)));
    this.panel.announce(say(Math.ceil(wait)));
    this.composer.hold(question, wait, (left) => this.panel.link("", left ? say(left) : ""));
    this.composer.focus();
  }

  private async rate(view: MessageView, rating: "up" | "down"): Promise<void> {
    view.msg.rating = rating;
    view.rated();
    void this.history.flush();
    if (await sendFeedback(this.cfg.server, view.msg.turnId!, rating)) this.panel.announce(this.cfg.strings.thanks);
  }
}
