/** An incremental parser for the text/event-stream format (WHATWG HTML §9.2.6).
 *
 * Bytes arrive in arbitrary chunks: a chunk may end in the middle of a line, of a CRLF pair or of
 * a multi-byte UTF-8 character. Nothing is dispatched until its blank line has arrived, and the
 * unfinished tail is kept for the next chunk, so no token is ever lost or split. */

export interface SSEMessage {
  /** The last `id:` seen (sticky across events, like EventSource's lastEventId). */
  id: string;
  event: string;
  data: string;
}

export class SSEParser {
  private decoder = new TextDecoder();
  private buf = "";
  private sawCR = false;
  private data: string[] = [];
  private event = "";
  private hasData = false;
  lastId = "";
  retry: number | null = null;

  /** Feed a chunk (bytes or text); returns the events it completed. */
  feed(chunk: Uint8Array | string): SSEMessage[] {
    let text = typeof chunk === "string" ? chunk : this.decoder.decode(chunk, { stream: true });
    if (this.sawCR && text.startsWith("\n")) text = text.slice(1); // CRLF split across chunks
    this.sawCR = false;
    const out: SSEMessage[] = [];
    let start = 0;
    const all = this.buf + text;
    this.buf = "";
    for (let i = 0; i < all.length; i++) {
      const c = all.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      this.line(all.slice(start, i), out);
      if (c === 13) {
        if (i + 1 === all.length) this.sawCR = true;
        else if (all.charCodeAt(i + 1) === 10) i++;
      }
      start = i + 1;
    }
    this.buf = all.slice(start);
    return out;
  }

  private line(line: string, out: SSEMessage[]): void {
    if (line === "") {
      if (this.hasData) {
        out.push({ id: this.lastId, event: this.event || "message", data: this.data.join("\n") });
      }
      this.data = [];
      this.hasData = false;
      this.event = "";
      return;
    }
    if (line.charCodeAt(0) === 58) return; // ":" comment
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    if (field === "data") {
      this.data.push(value);
      this.hasData = true;
    } else if (field === "id") {
      if (!value.includes("\0")) this.lastId = value;
    } else if (field === "event") {
      this.event = value;
    } else if (field === "retry") {
      if (/^\d+$/.test(value)) this.retry = +value;
    }
  }
}
