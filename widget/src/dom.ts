/** Building DOM by hand (no framework): `h` for elements, `icon` for the inline SVG icons. */

type Attrs = Record<string, string | boolean | ((e: Event) => void)>;

/** An element with attributes (`on…` functions become listeners; `true` is a bare attribute). */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...kids: (Node | string)[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else if (v !== false) el.setAttribute(k, v);
  }
  el.append(...kids);
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** A decorative 24×24 icon drawn by one path (its button carries the accessible name). */
export function icon(d: string): SVGSVGElement {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(SVG_NS, "path");
  path.setAttribute("d", d);
  svg.append(path);
  return svg;
}

export const CHAT = "M21 12a8 8 0 0 1-11.6 7.1L4 20l1-4.6A8 8 0 1 1 21 12z";
export const CLOSE = "M6 6l12 12M18 6L6 18";
export const NEW = "M12 5v14M5 12h14";
export const UP = "M7 10v11H3V10zm0 0l4-8a2 2 0 0 1 3 2l-1 5h6a2 2 0 0 1 2 2.3l-1.4 8A2 2 0 0 1 17.6 21H7";
export const DOWN = "M17 14V3h4v11zm0 0l-4 8a2 2 0 0 1-3-2l1-5H5a2 2 0 0 1-2-2.3l1.4-8A2 2 0 0 1 6.4 3H17";
