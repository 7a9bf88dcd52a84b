// Signs a NIP-01 event with nostr-tools and prints it as one line of JSON:
//   node tests/js/sign.mjs SECRET_KEY_HEX KIND CREATED_AT TAGS_JSON [CONTENT]
// CREATED_AT is unix seconds or "now"; TAGS_JSON is an array of arrays of strings; without
// CONTENT the content is read from standard input (as is, no newline stripped).
import { fail, hex32, nostrTools, parseJson, print, readStdin, run } from "./lib.mjs";

run(async () => {
  const args = process.argv.slice(2);
  if (args.length < 4 || args.length > 5) {
    fail("usage: sign.mjs SECRET_KEY_HEX KIND CREATED_AT TAGS_JSON [CONTENT]", 2);
  }
  const [skHex, kindText, createdText, tagsText] = args;
  const sk = hex32(skHex, "secret key");
  if (!/^\d+$/.test(kindText) || Number(kindText) > 65535) {
    throw new Error("kind must be an integer 0..65535");
  }
  let createdAt;
  if (createdText === "now") {
    createdAt = Math.floor(Date.now() / 1000);
  } else if (/^\d+$/.test(createdText) && Number.isSafeInteger(Number(createdText))) {
    createdAt = Number(createdText);
  } else {
    throw new Error('created_at must be unix seconds or "now"');
  }
  const tags = parseJson(tagsText, "tags");
  if (!Array.isArray(tags) || !tags.every((t) => Array.isArray(t) && t.every((s) => typeof s === "string"))) {
    throw new Error("tags must be an array of arrays of strings");
  }
  const content = args.length === 5 ? args[4] : readStdin();

  const { finalizeEvent, verifyEvent } = await nostrTools();
  const ev = finalizeEvent({ kind: Number(kindText), created_at: createdAt, tags, content }, sk);
  const out = {
    id: ev.id,
    pubkey: ev.pubkey,
    created_at: ev.created_at,
    kind: ev.kind,
    tags: ev.tags,
    content: ev.content,
    sig: ev.sig,
  };
  // Check with a fresh copy, so nostr-tools' "already verified" mark is not what answers.
  if (!verifyEvent(JSON.parse(JSON.stringify(out)))) {
    throw new Error("nostr-tools produced an event it does not verify");
  }
  print(out);
});
