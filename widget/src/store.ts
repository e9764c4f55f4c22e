/** Conversation history in IndexedDB (scoped to the site's origin by the browser), so a refresh or
 * a second tab shows the conversation, and a reply cut off by a reload resumes from its last event
 * id. Text and last event id are always written together, so a resumed reply is exact. Without
 * IndexedDB (private modes, old browsers) it falls back to memory. */

export type Status = "pending" | "streaming" | "done" | "error" | "aborted";

export interface Source {
  id: string;
  url: string;
  title: string;
}

export interface Message {
  role: "user" | "assistant";
  content: string;
  turnId?: string;
  /** Absolute URLs for the turn, as the server gave them. */
  streamUrl?: string;
  status?: Status;
  lastEventId?: number;
  sources?: Source[];
  rating?: "up" | "down";
  error?: string;
}

export interface Conversation {
  key: string;
  conversationId: string | null;
  messages: Message[];
  updated: number;
}

const DB = "sidechat";
const STORE = "conversations";

let dbPromise: Promise<IDBDatabase | null> | null = null;

function db(): Promise<IDBDatabase | null> {
  if (!dbPromise) {
    dbPromise = new Promise((resolve) => {
      try {
        const req = indexedDB.open(DB, 1);
        req.onupgradeneeded = () => req.result.createObjectStore(STORE, { keyPath: "key" });
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => resolve(null);
        req.onblocked = () => resolve(null);
      } catch {
        resolve(null);
      }
    });
  }
  return dbPromise;
}

const memory = new Map<string, Conversation>();

export async function load(key: string): Promise<Conversation> {
  const d = await db();
  const empty: Conversation = { key, conversationId: null, messages: [], updated: 0 };
  if (!d) return memory.get(key) ?? empty;
  return new Promise((resolve) => {
    try {
      const req = d.transaction(STORE).objectStore(STORE).get(key);
      req.onsuccess = () => resolve((req.result as Conversation | undefined) ?? empty);
      req.onerror = () => resolve(empty);
    } catch {
      resolve(empty);
    }
  });
}

export async function save(conv: Conversation): Promise<void> {
  conv.updated = Date.now();
  const copy: Conversation = JSON.parse(JSON.stringify(conv));
  const d = await db();
  if (!d) {
    memory.set(conv.key, copy);
    return;
  }
  await new Promise<void>((resolve) => {
    try {
      const tx = d.transaction(STORE, "readwrite");
      tx.objectStore(STORE).put(copy);
      tx.oncomplete = tx.onerror = tx.onabort = () => resolve();
    } catch {
      resolve();
    }
  });
}
