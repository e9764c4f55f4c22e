// The AI SDK's own client code (`ai` on npm: AbstractChat, which useChat wraps, and
// DefaultChatTransport) talking to a running sidechat. SIDECHAT_URL names the server, which must
// proxy tests/fakes/openai_upstream.py (the messages below carry its directives).
// tests/e2e/test_ai_sdk.py starts both and runs this file.
import { test } from "node:test";
import assert from "node:assert/strict";
import { AbstractChat, DefaultChatTransport, readUIMessageStream, uiMessageChunkSchema } from "ai";

const BASE = process.env.SIDECHAT_URL;
if (!BASE) throw new Error("set SIDECHAT_URL to a running sidechat (see tests/e2e/test_ai_sdk.py)");
const api = `${BASE}/api/chat`;
const words = (n) => Array.from({ length: n }, (_, i) => `tok${i} `).join("");
const uid = () => `node-${Date.now()}-${Math.random().toString(36).slice(2)}`;

/** The state a framework binding keeps (React's useChat keeps the same in a ReactChatState). */
class State {
  status = "ready";
  error = undefined;
  messages = [];
  pushMessage = (m) => void (this.messages = this.messages.concat(m));
  popMessage = () => void (this.messages = this.messages.slice(0, -1));
  replaceMessage = (i, m) => void (this.messages = this.messages.map((x, j) => (j === i ? this.snapshot(m) : x)));
  snapshot = (x) => structuredClone(x);
}

class Chat extends AbstractChat {
  constructor(init) {
    super({ ...init, state: new State() });
  }
}

const text = (message) => message.parts.filter((p) => p.type === "text").map((p) => p.text).join("");

test("useChat's Chat streams an answer and keeps the conversation", { timeout: 30_000 }, async () => {
  const errors = [];
  const chat = new Chat({ id: uid(), transport: new DefaultChatTransport({ api }), onError: (e) => errors.push(e) });
  await chat.sendMessage({ text: "[[tokens=12 interval=0.01]] hello from the ai package" });
  assert.deepEqual(errors, []);
  assert.equal(chat.status, "ready");
  assert.equal(chat.messages.length, 2);
  const [user, assistant] = chat.messages;
  assert.equal(user.role, "user");
  assert.equal(assistant.role, "assistant");
  assert.equal(text(assistant), words(12));
  // A follow-up in the same chat (sidechat keys the conversation by the chat id).
  await chat.sendMessage({ text: "[[tokens=3]] and a follow-up" });
  assert.deepEqual(errors, []);
  assert.equal(chat.messages.length, 4);
  assert.equal(text(chat.messages[3]), words(3));
});

test("every chunk passes the ai package's own uiMessageChunkSchema", { timeout: 30_000 }, async () => {
  const transport = new DefaultChatTransport({ api });
  const stream = await transport.sendMessages({
    chatId: uid(),
    trigger: "submit-message",
    messageId: undefined,
    abortSignal: new AbortController().signal,
    messages: [{ id: "u1", role: "user", parts: [{ type: "text", text: "[[tokens=5]] schema" }] }],
  });
  const schema = uiMessageChunkSchema();
  const types = [];
  for await (const chunk of stream) {
    const result = await schema.validate(chunk);
    assert.ok(result.success, `invalid chunk ${JSON.stringify(chunk)}`);
    types.push(chunk.type);
  }
  assert.equal(types[0], "start");
  assert.deepEqual(types.slice(-2), ["text-end", "finish"]);
  assert.equal(types.filter((t) => t === "text-delta").length, 5);
});

test("reconnectToStream resumes a chat's answer in progress, and says when there is none", { timeout: 30_000 }, async () => {
  const transport = new DefaultChatTransport({ api });
  const chatId = uid();
  assert.equal(await transport.reconnectToStream({ chatId }), null);
  const first = await transport.sendMessages({
    chatId,
    trigger: "submit-message",
    messageId: undefined,
    abortSignal: new AbortController().signal,
    messages: [{ id: "u1", role: "user", parts: [{ type: "text", text: "[[tokens=30 interval=0.03]] resume me" }] }],
  });
  const reader = first.getReader();
  await reader.read(); // start
  await reader.cancel(); // the page went away mid-answer
  const resumed = await transport.reconnectToStream({ chatId });
  assert.ok(resumed, "expected the answer in progress");
  let last;
  for await (const message of readUIMessageStream({ stream: resumed })) last = message;
  assert.equal(text(last), words(30));
});

test("stop() cancels the request and the chat settles", { timeout: 30_000 }, async () => {
  const chat = new Chat({ id: uid(), transport: new DefaultChatTransport({ api }) });
  const sending = chat.sendMessage({ text: "[[tokens=500 interval=0.02]] long" });
  while (chat.status !== "streaming") await new Promise((r) => setTimeout(r, 10));
  await chat.stop();
  await sending;
  assert.equal(chat.status, "ready");
  const got = text(chat.messages.at(-1));
  assert.ok(got.length > 0 && got.length < words(500).length);
});
