/** sidechat's embeddable widget. `<script src="https://your-sidechat/widget.js" defer
 * data-title="Ask my blog"></script>` is all a page needs; `data-*` attributes or
 * `sidechat.init({...})` configure it. The only global it defines is `sidechat`. */
import { STRINGS, type Strings } from "./strings";
import type { Mode } from "./transport";
import { Widget, type Config } from "./ui";

declare const __VERSION__: string;

export interface Options extends Partial<Omit<Config, "strings">> {
  strings?: Partial<Strings>;
  /** Alias of `server`. */
  api?: string;
}

const script = document.currentScript as HTMLScriptElement | null;

function fromScript(el: HTMLScriptElement | null): Options {
  if (!el) return {};
  const d = el.dataset;
  const strings: Partial<Strings> = {};
  for (const [k, v] of Object.entries(d)) {
    // data-text-send="Envoyer" → strings.send
    const m = /^text([A-Z].*)$/.exec(k);
    if (m && v !== undefined) strings[(m[1][0].toLowerCase() + m[1].slice(1)) as keyof Strings] = v;
  }
  const opts: Options = { strings };
  if (el.src) opts.server = new URL(".", el.src).href;
  const keys = ["server", "api", "title", "greeting", "placeholder", "accent", "position", "theme"] as const;
  for (const key of keys) if (d[key] !== undefined) opts[key] = d[key] as never;
  if (d.open !== undefined) opts.open = d.open !== "false";
  if (d.bufferTimeout) opts.bufferTimeout = Number(d.bufferTimeout);
  if (d.transport) opts.transport = d.transport as Mode;
  return opts;
}

const scriptOptions = fromScript(script);
let current: Widget | null = null;
let last: Options = {};

function config(opts: Options): Config {
  const merged = { ...scriptOptions, ...opts, strings: { ...scriptOptions.strings, ...opts.strings } };
  const server = (merged.api ?? merged.server ?? location.origin).replace(/\/+$/, "");
  return {
    server: new URL(server, location.href).href.replace(/\/+$/, ""),
    title: merged.title ?? "Ask a question",
    greeting: merged.greeting ?? "",
    placeholder: merged.placeholder ?? "Ask a question…",
    accent: merged.accent ?? "",
    position: merged.position === "left" ? "left" : "right",
    theme: merged.theme === "dark" || merged.theme === "light" ? merged.theme : "auto",
    open: merged.open ?? false,
    bufferTimeout: merged.bufferTimeout && merged.bufferTimeout > 0 ? merged.bufferTimeout : 4000,
    transport: merged.transport && ["es", "fetch", "poll"].includes(merged.transport) ? merged.transport : undefined,
    strings: { ...STRINGS, ...merged.strings },
  };
}

function mount(opts: Options): void {
  current?.destroy();
  last = opts;
  current = new Widget(config(opts));
}

function whenReady(fn: () => void): void {
  if (document.body) fn();
  else document.addEventListener("DOMContentLoaded", fn, { once: true });
}

const api = {
  version: __VERSION__,
  /** (Re)creates the widget with these options on top of the script tag's data-* attributes. */
  init(opts: Options = {}): void {
    whenReady(() => mount(opts));
  },
  open(): void {
    current?.open();
  },
  close(): void {
    current?.close();
  },
  destroy(): void {
    current?.destroy();
    current = null;
  },
  get options(): Options {
    return { ...last };
  },
};

declare global {
  interface Window {
    sidechat: typeof api;
  }
}

// An element with id="sidechat" also shows up as window.sidechat (named access): only a real
// copy of this API counts as "already loaded".
const loaded = (window as { sidechat?: unknown }).sidechat as { init?: unknown } | undefined;
if (typeof loaded?.init !== "function") {
  window.sidechat = api;
  // data-manual on the script tag: wait for sidechat.init() instead of starting at once.
  if (!script || script.dataset.manual === undefined) api.init();
}
