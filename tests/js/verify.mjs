// Checks a NIP-01 event read as JSON from standard input with nostr-tools: the id must be
// the SHA-256 of the event's serialization and sig a valid BIP-340 signature of the id by
// pubkey. Prints {"valid": true|false}; input that is not JSON is an error (exit 1).
//   node tests/js/verify.mjs < event.json
import { nostrTools, parseJson, print, readStdin, run } from "./lib.mjs";

run(async () => {
  const ev = parseJson(readStdin(), "standard input");
  const { validateEvent, verifyEvent } = await nostrTools();
  let valid = false;
  if (ev !== null && typeof ev === "object" && !Array.isArray(ev) && validateEvent(ev)) {
    valid =
      typeof ev.id === "string" &&
      typeof ev.sig === "string" &&
      /^[0-9a-f]{128}$/.test(ev.sig) &&
      verifyEvent(ev) === true;
  }
  print({ valid });
});
