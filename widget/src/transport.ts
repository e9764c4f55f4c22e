/** Reading a turn's events, exactly once each, over the best transport that works here.
 *
 * The ladder: native EventSource (the browser reconnects and sends Last-Event-ID itself) →
 * fetch + ReadableStream with an incremental SSE parser → long-poll of /events. A rung that gets
 * no first byte within `bufferTimeout` (a proxy buffering the stream) hands over to the next one,
 * and the choice is remembered for a day. When the server is unreachable the reader retries with
 * exponential backoff and jitter, says so, and wakes at once when the network comes back or the
 * tab becomes visible again. */
import { SSEParser } from "./sse";

export type Mode = "es" | "fetch" | "poll";
export type LinkState = "live" | "reconnecting" | "offline";
export type Outcome = "done" | "gone" | "stopped";
type Attempt = Outcome | "buffered" | "error";

export interface UIChunk {
  type: string;
  [key: string]: unknown;
}

export interface FollowOptions {
  base: string;
  turnId: string;
  /** The last event id already applied; only later events are delivered. */
  after: number;
  onEvent: (id: number, chunk: UIChunk) => void;
  onState: (state: LinkState) => void;
  bufferTimeout: number;
  signal: AbortSignal;
  /** Forces a rung (tests, or a site that knows its proxy). */
  mode?: Mode;
}

const MODES: Mode[] = ["es", "fetch", "poll"];
const MEMORY_KEY = "sidechat.transport";

function supported(mode: Mode): boolean {
  if (mode === "es") return typeof EventSource === "function";
  if (mode === "fetch") return typeof ReadableStream === "function" && typeof TextDecoder === "function";
  return true;
}

export function rememberedMode(): Mode {
  try {
    const saved = JSON.parse(localStorage.getItem(MEMORY_KEY) || "null") as { mode: Mode; at: number } | null;
    if (saved && MODES.includes(saved.mode) && Date.now() - saved.at < 864e5 && supported(saved.mode)) return saved.mode;
  } catch {
    /* storage disabled */
  }
  return MODES.find(supported) as Mode;
}

function remember(mode: Mode): void {
  try {
    localStorage.setItem(MEMORY_KEY, JSON.stringify({ mode, at: Date.now() }));
  } catch {
    /* storage disabled */
  }
}

/** Exponential backoff with jitter: 0.5-1x of min(cap, base·2^attempt). */
export function backoff(attempt: number, base = 500, cap = 15000): number {
  const ceiling = Math.min(cap, base * 2 ** attempt);
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/** Sleeps `ms`, waking early when the network comes back, the tab becomes visible, or `signal`. */
export function nap(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      removeEventListener("online", done);
      document.removeEventListener("visibilitychange", onVisible);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const onVisible = (): void => {
      if (document.visibilityState === "visible") done();
    };
    const timer = setTimeout(done, ms);
    addEventListener("online", done);
    document.addEventListener("visibilitychange", onVisible);
    signal?.addEventListener("abort", done);
  });
}

const offline = (): boolean => typeof navigator !== "undefined" && navigator.onLine === false;

/** Follows a turn to its end. Resolves "done" after [DONE], "gone" when the server no longer
 * knows the turn, "stopped" when `signal` aborts. */
export async function follow(opts: FollowOptions): Promise<Outcome> {
  let last = opts.after;
  let mode = opts.mode ?? rememberedMode();
  let failures = 0;
  const apply = (id: number, chunk: UIChunk): void => {
    if (!(id > last)) return; // exactly once, in order
    last = id;
    failures = 0;
    opts.onEvent(id, chunk);
  };
  while (!opts.signal.aborted) {
    if (offline()) {
      opts.onState("offline");
      await nap(5000, opts.signal);
      continue;
    }
    const attempt = await run(mode, opts, () => last, apply);
    if (attempt === "done" || attempt === "gone" || attempt === "stopped") return attempt;
    if (attempt === "buffered") {
      const next = MODES.slice(MODES.indexOf(mode) + 1).find(supported);
      if (next) {
        mode = next;
        if (!opts.mode) remember(mode);
        continue;
      }
    }
    // An error (or buffering with no rung left): is the turn still there? The probe also
    // delivers whatever is new, so progress is never lost while reconnecting.
    opts.onState(offline() ? "offline" : "reconnecting");
    const probe = await poll(opts, last, apply, 0).catch(() => "error" as const);
    if (probe === "done" || probe === "gone") return probe;
    await nap(backoff(failures++), opts.signal);
  }
  return "stopped";
}

async function run(mode: Mode, opts: FollowOptions, last: () => number, apply: (id: number, c: UIChunk) => void): Promise<Attempt> {
  if (mode === "es") return viaEventSource(opts, last(), apply);
  if (mode === "fetch") return viaFetch(opts, last(), apply);
  try {
    for (;;) {
      const r = await poll(opts, last(), apply, 25);
      if (r !== "more") return r;
    }
  } catch {
    return opts.signal.aborted ? "stopped" : "error";
  }
}

const streamUrl = (opts: FollowOptions, after: number): string =>
  `${opts.base}/api/turns/${encodeURIComponent(opts.turnId)}/stream?last_event_id=${after}`;

function handle(data: string, id: string, apply: (id: number, c: UIChunk) => void): boolean {
  if (data === "[DONE]") return true;
  apply(parseInt(id, 10), JSON.parse(data) as UIChunk);
  return false;
}

function viaEventSource(opts: FollowOptions, after: number, apply: (id: number, c: UIChunk) => void): Promise<Attempt> {
  return new Promise((resolve) => {
    const es = new EventSource(streamUrl(opts, after));
    let errors = 0;
    let heard = false;
    const finish = (a: Attempt): void => {
      es.close();
      clearTimeout(watchdog);
      opts.signal.removeEventListener("abort", onAbort);
      removeEventListener("offline", onOffline);
      resolve(a);
    };
    const onAbort = (): void => finish("stopped");
    const onOffline = (): void => finish("error");
    const watchdog = setTimeout(() => heard || finish("buffered"), opts.bufferTimeout);
    opts.signal.addEventListener("abort", onAbort);
    addEventListener("offline", onOffline);
    es.onopen = () => {
      if (errors) opts.onState("live");
    };
    es.onmessage = (e: MessageEvent<string>) => {
      heard = true;
      if (errors) opts.onState("live");
      errors = 0;
      try {
        if (handle(e.data, e.lastEventId, apply)) finish("done");
      } catch {
        finish("error");
      }
    };
    es.onerror = () => {
      // CLOSED: an HTTP error the browser will not retry. CONNECTING: the browser reconnects by
      // itself with Last-Event-ID; after a few failed tries our own backoff takes over.
      if (es.readyState === EventSource.CLOSED || ++errors >= 3) finish("error");
      else opts.onState("reconnecting");
    };
  });
}

async function viaFetch(opts: FollowOptions, after: number, apply: (id: number, c: UIChunk) => void): Promise<Attempt> {
  const ctrl = new AbortController();
  let buffered = false;
  const abort = (): void => ctrl.abort();
  opts.signal.addEventListener("abort", abort);
  addEventListener("offline", abort);
  const watchdog = setTimeout(() => {
    buffered = true;
    ctrl.abort();
  }, opts.bufferTimeout);
  try {
    const res = await fetch(streamUrl(opts, after), {
      headers: { Accept: "text/event-stream" },
      cache: "no-store",
      signal: ctrl.signal,
    });
    if (res.status === 404) return "gone";
    if (!res.ok || !res.body) return "error";
    const reader = res.body.getReader();
    const parser = new SSEParser();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return "error"; // closed before [DONE]: reconnect from the last id
      clearTimeout(watchdog);
      for (const msg of parser.feed(value)) if (handle(msg.data, msg.id, apply)) return "done";
    }
  } catch {
    return opts.signal.aborted ? "stopped" : buffered ? "buffered" : "error";
  } finally {
    clearTimeout(watchdog);
    ctrl.abort();
    opts.signal.removeEventListener("abort", abort);
    removeEventListener("offline", abort);
  }
}

interface PollBody {
  events: { id: number; data: UIChunk }[];
  done: boolean;
}

async function poll(opts: FollowOptions, after: number, apply: (id: number, c: UIChunk) => void, wait: number): Promise<Attempt | "more"> {
  const res = await fetch(`${opts.base}/api/turns/${encodeURIComponent(opts.turnId)}/events?after=${after}&wait=${wait}`, {
    cache: "no-store",
    signal: opts.signal,
  });
  if (res.status === 404) return "gone";
  if (!res.ok) return "error";
  const body = (await res.json()) as PollBody;
  for (const e of body.events) apply(e.id, e.data);
  return body.done ? "done" : "more";
}
