import { test } from "node:test";
import assert from "node:assert/strict";
import { load } from "./_load.mjs";

const { renderMarkdown, safeUrl, stableLength } = await load("markdown");

test("renders the Markdown a chat answer uses", () => {
  const html = renderMarkdown(
    "# Title\n\nSome **bold**, *em*, `code` and [a link](https://example.com).\n\n" +
      "- one\n- two\n  - nested\n\n1. first\n2. second\n\n" +
      "```js\nconst a = 1 < 2;\n\nconsole.log(a);\n```\n\n| a | b |\n|---|:-:|\n| 1 | 2 |\n\n> quoted",
  );
  assert.match(html, /<h1>Title<\/h1>/);
  assert.match(html, /<strong>bold<\/strong>, <em>em<\/em>, <code>code<\/code>/);
  assert.match(html, /<a href="https:\/\/example.com">a link<\/a>/);
  assert.match(html, /<ul><li>one<\/li><li>two<ul><li>nested<\/li><\/ul><\/li><\/ul>/);
  assert.match(html, /<ol><li>first<\/li><li>second<\/li><\/ol>/);
  assert.match(html, /<pre><code class="language-js">const a = 1 &lt; 2;\n\nconsole.log\(a\);<\/code><\/pre>/);
  assert.match(html, /<table><thead><tr><th>a<\/th><th align="center">b<\/th><\/tr><\/thead><tbody><tr><td>1<\/td><td align="center">2<\/td><\/tr><\/tbody><\/table>/);
  assert.match(html, /<blockquote><p>quoted<\/p><\/blockquote>/);
});

test("raw HTML is text, and only safe URLs become links", () => {
  const html = renderMarkdown('<img src=x onerror="alert(1)"> [x](javascript:alert(1)) [y]( JAVASCRIPT:alert(1)) ![p](https://t.example/p.gif)');
  assert.ok(!html.includes("<img"));
  assert.ok(html.includes("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;"));
  assert.ok(!/href="javascript/i.test(html));
  for (const bad of ["javascript:alert(1)", " JaVaScript:x", "data:text/html,x", "vbscript:x", "file:///etc/passwd"]) {
    assert.equal(safeUrl(bad), null, bad);
  }
  for (const good of ["https://a.example/x?y=1", "http://a.example", "mailto:me@example.com", "/posts/1", "#top"]) {
    assert.equal(safeUrl(good), good);
  }
});

test("stableLength only covers finished blocks, never an open code fence", () => {
  assert.equal(stableLength("para one\n\npara tw"), "para one\n\n".length);
  assert.equal(stableLength("no blank line yet"), 0);
  const fenced = "intro\n\n```\ncode\n\nmore code";
  assert.equal(stableLength(fenced), "intro\n\n".length);
  const closed = fenced + "\n```\nafter";
  assert.equal(stableLength(closed), (fenced + "\n```\n").length);
  // Rendering the stable prefix and the rest separately gives the same blocks as rendering all.
  const text = "# Hi\n\nSome *text*.\n\n- a\n- b\n\n```\nx\n\ny\n```\n\nlast para";
  const cut = stableLength(text);
  assert.equal(renderMarkdown(text.slice(0, cut)) + renderMarkdown(text.slice(cut)), renderMarkdown(text));
});
