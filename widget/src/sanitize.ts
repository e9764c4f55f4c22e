/** Every piece of model output goes through DOMPurify before it touches the DOM, with an allow-list
 * that fits Markdown: no images (no tracking pixels), no forms, no styles, no event handlers.
 * Links must be http(s), mailto or relative, and open in a new tab without an opener. */
import createDOMPurify, { type Config } from "dompurify";
import { safeUrl } from "./markdown";

const purify = createDOMPurify(window);

const CONFIG: Config & { RETURN_DOM_FRAGMENT: true } = {
  ALLOWED_TAGS: [
    "a", "p", "br", "hr", "strong", "em", "del", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td",
  ],
  ALLOWED_ATTR: ["href", "title", "start", "align", "class"],
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};

purify.addHook("afterSanitizeAttributes", (node) => {
  if (node.nodeName === "A") {
    const href = node.getAttribute("href");
    const url = href === null ? null : safeUrl(href);
    if (url === null) node.removeAttribute("href");
    else {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer nofollow");
    }
  }
  const cls = node.getAttribute("class");
  if (cls !== null && !/^language-[\w+#.-]+$/.test(cls)) node.removeAttribute("class");
});

/** Sanitised DOM for an HTML string (the output of renderMarkdown). */
export function sanitize(html: string): DocumentFragment {
  return purify.sanitize(html, CONFIG);
}
