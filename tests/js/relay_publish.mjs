// Sends one event, read as JSON from standard input, to a relay as ["EVENT", ev] and prints
// the relay's answer: {"id": "...", "accepted": true|false, "message": "..."}, where id is
// the one the OK named. A refusal is still exit 0; no OK within TIMEOUT seconds (default 10)
// is an error. nostr-relay 1.14 names no id ("") in the OK when it refuses an event as
// invalid, and sends it only after a pause (2 s, doubling for each refusal on a connection),
// so an OK with an empty id counts as the answer too.
//   node tests/js/relay_publish.mjs ws://127.0.0.1:PORT [TIMEOUT] < event.json
import { fail, parseJson, print, readStdin, run, seconds, talkToRelay } from "./lib.mjs";

run(async () => {
  const args = process.argv.slice(2);
  if (args.length < 1 || args.length > 2) {
    fail("usage: relay_publish.mjs WS_URL [TIMEOUT_SECONDS] < event.json", 2);
  }
  const ev = parseJson(readStdin(), "standard input");
  if (ev === null || typeof ev !== "object" || Array.isArray(ev)) {
    throw new Error("standard input must be one event object");
  }
  const notices = [];
  const answer = await talkToRelay(
    args[0],
    ["EVENT", ev],
    seconds(args[1], 10),
    (msg, finish) => {
      if (msg[0] === "OK" && (msg[1] === ev.id || msg[1] === "")) {
        finish({ id: String(msg[1]), accepted: msg[2] === true, message: String(msg[3] ?? "") });
      } else if (msg[0] === "NOTICE") {
        notices.push(String(msg[1]));
      }
    },
    () => `OK for ${ev.id}${notices.length ? " (NOTICE: " + notices.join(" | ") + ")" : ""}`,
  );
  print(answer);
});
