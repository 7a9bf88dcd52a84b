// Drives the web UI in Debian's chromium through playwright-core, as a person would:
// the dashboard's health score, a file put on the page's drop target (its file input),
// the upload's progress bar, the row with its size, "copy magnet", delete; screenshots of
// the dashboard and the files page (desktop) and the dashboard at phone width.
//
// usage: node ui.mjs BASE_URL FILE OUT_DIR
// prints {score, saw_progress, row_size, copied, descriptor, gone, phone_overflow, errors}
import { mkdirSync } from "node:fs";
import { basename, join } from "node:path";
import { fail, playwright, run } from "./lib.mjs";

run(async () => {
  const [base, file, out] = process.argv.slice(2);
  if (!base || !file || !out) fail("usage: ui.mjs BASE_URL FILE OUT_DIR", 2);
  mkdirSync(out, { recursive: true });
  const { chromium } = playwright();
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    // Only loopback: anything else goes to a proxy that is not there.
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-component-update",
      "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1;localhost"],
    headless: true,
  });
  const errors = [];
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    page.on("pageerror", (e) => errors.push(String(e)));
    page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
    page.on("dialog", (d) => d.accept());
    await page.goto(base + "/", { waitUntil: "load" });
    const scoreEl = page.locator("#health-score");
    await scoreEl.waitFor({ timeout: 15000 });
    const score = Number(await scoreEl.textContent());

    await page.goto(base + "/#/files");
    await page.locator("#files").waitFor();
    await page.evaluate(() => {
      window.__sawProgress = false;
      new MutationObserver(() => {
        if (document.querySelector("#uploads progress")) window.__sawProgress = true;
      }).observe(document.getElementById("uploads"), { childList: true, subtree: true });
    });
    await page.setInputFiles("#file-input", file);
    const name = basename(file);
    const row = page.locator("#files tr", { hasText: name });
    await row.waitFor({ timeout: 30000 });
    const saw_progress = await page.evaluate(() => window.__sawProgress);
    const row_size = (await row.locator("td.size").textContent()).trim();
    await row.locator("button.copy-magnet").click();
    const copied = await page.evaluate(() => document.body.dataset.lastCopied);
    const descriptor = await page.evaluate(async (n) => {
      const list = await (await fetch("/api/files")).json();
      return list.files.find((f) => f.name === n);
    }, name);
    await page.screenshot({ path: join(out, "files.png") });
    await row.locator("button.delete").click();
    await row.waitFor({ state: "detached", timeout: 15000 });
    const gone = (await page.locator("#files tr", { hasText: name }).count()) === 0;

    // Back on the dashboard: the history gets a few samples (one per 10 s) that include the
    // upload, then the screenshot.
    await page.goto(base + "/#/");
    await page.locator("#health-score").waitFor();
    await page.waitForTimeout(21000);
    await page.screenshot({ path: join(out, "dashboard.png") });

    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(base + "/#/");
    await page.locator("#health-score").waitFor();
    const phone_overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    await page.screenshot({ path: join(out, "dashboard-phone.png") });
    process.stdout.write(JSON.stringify({ score, saw_progress, row_size, copied, descriptor, gone, phone_overflow, errors }) + "\n");
  } finally {
    await browser.close();
  }
});
