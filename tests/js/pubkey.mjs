// Derives the x-only public key of a secret key with nostr-tools:
//   node tests/js/pubkey.mjs SECRET_KEY_HEX   ->   {"pubkey": "<64 hex>", "npub": "npub1..."}
import { fail, hex32, nip19, nostrTools, print, run } from "./lib.mjs";

run(async () => {
  const args = process.argv.slice(2);
  if (args.length !== 1) {
    fail("usage: pubkey.mjs SECRET_KEY_HEX", 2);
  }
  const sk = hex32(args[0], "secret key");
  const { getPublicKey } = await nostrTools();
  const { npubEncode } = await nip19();
  const pubkey = getPublicKey(sk);
  print({ pubkey, npub: npubEncode(pubkey) });
});
