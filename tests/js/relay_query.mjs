// Asks a relay for stored events: sends ["REQ", sub, FILTER...] and collects the events it
// sends for that subscription until EOSE, then prints them as a JSON array (in the order the
// relay sent them). A CLOSED for the subscription, a dropped connection or no EOSE within
// TIMEOUT seconds (default 10, all in) is an error.
//   node tests/js/relay_query.mjs ws://127.0.0.1:PORT '{"kinds":[1063],"#x":["<sha256>"]}' [TIMEOUT]
// FILTER_JSON is one filter object or an array of them.
import { fail, parseJson, print, run, seconds, talkToRelay } from "./lib.mjs";

run(async () => {
  const args = process.argv.slice(2);
  if (args.length < 2 || args.length > 3) {
    fail("usage: relay_query.mjs WS_URL FILTER_JSON [TIMEOUT_SECONDS]", 2);
  }
  const [url, filterText] = args;
  const limit = seconds(args[2], 10);
  let filters = parseJson(filterText, "filter");
  if (!Array.isArray(filters)) filters = [filters];
  if (filters.length === 0 || !filters.every((f) => f !== null && typeof f === "object" && !Array.isArray(f))) {
    throw new Error("filter must be an object or a non-empty array of objects");
  }
  const sub = "q" + Math.random().toString(36).slice(2, 10);
  const events = [];
  const notices = [];
  const got = await talkToRelay(
    url,
    ["REQ", sub, ...filters],
    limit,
    (msg, finish, error) => {
      const [type, id] = msg;
      if (type === "EVENT" && id === sub) {
        events.push(msg[2]);
      } else if (type === "EOSE" && id === sub) {
        finish(events);
      } else if (type === "CLOSED" && id === sub) {
        error(new Error(`relay closed the subscription: ${msg[2] ?? ""}`));
      } else if (type === "NOTICE") {
        notices.push(String(msg[1]));
      }
    },
    () => `EOSE (${events.length} events so far${notices.length ? "; NOTICE: " + notices.join(" | ") : ""})`,
  );
  print(got);
});
