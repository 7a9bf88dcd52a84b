// The web UI in Debian's Firefox (ESR), driven over WebDriver BiDi by puppeteer-core: the
// dashboard's health score, an upload through the files page's input, the new row with
// its size, and a screenshot. (The full flow with drag and drop, copy and delete runs in
// Chromium: ui.mjs.)
//
// usage: node ui_firefox.mjs BASE_URL FILE OUT_DIR
// prints {score, row_size, errors}
import { mkdirSync } from "node:fs";
import { basename, join } from "node:path";
import { fail, puppeteer, run } from "./lib.mjs";

run(async () => {
  const [base, file, out] = process.argv.slice(2);
  if (!base || !file || !out) fail("usage: ui_firefox.mjs BASE_URL FILE OUT_DIR", 2);
  mkdirSync(out, { recursive: true });
  const browser = await puppeteer().launch({
    browser: "firefox",
    executablePath: process.env.FIREFOX || "/usr/bin/firefox-esr",
    headless: true,
    timeout: 120000,
    // Only loopback: anything else goes to a proxy that is not there.
    extraPrefsFirefox: {
      "network.proxy.type": 1,
      "network.proxy.http": "127.0.0.1",
      "network.proxy.http_port": 9,
      "network.proxy.ssl": "127.0.0.1",
      "network.proxy.ssl_port": 9,
      "network.proxy.no_proxies_on": "localhost, 127.0.0.1",
      "services.settings.server": "http://127.0.0.1:9/",
    },
  });
  const errors = [];
  try {
    const page = await browser.newPage();
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.setViewport({ width: 1280, height: 800 });
    await page.goto(base + "/", { waitUntil: "load" });
    await page.waitForSelector("#health-score", { timeout: 20000 });
    const score = Number(await page.$eval("#health-score", (el) => el.textContent));
    await page.goto(base + "/#/files");
    await page.waitForSelector("#file-input");
    const input = await page.$("#file-input");
    await input.uploadFile(file);
    const name = basename(file);
    await page.waitForFunction(
      (n) => [...document.querySelectorAll("#files tr")].some((tr) => tr.textContent.includes(n)),
      { timeout: 30000 }, name);
    const row_size = await page.evaluate((n) => {
      const tr = [...document.querySelectorAll("#files tr")].find((r) => r.textContent.includes(n));
      return tr.querySelector("td.size").textContent.trim();
    }, name);
    await page.screenshot({ path: join(out, "files-firefox.png") });
    process.stdout.write(JSON.stringify({ score, row_size, errors }) + "\n");
  } finally {
    await browser.close();
  }
});
