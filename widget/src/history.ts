/** The conversation as this browser keeps it: loaded from the store, saved to it (at most once
 * per 250 ms while tokens stream; text and last event id always together), and other tabs told
 * through a BroadcastChannel when it changed. */
import { load, save, type Conversation } from "./store";

const empty = (key: string): Conversation => ({ key, conversationId: null, messages: [], updated: 0 });

export class History {
  /** The conversation shown; the turn in progress writes into it. */
  conv: Conversation;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private channel: BroadcastChannel | null = null;

  /** `key`: one conversation per sidechat server; `changed` runs when another tab saved it. */
  constructor(readonly key: string, changed: () => void) {
    this.conv = empty(key);
    if (typeof BroadcastChannel === "function") {
      this.channel = new BroadcastChannel("sidechat");
      this.channel.onmessage = (e: MessageEvent) => e.data === key && changed();
    }
  }

  /** The stored conversation (the caller decides whether to show it). */
  load(): Promise<Conversation> {
    return load(this.key);
  }

  /** Starts a new, empty conversation and saves it. */
  reset(): Promise<void> {
    this.conv = empty(this.key);
    return this.flush();
  }

  /** Saves within 250 ms: one write for a burst of tokens. */
  save(): void {
    this.timer ??= setTimeout(() => void this.flush(), 250);
  }

  /** Saves now. */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    return save(this.conv).then(() => this.channel?.postMessage(this.key));
  }

  /** Writes what is pending and stops listening to other tabs. */
  close(): void {
    const channel = this.channel;
    this.channel = null;
    if (this.timer !== undefined) void this.flush();
    channel?.close();
  }
}
