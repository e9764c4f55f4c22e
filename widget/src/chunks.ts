/** A message's state as its turn's events arrive: the reducer that folds the UI message stream's
 * chunks into the stored message, and the status it settles on. Pure: no DOM, no network. */
import type { Message } from "./store";
import type { Outcome, UIChunk } from "./transport";

/** What a chunk changed in the message: its text, its sources, its status, or nothing. */
export type Change = "text" | "sources" | "status" | null;

/** Applies the chunk with event id `id` to `msg` (in place). */
export function applyChunk(msg: Message, id: number, chunk: UIChunk): Change {
  msg.lastEventId = id;
  switch (chunk.type) {
    case "text-delta":
      msg.content += String(chunk.delta ?? "");
      return "text";
    case "source-url": {
      const sources = (msg.sources ??= []);
      const sourceId = String(chunk.sourceId);
      if (sources.some((s) => s.id === sourceId)) return null;
      sources.push({ id: sourceId, url: String(chunk.url ?? ""), title: String(chunk.title ?? "") });
      return "sources";
    }
    case "error":
      msg.status = "error";
      msg.error = String(chunk.errorText ?? "");
      return "status";
    case "abort":
      msg.status = "aborted";
      return "status";
  }
  return null;
}

/** The status a message settles on when its stream ends with `outcome` ("gone": the server no
 * longer has the turn; `unavailable` is the text said then). */
export function settle(msg: Message, outcome: Outcome, unavailable: string): void {
  if (outcome === "gone") {
    msg.status = "error";
    msg.error = unavailable;
  } else if (outcome === "stopped") {
    msg.status = "aborted";
  } else if (msg.status === "streaming") {
    msg.status = "done";
  }
}

/** Empties an answer so that its question can be asked again. */
export function resetForRetry(msg: Message): void {
  Object.assign(msg, { content: "", status: "pending", error: undefined, sources: [], turnId: undefined, lastEventId: 0, rating: undefined });
}

/** Whether the message is still being written. */
export const isBusy = (msg: Message): boolean => msg.status === "pending" || msg.status === "streaming";
