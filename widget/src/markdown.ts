/** A small Markdown renderer for chat answers: paragraphs, headings, emphasis, code spans, fenced
 * code, links, lists (nested), block quotes, tables, rules. Raw HTML is never passed through: all
 * text is escaped here, and the result is sanitised again with DOMPurify before it reaches the
 * DOM. `stableLength` tells the incremental renderer which prefix of a growing answer is made of
 * finished blocks, so each token re-renders only the last, unfinished block. */

const ESC: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
export const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => ESC[c]);

/** http(s), mailto and same-site relative URLs; anything else (javascript:, data:…) is refused. */
export function safeUrl(raw: string): string | null {
  const url = raw.trim().replace(/^<|>$/g, "");
  if (/^(https?:\/\/|mailto:)/i.test(url)) return url;
  if (/^(\/(?!\/)|#|\?|\.\.?\/)/.test(url)) return url;
  if (/^[\w.-]+(\/|$)/.test(url) && !/^[\w.+-]*:/.test(url)) return url; // plain relative path
  return null;
}

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const HR = /^ {0,3}([-*_])(\s*\1){2,}\s*$/;
const LIST = /^( *)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const TABLE_SEP = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;

function inline(src: string): string {
  const slots: string[] = [];
  const hold = (html: string): string => `\u0000${slots.push(html) - 1}\u0000`;
  let s = src.replace(/\u0000/g, "");
  s = s.replace(/(`+)([\s\S]*?[^`])\1(?!`)/g, (_, __, code: string) => hold(`<code>${esc(code.replace(/^ (.*) $/, "$1"))}</code>`));
  s = s.replace(/!?\[([^\]]*)\]\(\s*(<[^>]*>|[^\s)]+)(?:\s+"([^"]*)")?\s*\)/g, (m, text: string, href: string, title?: string) => {
    const url = safeUrl(href);
    if (!url) return hold(esc(text));
    const t = title ? ` title="${esc(title)}"` : "";
    return hold(`<a href="${esc(url)}"${t}>${inline(text || url)}</a>`);
  });
  s = s.replace(/<(https?:\/\/[^\s<>]+)>|\bhttps?:\/\/[^\s<>()]*[^\s<>().,;:!?'"*_]/g, (m, bracketed?: string) => {
    const url = bracketed || m;
    return hold(`<a href="${esc(url)}">${esc(url)}</a>`);
  });
  s = esc(s)
    .replace(/\\([\\`*_{}\[\]()#+\-.!~|])/g, (_, c: string) => hold(c))
    .replace(/(\*\*|__)(?=\S)([\s\S]*?\S)\1/g, "<strong>$2</strong>")
    .replace(/(^|[^\w*])\*(?=[^\s*])([^*]*?[^\s*])\*(?!\w)/g, "$1<em>$2</em>")
    .replace(/(^|[^\w])_(?=[^\s_])([^_]*?[^\s_])_(?!\w)/g, "$1<em>$2</em>")
    .replace(/~~(?=\S)([\s\S]*?\S)~~/g, "<del>$1</del>")
    .replace(/ {2,}\n|\\\n|\n/g, "<br>");
  return s.replace(/\u0000(\d+)\u0000/g, (_, i: string) => slots[+i]);
}

function cells(row: string): string[] {
  return row.trim().replace(/^\||\|$/g, "").split(/(?<!\\)\|/).map((c) => c.trim());
}

function table(lines: string[]): string {
  const align = cells(lines[1]).map((c) => (c.startsWith(":") && c.endsWith(":") ? "center" : c.endsWith(":") ? "right" : c.startsWith(":") ? "left" : ""));
  const row = (r: string, tag: string): string =>
    "<tr>" + cells(r).map((c, i) => `<${tag}${align[i] ? ` align="${align[i]}"` : ""}>${inline(c)}</${tag}>`).join("") + "</tr>";
  const body = lines.slice(2).map((r) => row(r, "td")).join("");
  return `<table><thead>${row(lines[0], "th")}</thead>${body ? `<tbody>${body}</tbody>` : ""}</table>`;
}

export function renderMarkdown(src: string): string {
  const lines = src.replace(/\r\n?/g, "\n").replace(/\t/g, "    ").split("\n");
  const out: string[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let m: RegExpMatchArray | null;
    if (!line.trim()) {
      i++;
    } else if ((m = line.match(FENCE))) {
      const close = new RegExp(`^ {0,3}${m[1][0] === "`" ? "`" : "~"}{${m[1].length},}\\s*$`);
      const code: string[] = [];
      for (i++; i < lines.length && !close.test(lines[i]); i++) code.push(lines[i]);
      i++;
      const lang = m[2] ? ` class="language-${esc(m[2])}"` : "";
      out.push(`<pre><code${lang}>${esc(code.join("\n"))}</code></pre>`);
    } else if ((m = line.match(HEADING))) {
      out.push(`<h${m[1].length}>${inline(m[2])}</h${m[1].length}>`);
      i++;
    } else if (HR.test(line)) {
      out.push("<hr>");
      i++;
    } else if (QUOTE.test(line)) {
      const body: string[] = [];
      for (; i < lines.length && (m = lines[i].match(QUOTE)); i++) body.push(m[1]);
      out.push(`<blockquote>${renderMarkdown(body.join("\n"))}</blockquote>`);
    } else if ((m = line.match(LIST))) {
      const indent = m[1].length;
      const ordered = /\d/.test(m[2]);
      const start = ordered ? parseInt(m[2], 10) : 1;
      const items: string[] = [];
      let item: string[] = [];
      for (; i < lines.length; i++) {
        const l = lines[i];
        const lm = l.match(LIST);
        if (lm && lm[1].length <= indent + 1 && /\d/.test(lm[2]) === ordered) {
          if (item.length) items.push(renderItem(item));
          item = [lm[3]];
        } else if (l.trim() && (/^\s/.test(l) || !isBlockStart(l, lines[i + 1]))) {
          item.push(l.replace(new RegExp(`^ {0,${indent + 4}}`), ""));
        } else break;
      }
      items.push(renderItem(item));
      const tag = ordered ? "ol" : "ul";
      out.push(`<${tag}${ordered && start !== 1 ? ` start="${start}"` : ""}>${items.join("")}</${tag}>`);
    } else if (line.includes("|") && i + 1 < lines.length && TABLE_SEP.test(lines[i + 1]) && lines[i + 1].includes("-")) {
      const rows = [line, lines[i + 1]];
      for (i += 2; i < lines.length && lines[i].includes("|") && lines[i].trim(); i++) rows.push(lines[i]);
      out.push(table(rows));
    } else {
      const para: string[] = [line];
      for (i++; i < lines.length && lines[i].trim() && !isBlockStart(lines[i], lines[i + 1]); i++) para.push(lines[i]);
      out.push(`<p>${inline(para.join("\n").trim())}</p>`);
    }
  }
  return out.join("");
}

function renderItem(lines: string[]): string {
  const [first, ...rest] = lines;
  const nested = rest.findIndex((l) => LIST.test(l) || FENCE.test(l));
  if (nested < 0) return `<li>${inline(lines.join("\n").trim())}</li>`;
  return `<li>${inline([first, ...rest.slice(0, nested)].join("\n").trim())}${renderMarkdown(rest.slice(nested).join("\n"))}</li>`;
}

function isBlockStart(line: string, next?: string): boolean {
  return FENCE.test(line) || HEADING.test(line) || HR.test(line) || QUOTE.test(line) || LIST.test(line) ||
    (line.includes("|") && next !== undefined && TABLE_SEP.test(next) && next.includes("-"));
}

/** Length of the prefix of `text` that ends with finished blocks: up to the last blank line
 * outside a code fence. Everything before it will not change however the answer goes on. */
export function stableLength(text: string, from = 0): number {
  let fence: string | null = null;
  let stable = from;
  let pos = from;
  while (pos < text.length) {
    const nl = text.indexOf("\n", pos);
    if (nl < 0) break; // an unfinished line is never stable
    const line = text.slice(pos, nl);
    const m = line.match(FENCE);
    if (fence) {
      if (m && m[1][0] === fence[0] && m[1].length >= fence.length && !m[2]) {
        fence = null;
        stable = nl + 1;
      }
    } else if (m) {
      fence = m[1];
    } else if (!line.trim()) {
      stable = nl + 1;
    }
    pos = nl + 1;
  }
  return stable;
}
