import { test } from "node:test";
import assert from "node:assert/strict";
import { load } from "./_load.mjs";

const { resolveUrl, sourceLinks, readingTitle } = await load("sources");
const PAGE = "http://blog.example/posts/hello.html?x=1#top";

test("relative source URLs resolve against the page the widget is on", () => {
  assert.equal(resolveUrl("/#installing-sidechat", PAGE), "http://blog.example/#installing-sidechat");
  assert.equal(resolveUrl("other.html", PAGE), "http://blog.example/posts/other.html");
  assert.equal(resolveUrl("#why", PAGE), "http://blog.example/posts/hello.html?x=1#why");
  assert.equal(resolveUrl("//cdn.example/a", "https://blog.example/"), "https://cdn.example/a");
  assert.equal(resolveUrl(" https://other.example/p ", PAGE), "https://other.example/p");
});

test("anything that is not http(s) after resolution is refused", () => {
  for (const bad of [
    "javascript:alert(1)",
    " JaVaScript:alert(1)",
    "java\nscript:alert(1)",
    "\tjavascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:x",
    "file:///etc/passwd",
    "mailto:me@example.com",
    "ftp://files.example/x",
    "",
    "   ",
    "http://[bad",
  ]) {
    assert.equal(resolveUrl(bad, PAGE), null, JSON.stringify(bad));
  }
  // A page without a usable base (about:blank, srcdoc): relative URLs cannot be followed.
  assert.equal(resolveUrl("/#x", "about:blank"), null);
  assert.equal(resolveUrl("https://a.example/", "about:blank"), "https://a.example/");
});

test("links keep order and titles, drop refused URLs and repeated pages", () => {
  const links = sourceLinks(
    [
      { id: "1", url: "/#a", title: "A" },
      { id: "2", url: "javascript:alert(1)", title: "evil" },
      { id: "3", url: "http://blog.example/#a", title: "A again" },
      { id: "4", url: "/b", title: "  " },
    ],
    PAGE,
  );
  assert.deepEqual(links, [
    { url: "http://blog.example/#a", title: "A" },
    { url: "http://blog.example/b", title: "http://blog.example/b" },
  ]);
  assert.deepEqual(sourceLinks(undefined, PAGE), []);
});

test("the reading note names the first followable source, only while no text has arrived", () => {
  const msg = { role: "assistant", content: "", status: "streaming", sources: [] };
  assert.equal(readingTitle(msg, PAGE), null);
  msg.sources.push({ id: "0", url: "data:text/html,x", title: "Hostile" });
  assert.equal(readingTitle(msg, PAGE), null);
  msg.sources.push({ id: "1", url: "/#a", title: "Installing sidechat" }, { id: "2", url: "/#b", title: "B" });
  assert.equal(readingTitle(msg, PAGE), "Installing sidechat");
  assert.equal(readingTitle({ ...msg, status: "pending" }, PAGE), "Installing sidechat");
  assert.equal(readingTitle({ ...msg, content: "The" }, PAGE), null);
  assert.equal(readingTitle({ ...msg, status: "done" }, PAGE), null);
  assert.equal(readingTitle({ ...msg, status: "error" }, PAGE), null);
  const long = { ...msg, sources: [{ id: "1", url: "/x", title: "x".repeat(200) }] };
  assert.equal(readingTitle(long, PAGE, 10), "xxxxxxxxx…");
});
