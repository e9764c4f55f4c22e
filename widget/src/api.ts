/** sidechat's HTTP API as the widget calls it: ask a question (retrying while the server is
 * busy or unreachable), cancel a turn, rate an answer. */
import { backoff, nap, type LinkState } from "./transport";

export interface AskOptions {
  server: string;
  message: string;
  /** The conversation the question belongs to; its id is forgotten if the server no longer knows it. */
  conv: { conversationId: string | null };
  signal: AbortSignal;
  /** Whether the visitor pressed Stop meanwhile (no more tries then). */
  stopped: () => boolean;
  /** Called before each wait between tries. */
  waiting: (state: LinkState) => void;
}

/** POST /api/chat: the last response (202 when the turn started), or null if none came. */
export async function postChat(o: AskOptions): Promise<Response | null> {
  let res: Response | null = null;
  let altcha: string | undefined;
  for (let attempt = 0; !o.signal.aborted && !o.stopped(); attempt++) {
    try {
      res = await fetch(`${o.server}/api/chat`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ message: o.message, conversation_id: o.conv.conversationId, altcha }),
        signal: o.signal,
      });
      if (res.status === 428) {
        // `--pow`: a new conversation needs the challenge in the error solved.
        altcha = await solve(((await res.json()) as { error: { challenge: Challenge } }).error.challenge);
        continue;
      }
      if (res.status === 404 && o.conv.conversationId) {
        o.conv.conversationId = null; // the server forgot it (restart): start a new one
        continue;
      }
      if (res.status !== 429 && res.status < 500) break;
      if (await refusal(res)) break; // this visitor's own limit: retrying now would not help
    } catch {
      res = null;
    }
    if (attempt >= 6) break;
    o.waiting(navigator.onLine === false ? "offline" : "reconnecting");
    const after = Number(res?.headers.get("retry-after"));
    await nap(after > 0 ? after * 1000 : backoff(attempt), o.signal);
  }
  return res;
}

interface Challenge {
  algorithm: string;
  challenge: string;
  maxnumber: number;
  salt: string;
  signature: string;
}

/** ALTCHA's proof of work, with WebCrypto (no third party): the number n whose SHA-256(salt + n)
 * is the challenge, as the base64 payload the server checks. Hashes 1,000 at a time. */
async function solve(c: Challenge): Promise<string> {
  const hex = async (n: number): Promise<string> =>
    [...new Uint8Array(await crypto.subtle.digest(c.algorithm, new TextEncoder().encode(c.salt + n)))].map((b) => b.toString(16).padStart(2, "0")).join("");
  for (let n = 0; n <= c.maxnumber; n += 1000) {
    const i = (await Promise.all(Array.from({ length: 1000 }, (_, i) => hex(n + i)))).indexOf(c.challenge);
    if (i >= 0) return btoa(JSON.stringify({ ...c, number: n + i, maxnumber: undefined }));
  }
  return "";
}

/** The per-client limits the widget tells the visitor about (429), rather than retrying. */
const LIMITS = ["rate_limited", "too_many_active", "daily_budget"];

/** A 429 from the visitor's own limits: the seconds to wait (the body's `retry_after`, since a
 * cross-origin page may not read `Retry-After`), and whether it is the daily budget. */
export async function refusal(res: Response): Promise<{ wait: number; daily: boolean } | null> {
  if (res.status !== 429) return null;
  try {
    const { error } = (await res.clone().json()) as { error: { code: string; retry_after?: number } };
    if (!LIMITS.includes(error.code)) return null;
    const wait = Number(error.retry_after) || Number(res.headers.get("retry-after")) || 5;
    return { wait, daily: error.code === "daily_budget" };
  } catch {
    return null;
  }
}

/** The error message of a JSON error response, or null. */
export async function errorMessage(res: Response | null): Promise<string | null> {
  try {
    return ((await res!.json()) as { error: { message: string } }).error.message;
  } catch {
    return null;
  }
}

const turnUrl = (server: string, turnId: string, what: string): string => `${server}/api/turns/${encodeURIComponent(turnId)}/${what}`;

/** Asks the server to stop a turn; the stream then ends with `abort` and [DONE]. False when the
 * request could not be made (the caller then stops locally). */
export async function cancelTurn(server: string, turnId: string): Promise<boolean> {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const res = await fetch(turnUrl(server, turnId, "cancel"), { method: "POST" });
      if (res.ok) return true;
      if (res.status < 500) return false;
    } catch {
      /* retry */
    }
    await nap(backoff(attempt));
  }
  return false;
}

/** Records a rating (best effort): whether the server took it. */
export async function sendFeedback(server: string, turnId: string, rating: "up" | "down"): Promise<boolean> {
  try {
    const res = await fetch(turnUrl(server, turnId, "feedback"), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ rating }),
    });
    return res.ok;
  } catch {
    return false;
  }
}
