/** The widget's CSS, adopted into its shadow root as a constructable stylesheet (no <style>
 * element, so a strict Content-Security-Policy without 'unsafe-inline' allows it). */
export const CSS = `
:host{all:initial!important;position:fixed!important;z-index:2147483000!important;bottom:20px!important;right:20px!important;left:auto!important;top:auto!important;display:block!important;
--a:#2563eb;--ln:#1d4ed8;--bg:#fff;--fg:#1f2328;--mu:#59636e;--bd:#d1d9e0;--ub:#eef2ff;--cb:#f6f8fa;--sh:0 12px 40px rgba(0,0,0,.18);
color-scheme:light!important}
.panel,.launch{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);text-align:left;letter-spacing:normal}
:host([data-position=left]){left:20px!important;right:auto!important}
:host([data-theme=dark]){--ln:#7aa7ff;--bg:#1b1f24;--fg:#e6edf3;--mu:#9198a1;--bd:#3d444d;--ub:#262c36;--cb:#151b23;--sh:0 12px 40px rgba(0,0,0,.6);color-scheme:dark!important}
@media (prefers-color-scheme:dark){:host([data-theme=auto]){--ln:#7aa7ff;--bg:#1b1f24;--fg:#e6edf3;--mu:#9198a1;--bd:#3d444d;--ub:#262c36;--cb:#151b23;--sh:0 12px 40px rgba(0,0,0,.6);color-scheme:dark!important}}
*,*::before,*::after{box-sizing:border-box}
button{font:inherit;color:inherit;cursor:pointer}
:focus-visible{outline:3px solid var(--a);outline-offset:2px}
.launch.launch{width:56px;height:56px;border-radius:50%;border:0;background:var(--a);color:#fff;box-shadow:var(--sh);display:grid;place-items:center;transition:transform .15s}
.launch:hover{transform:scale(1.06)}
.launch svg{width:26px;height:26px;fill:none;stroke:currentColor;stroke-width:2;stroke-linecap:round;stroke-linejoin:round}
.panel{position:absolute;bottom:72px;right:0;width:min(400px,calc(100vw - 40px));height:min(620px,calc(100vh - 120px));display:flex;flex-direction:column;background:var(--bg);color:var(--fg);border:1px solid var(--bd);border-radius:14px;box-shadow:var(--sh);overflow:hidden;animation:pop .18s ease-out}
:host([data-position=left]) .panel{right:auto;left:0}
.panel[hidden]{display:none}
@keyframes pop{from{opacity:0;transform:translateY(12px) scale(.98)}}
header{display:flex;align-items:center;gap:6px;padding:10px 10px 10px 16px;border-bottom:1px solid var(--bd)}
h2{flex:1;margin:0;font-size:16px;font-weight:600;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.icon{width:34px;height:34px;border:0;border-radius:8px;background:transparent;color:var(--mu);display:grid;place-items:center;padding:0}
.icon:hover{background:var(--cb);color:var(--fg)}
.icon svg{width:18px;height:18px;fill:none;stroke:currentColor;stroke-width:2;stroke-linecap:round}
.log{flex:1;overflow-y:auto;padding:14px 14px 4px;overscroll-behavior:contain;display:flex;flex-direction:column;gap:12px}
.msg{max-width:92%;overflow-wrap:anywhere}
.user{align-self:flex-end;background:var(--a);color:#fff;padding:8px 12px;border-radius:14px 14px 4px 14px;white-space:pre-wrap}
.bot{align-self:flex-start;background:var(--cb);padding:8px 12px;border-radius:14px 14px 14px 4px;border:1px solid var(--bd)}
.md>:first-child>:first-child{margin-top:0}.md>:last-child>:last-child{margin-bottom:0}
.md p,.md ul,.md ol,.md pre,.md blockquote,.md table{margin:0 0 .6em}
.md h1,.md h2,.md h3,.md h4,.md h5,.md h6{font-size:1.05em;margin:.6em 0 .3em;white-space:normal}
.md ul,.md ol{padding-left:1.4em}
.md a,.src a{color:var(--ln)}
.md code{font:13px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--bg);border:1px solid var(--bd);border-radius:4px;padding:0 3px}
.md pre{background:var(--bg);border:1px solid var(--bd);border-radius:8px;padding:8px 10px;overflow-x:auto}
.md pre code{border:0;padding:0;background:none;white-space:pre}
.md blockquote{border-left:3px solid var(--bd);margin-left:0;padding-left:10px;color:var(--mu)}
.md table{border-collapse:collapse;display:block;overflow-x:auto}
.md th,.md td{border:1px solid var(--bd);padding:3px 8px}
.src{margin-top:8px;font-size:13px;color:var(--mu)}
.src ul{margin:2px 0 0;padding-left:1.2em}
.note{font-size:13px;color:var(--mu);margin-top:6px;display:flex;gap:8px;align-items:center;flex-wrap:wrap}
.err{color:#cf222e}:host([data-theme=dark]) .err{color:#ff7b72}
.small{font-size:13px;border:1px solid var(--bd);background:var(--bg);border-radius:6px;padding:2px 10px}
.fb{display:flex;gap:4px;margin-top:6px}
.fb button{width:30px;height:28px;border:1px solid transparent;border-radius:6px;background:transparent;color:var(--mu);padding:0;display:grid;place-items:center}
.fb button:hover,.fb button[aria-pressed=true]{border-color:var(--bd);color:var(--a);background:var(--bg)}
.fb svg{width:16px;height:16px;fill:none;stroke:currentColor;stroke-width:2;stroke-linejoin:round}
.dots{display:inline-flex;gap:4px;padding:6px 0}
.dots i{width:7px;height:7px;border-radius:50%;background:var(--mu);animation:blink 1.2s infinite both}
.dots i:nth-child(2){animation-delay:.2s}.dots i:nth-child(3){animation-delay:.4s}
@keyframes blink{0%,80%,100%{opacity:.25}40%{opacity:1}}
.state{font-size:13px;padding:4px 14px;color:var(--mu);min-height:0}
.state:empty{display:none}
.state.warn{background:#fff8c5;color:#6b5200}:host([data-theme=dark]) .state.warn{background:#3b2e00;color:#f2cc60}
form{display:flex;gap:8px;align-items:flex-end;padding:10px;border-top:1px solid var(--bd)}
textarea{flex:1;resize:none;font:inherit;color:var(--fg);background:var(--bg);border:1px solid var(--bd);border-radius:10px;padding:8px 10px;max-height:140px;min-height:40px;line-height:1.4}
textarea:focus{border-color:var(--a);outline:0;box-shadow:0 0 0 3px color-mix(in srgb,var(--a) 30%,transparent)}
.go{height:40px;min-width:64px;border:0;border-radius:10px;background:var(--a);color:#fff;font-weight:600;padding:0 14px}
.go.stop{background:var(--fg);color:var(--bg)}
.sr{position:absolute!important;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
@media (max-width:600px){:host{bottom:14px!important;right:14px!important}:host([data-position=left]){left:14px!important}
.panel{position:fixed;inset:0;width:100%;height:100%;max-height:none;border-radius:0;border:0;bottom:auto}
:host([data-open]) .launch{display:none}}
@media (prefers-reduced-motion:reduce){*,*::before,*::after{animation:none!important;transition:none!important;scroll-behavior:auto!important}}
@media (forced-colors:active){.launch,.go,.user{border:1px solid}}
`;
