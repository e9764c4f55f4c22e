import { test } from "node:test";
import assert from "node:assert/strict";
import { load } from "./_load.mjs";

const { applyChunk, settle, resetForRetry, isBusy } = await load("chunks");

const streaming = () => ({ role: "assistant", content: "", status: "streaming", turnId: "t1", lastEventId: 0 });

test("a turn's chunks fold into the message, each saying what it changed", () => {
  const msg = streaming();
  const stream = [
    [1, { type: "start", messageId: "m" }, null],
    [2, { type: "source-url", sourceId: "s1", url: "/#a", title: "A" }, "sources"],
    [3, { type: "source-url", sourceId: "s2", url: "/#b" }, "sources"],
    [4, { type: "source-url", sourceId: "s1", url: "/#a", title: "A" }, null],
    [5, { type: "text-start", id: "t" }, null],
    [6, { type: "text-delta", id: "t", delta: "Hello" }, "text"],
    [7, { type: "text-delta", id: "t", delta: ", world" }, "text"],
    [8, { type: "text-delta", id: "t" }, "text"],
    [9, { type: "text-end", id: "t" }, null],
    [10, { type: "finish", finishReason: "stop" }, null],
  ];
  for (const [id, chunk, change] of stream) assert.equal(applyChunk(msg, id, chunk), change, JSON.stringify(chunk));
  assert.equal(msg.content, "Hello, world");
  assert.equal(msg.lastEventId, 10);
  assert.deepEqual(msg.sources, [
    { id: "s1", url: "/#a", title: "A" },
    { id: "s2", url: "/#b", title: "" },
  ]);
  assert.equal(msg.status, "streaming");
  settle(msg, "done", "gone");
  assert.equal(msg.status, "done");
  assert.ok(!isBusy(msg));
});

test("error and abort chunks end the message their way, and the end keeps it", () => {
  const failed = streaming();
  assert.equal(applyChunk(failed, 3, { type: "error", errorText: "upstream down" }), "status");
  settle(failed, "done", "gone");
  assert.deepEqual([failed.status, failed.error], ["error", "upstream down"]);
  const aborted = streaming();
  assert.equal(applyChunk(aborted, 4, { type: "abort" }), "status");
  settle(aborted, "done", "gone");
  assert.equal(aborted.status, "aborted");
});

test("a stream the server forgot, or one stopped, settles as such", () => {
  const gone = streaming();
  settle(gone, "gone", "This reply is no longer available.");
  assert.deepEqual([gone.status, gone.error], ["error", "This reply is no longer available."]);
  const stopped = streaming();
  settle(stopped, "stopped", "x");
  assert.equal(stopped.status, "aborted");
});

test("retry empties the answer but keeps it in place", () => {
  const msg = { ...streaming(), content: "half", status: "error", error: "boom", sources: [{ id: "1", url: "/", title: "" }], lastEventId: 9, rating: "up" };
  resetForRetry(msg);
  assert.deepEqual(
    { ...msg },
    { role: "assistant", content: "", status: "pending", error: undefined, sources: [], turnId: undefined, lastEventId: 0, rating: undefined },
  );
  assert.ok(isBusy(msg));
});
