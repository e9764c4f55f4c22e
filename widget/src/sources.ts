/** An answer's sources as a visitor sees them: each URL resolved against the page the widget is
 * embedded in (a site's pages are often indexed with root-relative URLs such as `/#post`), and
 * only http(s) links kept, so `javascript:`, `data:` and the like never become links. */
import { isBusy } from "./chunks";
import type { Message, Source } from "./store";

export interface Link {
  url: string;
  title: string;
}

/** The absolute http(s) URL a source points at, or null when it points anywhere else. */
export function resolveUrl(url: string, base: string): string | null {
  const raw = url.trim();
  if (!raw) return null;
  let parsed: URL;
  try {
    // The URL parser drops tabs and newlines and lower-cases the scheme, so " Java\nScript:"
    // is caught by the same check as "javascript:".
    parsed = new URL(raw, base);
  } catch {
    return null;
  }
  return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
}

/** The sources that can be shown as links, in order, each page once. */
export function sourceLinks(sources: Source[] | undefined, base: string): Link[] {
  const links: Link[] = [];
  for (const src of sources ?? []) {
    const url = resolveUrl(src.url, base);
    if (url !== null && !links.some((l) => l.url === url)) links.push({ url, title: src.title.trim() || url });
  }
  return links;
}

/** While an answer has no text yet: the title of the page it is reading (its first source). */
export function readingTitle(msg: Message, base: string, max = 80): string | null {
  if (msg.content || !isBusy(msg)) return null;
  const first = sourceLinks(msg.sources, base)[0];
  if (!first) return null;
  return first.title.length > max ? `${first.title.slice(0, max - 1)}…` : first.title;
}
