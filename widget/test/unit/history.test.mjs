// The conversation store without a browser: Node has no IndexedDB, so store.ts keeps
// conversations in memory, the fallback private modes use; the BroadcastChannel is Node's own.
import { test } from "node:test";
import assert from "node:assert/strict";
import { load } from "./_load.mjs";

const { History } = await load("history");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** What another page would load for `key` (its channel closed again, so Node can exit). */
async function peek(key) {
  const h = new History(key, () => {});
  try {
    return await h.load();
  } finally {
    h.close();
  }
}

test("a saved conversation loads back whole, as a copy", async () => {
  const a = new History("http://chat.example", () => {});
  a.conv.conversationId = "c1";
  a.conv.messages.push(
    { role: "user", content: "How do I install it?" },
    { role: "assistant", content: "Run pip.", status: "streaming", turnId: "t1", lastEventId: 7, sources: [{ id: "s", url: "/#i", title: "I" }] },
  );
  const before = Date.now();
  await a.flush();
  const loaded = await a.load();
  assert.equal(loaded.conversationId, "c1");
  assert.deepEqual(loaded.messages, a.conv.messages);
  assert.ok(loaded.updated >= before);
  a.conv.messages[1].content += " More."; // later edits do not leak into the stored copy
  assert.equal((await a.load()).messages[1].content, "Run pip.");
  assert.deepEqual((await peek("http://other.example")).messages, []);
  a.close();
});

test("tokens in a burst are written once, within 250 ms, and other tabs hear of it", async () => {
  let heard = 0;
  const key = "http://burst.example";
  const tab1 = new History(key, () => {});
  const tab2 = new History(key, () => heard++);
  const elsewhere = new History("http://unrelated.example", () => assert.fail("wrong key"));
  tab1.conv.messages.push({ role: "assistant", content: "", status: "streaming", lastEventId: 0 });
  for (let i = 1; i <= 20; i++) {
    tab1.conv.messages[0].content += `tok${i} `;
    tab1.conv.messages[0].lastEventId = i;
    tab1.save();
  }
  assert.deepEqual((await tab2.load()).messages, [], "not written at once");
  await sleep(400);
  const stored = (await tab2.load()).messages[0];
  assert.equal(stored.lastEventId, 20);
  assert.equal(stored.content.trim().split(" ").length, 20, "text and last event id together");
  assert.equal(heard, 1);
  await tab1.reset();
  await sleep(50);
  assert.deepEqual((await tab2.load()).messages, []);
  assert.equal(heard, 2);
  for (const h of [tab1, tab2, elsewhere]) h.close();
});

test("closing writes what is pending", async () => {
  const key = "http://close.example";
  const h = new History(key, () => {});
  h.conv.messages.push({ role: "user", content: "last words" });
  h.save();
  h.close();
  await sleep(20);
  assert.equal((await peek(key)).messages[0].content, "last words");
});
