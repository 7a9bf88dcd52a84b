// Shared by the Nostr helper scripts beside this file. They use nostr-tools (secp256k1 and
// SHA-256 from the @noble packages), a signer written independently of the Rust side's k256,
// and the `ws` client. Both are installed by scripts/install-interop into
// target/interop/node (pinned by package-lock.json here); INTEROP_NODE_DIR overrides where.
//
// Every helper prints JSON on stdout and, on error, one line on stderr and a non-zero exit.
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const nodeDir = process.env.INTEROP_NODE_DIR || resolve(here, "../../target/interop/node");
const modules = join(nodeDir, "node_modules");

const script = basename(process.argv[1] || "helper");

/** Prints `script: message` on stderr and exits with `code`. */
export function fail(message, code = 1) {
  process.stderr.write(`${script}: ${String(message).split("\n")[0]}\n`);
  process.exit(code);
}

/** Runs `main`, turning any exception into a one-line error and exit 1. */
export function run(main) {
  Promise.resolve()
    .then(main)
    .catch((err) => fail(err && err.message ? err.message : err));
}

function need(rel) {
  const file = join(modules, rel);
  if (!existsSync(file)) {
    fail(`${file} is missing: run scripts/install-interop`);
  }
  return file;
}

/** nostr-tools' pure-JS event functions (finalizeEvent, verifyEvent, getPublicKey, ...). */
export async function nostrTools() {
  return import(pathToFileURL(need("nostr-tools/lib/esm/pure.js")).href);
}

/** nostr-tools' NIP-19 (bech32 npub/nsec) functions. */
export async function nip19() {
  return import(pathToFileURL(need("nostr-tools/lib/esm/nip19.js")).href);
}

/** The `bittorrent-dht` package's DHT class (webtorrent's Mainline DHT node). */
export async function BittorrentDht() {
  need("bittorrent-dht/package.json");
  return (await import(pathToFileURL(need("bittorrent-dht/index.js")).href)).default;
}

/** The `ws` package's WebSocket class. */
export function WebSocket() {
  need("ws/package.json");
  return createRequire(join(nodeDir, "package.json"))("ws");
}

/** 64 lowercase-or-uppercase hex characters as 32 bytes, or an error naming `what`. */
export function hex32(text, what) {
  if (typeof text !== "string" || !/^[0-9a-fA-F]{64}$/.test(text)) {
    throw new Error(`${what} must be 64 hex characters`);
  }
  return Uint8Array.from(Buffer.from(text, "hex"));
}

/** All of standard input as a string. */
export function readStdin() {
  return readFileSync(0, "utf8");
}

/** Parses JSON, naming `what` in the error. */
export function parseJson(text, what) {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`${what} is not JSON: ${err.message}`);
  }
}

/** Prints one JSON value on a line of its own. */
export function print(value) {
  process.stdout.write(JSON.stringify(value) + "\n");
}

/**
 * Opens a websocket to a relay and calls `onMessage(parsedArray, finish)` for each message;
 * `finish(value)` closes the socket and resolves with `value`. Sends `first` once open. Fails
 * if the socket errors or closes first, or after `seconds` in all.
 */
export function talkToRelay(url, first, seconds, onMessage, what) {
  if (!/^wss?:\/\//.test(url)) {
    throw new Error("relay URL must start with ws:// or wss://");
  }
  const WS = WebSocket();
  return new Promise((resolveP, rejectP) => {
    let done = false;
    const ws = new WS(url, { handshakeTimeout: seconds * 1000 });
    const end = (err, value) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      try {
        ws.close();
      } catch (_) {
        // already closed
      }
      setTimeout(() => ws.terminate(), 200).unref();
      if (err) rejectP(err);
      else resolveP(value);
    };
    const timer = setTimeout(() => end(new Error(`timed out after ${seconds} s waiting for ${what()}`)), seconds * 1000);
    ws.on("open", () => ws.send(JSON.stringify(first)));
    ws.on("error", (err) => end(new Error(`websocket ${url}: ${err.message}`)));
    ws.on("close", (code) => end(new Error(`relay closed the connection (code ${code}) before ${what()}`)));
    ws.on("message", (data) => {
      let msg;
      try {
        msg = JSON.parse(data.toString("utf8"));
      } catch (_) {
        end(new Error(`relay sent a message that is not JSON: ${data.toString("utf8").slice(0, 200)}`));
        return;
      }
      if (!Array.isArray(msg)) {
        end(new Error(`relay sent a message that is not an array: ${JSON.stringify(msg).slice(0, 200)}`));
        return;
      }
      try {
        onMessage(msg, (value) => end(null, value), (err) => end(err));
      } catch (err) {
        end(err);
      }
    });
  });
}

/** A positive number of seconds from an optional argument, `dflt` without one. */
export function seconds(text, dflt) {
  if (text === undefined) return dflt;
  const n = Number(text);
  if (!(n > 0) || !Number.isFinite(n)) throw new Error("timeout must be a positive number of seconds");
  return n;
}

/** playwright-core (it drives Debian's chromium; no browser download). */
export function playwright() {
  need("playwright-core/package.json");
  return createRequire(join(nodeDir, "package.json"))("playwright-core");
}

/** puppeteer-core (it drives Debian's firefox-esr over WebDriver BiDi). */
export function puppeteer() {
  need("puppeteer-core/package.json");
  return createRequire(join(nodeDir, "package.json"))("puppeteer-core");
}
