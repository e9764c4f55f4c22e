/** Every visible (and screen-reader) string, overridable for translation with
 * `data-text-<kebab-key>="…"` on the script tag or `sidechat.init({strings: {...}})`. */
export const STRINGS = {
  open: "Open chat",
  close: "Close chat",
  send: "Send",
  stop: "Stop",
  retry: "Retry",
  inputLabel: "Your question",
  thinking: "Thinking…",
  /** Shown (and said once) while the answer has no text yet; {title} is the page being read. */
  reading: "Reading: {title}…",
  connecting: "Connecting…",
  reconnecting: "Connection lost, reconnecting…",
  offline: "You are offline. Waiting for the network…",
  stopped: "Stopped.",
  /** A visitor's own rate limit; {seconds} counts down to when they may send again. */
  tooFast: "You're sending messages too fast — try again in {seconds} s.",
  dailyLimit: "You have reached today's limit of questions. Please come back tomorrow.",
  error: "Something went wrong.",
  unavailable: "This reply is no longer available.",
  sources: "Sources",
  helpful: "Helpful",
  notHelpful: "Not helpful",
  thanks: "Thanks for the feedback!",
  you: "You",
  assistant: "Assistant",
  clear: "New conversation",
  answerReady: "Answer: ",
  newTab: "(opens in a new tab)",
};
export type Strings = typeof STRINGS;
