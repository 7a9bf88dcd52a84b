// A bittorrent-dht node (webtorrent's Mainline DHT, npm) on 127.0.0.1 for the DHT interop
// tests, driven by commands on stdin (one per line) and reporting JSON lines on stdout:
// first {"port": P}, then one line per event, until stdin closes. No bootstrap nodes.
//   node HOST:PORT         addNode (it is pinged)
//   nodes                  -> {"nodes": N}
//   announce IH PORT       announce IH with PORT -> {"announced": IH, "error": null|text}
//   lookup IH              -> {"peer": "host:port", "info_hash": IH} per peer found, then
//                             {"lookup_done": IH, "error": null|text}
// Announces other nodes make to this one: {"announce": IH, "peer": "host:port"}.
import { createInterface } from "node:readline";
import { BittorrentDht, fail, print, run } from "./lib.mjs";

run(async () => {
  const DHT = await BittorrentDht();
  const dht = new DHT({ bootstrap: false, host: false });
  dht.on("error", (err) => fail(`dht: ${err.message}`));
  dht.on("warning", (err) => process.stderr.write(`warning: ${err.message}\n`));
  dht.on("announce", (peer, infoHash) => {
    print({ announce: infoHash.toString("hex"), peer: `${peer.host}:${peer.port}` });
  });
  dht.on("peer", (peer, infoHash) => {
    print({ peer: `${peer.host}:${peer.port}`, info_hash: infoHash.toString("hex") });
  });
  await new Promise((resolve) => dht.listen(0, "127.0.0.1", resolve));
  print({ port: dht.address().port });
  const lines = createInterface({ input: process.stdin });
  lines.on("line", (line) => {
    const words = line.trim().split(/\s+/);
    if (!words[0]) return;
    if (words[0] === "node") {
      const at = words[1].lastIndexOf(":");
      dht.addNode({ host: words[1].slice(0, at), port: Number(words[1].slice(at + 1)) });
    } else if (words[0] === "nodes") {
      print({ nodes: dht.toJSON().nodes.length });
    } else if (words[0] === "announce") {
      dht.announce(words[1], Number(words[2]), (err) => {
        print({ announced: words[1], error: err ? err.message : null });
      });
    } else if (words[0] === "lookup") {
      dht.lookup(words[1], (err) => {
        print({ lookup_done: words[1], error: err ? err.message : null });
      });
    } else {
      print({ error: `unknown command ${words[0]}` });
    }
  });
  lines.on("close", () => dht.destroy(() => process.exit(0)));
});
