// For scripts/bench-blossom: `sign COUNT` prints COUNT distinct kind 24242 events signed by
// nostr-tools, one JSON object per line; `verify FILE` checks every event in FILE with
// nostr-tools and prints {"events": N, "valid": V, "per_sec": R} (verification time only).
//   node tests/js/bench_events.mjs sign 20000 > events.jsonl
//   node tests/js/bench_events.mjs verify events.jsonl
import { readFileSync } from "node:fs";
import { fail, nostrTools, print, run } from "./lib.mjs";

run(async () => {
  const [mode, arg] = process.argv.slice(2);
  const { finalizeEvent, generateSecretKey, verifyEvent } = await nostrTools();
  if (mode === "sign") {
    const count = Number(arg);
    if (!Number.isSafeInteger(count) || count < 1) fail("COUNT must be a positive integer", 2);
    const sk = generateSecretKey();
    const now = Math.floor(Date.now() / 1000);
    const lines = [];
    for (let i = 0; i < count; i++) {
      const ev = finalizeEvent(
        {
          kind: 24242,
          created_at: now,
          tags: [["t", "upload"], ["x", i.toString(16).padStart(64, "0")], ["expiration", String(now + 3600)]],
          content: `bench ${i}`,
        },
        sk,
      );
      lines.push(JSON.stringify({ id: ev.id, pubkey: ev.pubkey, created_at: ev.created_at, kind: ev.kind, tags: ev.tags, content: ev.content, sig: ev.sig }));
    }
    process.stdout.write(lines.join("\n") + "\n");
  } else if (mode === "verify") {
    const events = readFileSync(arg, "utf8")
      .split("\n")
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l));
    const started = process.hrtime.bigint();
    let valid = 0;
    for (const ev of events) if (verifyEvent(ev)) valid++;
    const secs = Number(process.hrtime.bigint() - started) / 1e9;
    print({ events: events.length, valid, per_sec: events.length / secs });
  } else {
    fail("usage: bench_events.mjs sign COUNT | verify FILE", 2);
  }
});
