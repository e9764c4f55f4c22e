/** One turn's life: the question posted, its answer's stream followed into the message (also
 * after a reload, from the last event id), Stop, and the end. */
import { cancelTurn, errorMessage, postChat, refusal } from "./api";
import { applyChunk, settle } from "./chunks";
import type { History } from "./history";
import type { MessageView } from "./message";
import type { Panel } from "./panel";
import { readingTitle } from "./sources";
import type { Strings } from "./strings";
import { follow, type Mode } from "./transport";

export interface TurnDeps {
  cfg: { server: string; bufferTimeout: number; transport?: Mode; strings: Strings };
  history: History;
  panel: Pick<Panel, "link" | "announce" | "stickToBottom">;
  /** The turn is over (or never started); `announce`: say how it ended. */
  ended(turn: Turn, announce: boolean): void;
  /** The visitor's own limit refused the question: wait `wait` seconds before asking again. */
  limited(turn: Turn, question: string, wait: number, daily: boolean): void;
}

export class Turn {
  /** Aborting it abandons the turn here (teardown); the server's turn goes on. */
  readonly ctrl = new AbortController();
  private stopping = false;

  constructor(readonly view: MessageView, private deps: TurnDeps) {}

  /** Posts the question, then follows the answer. */
  async ask(text: string): Promise<void> {
    const { cfg, history, panel } = this.deps;
    const { msg } = this.view;
    const conv = history.conv;
    const signal = this.ctrl.signal;
    const res = await postChat({ server: cfg.server, message: text, conv, signal, stopped: () => this.stopping, waiting: (state) => panel.link(state) });
    panel.link("");
    if (signal.aborted) return; // cleared or torn down meanwhile
    if (res?.status === 202) {
      const body = (await res.json()) as { conversation_id: string; turn_id: string };
      conv.conversationId = body.conversation_id;
      Object.assign(msg, { turnId: body.turn_id, status: "streaming", lastEventId: 0 });
      await history.flush();
      return this.follow(); // cancels at once if Stop was pressed meanwhile
    }
    const limit = res && !this.stopping ? await refusal(res) : null;
    if (limit) return this.deps.limited(this, text, limit.wait, limit.daily);
    if (this.stopping) {
      msg.status = "aborted";
    } else {
      msg.status = "error";
      msg.error = (await errorMessage(res)) ?? cfg.strings.error;
    }
    this.deps.ended(this, false);
  }

  /** Follows the answer's stream from the message's last event id to its end. */
  async follow(): Promise<void> {
    const { cfg, history, panel } = this.deps;
    const { view } = this;
    const { msg } = view;
    view.update(false);
    if (this.stopping) void cancelTurn(cfg.server, msg.turnId!);
    let hasText = false;
    let announced = false;
    const outcome = await follow({
      base: cfg.server,
      turnId: msg.turnId!,
      after: msg.lastEventId ?? 0,
      bufferTimeout: cfg.bufferTimeout,
      mode: cfg.transport,
      signal: this.ctrl.signal,
      onState: (state) => panel.link(state === "live" ? "" : state),
      onEvent: (id, chunk) => {
        panel.link("");
        const change = applyChunk(msg, id, chunk);
        if (change === "text") {
          view.grow();
          if (!hasText) view.update(false); // the text replaces the progress note
          hasText = true;
          panel.stickToBottom();
        } else if (change === "sources") {
          view.update(false);
          const title = readingTitle(msg, document.baseURI);
          // Sources come in a burst before the text: one polite announcement per answer.
          if (title !== null && !announced) panel.announce(cfg.strings.reading.replace("{title}", () => title));
          announced ||= title !== null;
        }
        history.save();
      },
    });
    if (outcome === "stopped" && !this.stopping) return; // torn down: keep "streaming" for later
    settle(msg, outcome, cfg.strings.unavailable);
    this.deps.ended(this, true);
  }

  /** Stop: the server is asked to end the turn; if it cannot be asked, the turn ends here. */
  stop(): void {
    if (this.stopping) return;
    this.stopping = true;
    const turnId = this.view.msg.turnId;
    if (turnId) void cancelTurn(this.deps.cfg.server, turnId).then((ok) => ok || this.ctrl.abort());
  }
}
