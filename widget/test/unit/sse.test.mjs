import { test } from "node:test";
import assert from "node:assert/strict";
import { load } from "./_load.mjs";

const { SSEParser } = await load("sse");
const enc = new TextEncoder();

const STREAM =
  ": sidechat\nretry: 1000\n\n" +
  'id: 1\ndata: {"type":"start","messageId":"m"}\n\n' +
  'id: 2\ndata: {"type":"text-delta","id":"t","delta":"héllo 👋 wörld"}\n\n' +
  ": ping\n\n" +
  'id: 3\r\ndata: {"type":"text-delta","id":"t","delta":" again"}\r\n\r\n' +
  "id: 4\rdata: line one\rdata: line two\r\r" +
  "id: 5\ndata: [DONE]\n\n";

function parseAll(chunks) {
  const p = new SSEParser();
  return chunks.flatMap((c) => p.feed(c));
}

const expected = parseAll([enc.encode(STREAM)]);

test("parses ids, data, comments, retry and every line ending", () => {
  assert.deepEqual(expected.map((e) => e.id), ["1", "2", "3", "4", "5"]);
  assert.equal(JSON.parse(expected[1].data).delta, "héllo 👋 wörld");
  assert.equal(expected[3].data, "line one\nline two");
  assert.equal(expected[4].data, "[DONE]");
  const p = new SSEParser();
  p.feed(enc.encode(STREAM));
  assert.equal(p.retry, 1000);
});

test("every split of the byte stream gives the same events (no lost or broken tokens)", () => {
  const bytes = enc.encode(STREAM);
  for (let i = 1; i < bytes.length; i++) {
    assert.deepEqual(parseAll([bytes.slice(0, i), bytes.slice(i)]), expected, `split at ${i}`);
  }
  // Byte by byte: multi-byte characters and CRLF pairs split across chunks.
  assert.deepEqual(parseAll([...bytes].map((b) => new Uint8Array([b]))), expected);
});

test("an unfinished event is held back until its blank line arrives", () => {
  const p = new SSEParser();
  assert.deepEqual(p.feed("id: 7\ndata: par"), []);
  assert.deepEqual(p.feed("tial\n"), []);
  assert.deepEqual(p.feed("\n"), [{ id: "7", event: "message", data: "partial" }]);
});
