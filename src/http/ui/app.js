// torrent-gateway web UI: hash-routed pages over the gateway's JSON API. Written for this
// project, no framework and no build step. Every text that comes from the API is put into
// the page with textContent (file names and pubkeys are other people's input), every write
// carries the X-TG-Request header the server requires of browsers, and a write token, when
// the gateway asks for one, lives in sessionStorage only.
"use strict";

const REFRESH_MS = 2000;
const PAGE_SIZE = 50;
const state = { page: "dashboard", timer: null, overview: null, filesCursor: [null], uploads: [] };

// ---- small helpers -------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  let v = Number(n);
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return (i === 0 ? v.toFixed(0) : v.toFixed(v < 10 ? 2 : 1)) + " " + units[i];
}

const rate = (n) => bytes(n) + "/s";
const when = (secs) => (secs ? new Date(secs * 1000).toLocaleString() : "—");

function setStatus(text, isError) {
  const el = document.getElementById("status");
  el.textContent = text;
  el.classList.toggle("error", !!isError);
}

function toast(text) {
  const el = document.getElementById("toast");
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 2500);
}

async function copy(text, what) {
  document.body.dataset.lastCopied = text;
  try {
    await navigator.clipboard.writeText(text);
    toast(what + " copied");
  } catch (e) {
    toast(what + ": " + text);
  }
}

// ---- the API -------------------------------------------------------------------------

function authHeaders() {
  const headers = { "X-TG-Request": "1" };
  const token = sessionStorage.getItem("tg-token");
  if (token) headers.Authorization = "Bearer " + token;
  return headers;
}

async function api(path, opts = {}) {
  const res = await fetch(path, { ...opts, headers: { ...authHeaders(), ...(opts.headers || {}) } });
  if ((res.status === 401 || res.status === 403) && !opts.retried && (await askToken())) {
    return api(path, { ...opts, retried: true });
  }
  if (!res.ok) {
    let reason = res.headers.get("X-Reason") || res.statusText;
    throw new Error(res.status + " " + reason);
  }
  const type = res.headers.get("Content-Type") || "";
  return type.includes("json") ? res.json() : res.text();
}

function askToken() {
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  input.value = "";
  return new Promise((resolve) => {
    const done = (ok) => {
      dialog.close();
      if (ok && input.value) sessionStorage.setItem("tg-token", input.value);
      resolve(ok && !!input.value);
    };
    document.getElementById("token-form").onsubmit = () => done(true);
    document.getElementById("token-cancel").onclick = () => done(false);
    dialog.showModal();
  });
}

// ---- pages ---------------------------------------------------------------------------

const pages = {
  dashboard: { render: renderDashboard, refresh: refreshDashboard },
  files: { render: renderFiles, refresh: null },
  tracker: { render: renderTracker, refresh: refreshTracker },
  nostr: { render: renderNostr, refresh: null },
  settings: { render: renderSettings, refresh: null },
};

function route() {
  const name = (location.hash.replace(/^#\/?/, "") || "dashboard").split("/")[0];
  state.page = pages[name] ? name : "dashboard";
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.dataset.page === state.page);
  }
  const main = document.getElementById("main");
  main.replaceChildren();
  pages[state.page].render(main);
  schedule(true);
}

function schedule(now) {
  clearTimeout(state.timer);
  const page = pages[state.page];
  if (!page.refresh || document.hidden) return;
  const run = async () => {
    try {
      await page.refresh();
      setStatus("updated " + new Date().toLocaleTimeString(), false);
    } catch (e) {
      setStatus("refresh failed: " + e.message, true);
    }
    if (!document.hidden) state.timer = setTimeout(run, REFRESH_MS);
  };
  state.timer = setTimeout(run, now ? 0 : REFRESH_MS);
}

// Dashboard ----------------------------------------------------------------------------

function renderDashboard(main) {
  main.append(
    h("h1", {}, "Dashboard"),
    h("div", { class: "grid", id: "cards" }),
    h("h2", {}, "Last hour"),
    h("div", { class: "card" }, h("canvas", { id: "chart", width: 1100, height: 220 }),
      h("div", { class: "muted", id: "legend" }, "sent ", h("span", { class: "score-ok" }, "■"),
        "  received ", h("span", { class: "score-degraded" }, "■"),
        "  requests/s ", h("span", { class: "score-error" }, "■"))),
    h("h2", {}, "Health"),
    h("div", { class: "table-wrap" }, h("table", { id: "components" })),
  );
}

function currentRates(samples) {
  if (!samples || samples.length < 2) return { sent: 0, received: 0, requests: 0 };
  const a = samples[samples.length - 2];
  const b = samples[samples.length - 1];
  const dt = Math.max(1, b.t - a.t);
  return { sent: (b.sent - a.sent) / dt, received: (b.received - a.received) / dt,
           requests: (b.requests - a.requests) / dt };
}

async function refreshDashboard() {
  const o = await api("/api/overview");
  state.overview = o;
  const samples = o.history.samples;
  const r = currentRates(samples);
  document.title = `↓ ${rate(r.received)} ↑ ${rate(r.sent)} · torrent-gateway`;
  const s = o.stats;
  const health = o.health;
  const p2p = s.peer_wire;
  const cards = [
    ["Health score", h("span", { class: "score-" + health.status, id: "health-score" }, health.score)],
    ["Sending", rate(r.sent)],
    ["Receiving", rate(r.received)],
    ["Requests/s", r.requests.toFixed(1)],
    ["Files", s.files.total],
    ["Stored", bytes(s.files.bytes)],
    ["Tracked torrents", s.tracker.torrents],
    ["Tracked peers", s.tracker.peers],
    ["Peer connections", p2p ? p2p.connections : "off"],
  ];
  document.getElementById("cards").replaceChildren(...cards.map(([label, value]) =>
    h("div", { class: "card" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value))));
  const rows = Object.entries(health.components).map(([name, c]) =>
    h("tr", {}, h("td", {}, name), h("td", {}, h("span", { class: "pill " + c.status }, c.status)),
      h("td", { class: "name" }, c.detail || "")));
  document.getElementById("components").replaceChildren(
    h("tr", {}, h("th", {}, "component"), h("th", {}, "status"), h("th", {}, "detail")), ...rows);
  drawChart(document.getElementById("chart"), samples);
}

function drawChart(canvas, samples) {
  const ctx = canvas.getContext("2d");
  const w = (canvas.width = canvas.clientWidth * devicePixelRatio || 1100);
  const ht = (canvas.height = canvas.clientHeight * devicePixelRatio || 220);
  ctx.clearRect(0, 0, w, ht);
  const styles = getComputedStyle(document.documentElement);
  ctx.strokeStyle = styles.getPropertyValue("--line");
  ctx.beginPath(); ctx.moveTo(0, ht - 1); ctx.lineTo(w, ht - 1); ctx.stroke();
  if (!samples || samples.length < 3) {
    ctx.fillStyle = styles.getPropertyValue("--muted");
    ctx.font = `${14 * devicePixelRatio}px system-ui`;
    ctx.fillText("collecting samples…", 10, ht / 2);
    return;
  }
  const points = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1], b = samples[i];
    const dt = Math.max(1, b.t - a.t);
    points.push({ t: b.t, sent: (b.sent - a.sent) / dt, received: (b.received - a.received) / dt,
                  requests: (b.requests - a.requests) / dt });
  }
  const t1 = samples[samples.length - 1].t;
  const t0 = Math.max(samples[0].t, t1 - 3600);
  const x = (t) => ((t - t0) / Math.max(1, t1 - t0)) * (w - 4) + 2;
  const series = [["sent", "--ok"], ["received", "--warn"], ["requests", "--bad"]];
  for (const [key, color] of series) {
    const max = Math.max(1, ...points.map((p) => p[key]));
    ctx.strokeStyle = styles.getPropertyValue(color);
    ctx.lineWidth = 2 * devicePixelRatio;
    ctx.fillStyle = ctx.strokeStyle;
    ctx.beginPath();
    points.forEach((p, i) => {
      const y = ht - 4 - (p[key] / max) * (ht - 12);
      if (i === 0) ctx.moveTo(x(p.t), y); else ctx.lineTo(x(p.t), y);
    });
    ctx.stroke();
    for (const p of points) {
      ctx.fillRect(x(p.t) - 2 * devicePixelRatio, ht - 4 - (p[key] / max) * (ht - 12) - 2 * devicePixelRatio,
        4 * devicePixelRatio, 4 * devicePixelRatio);
    }
    ctx.font = `${11 * devicePixelRatio}px system-ui`;
    ctx.fillText(key === "requests" ? max.toFixed(1) + "/s" : rate(max), 4, 14 * devicePixelRatio +
      series.findIndex((s) => s[0] === key) * 14 * devicePixelRatio);
  }
}

// Files --------------------------------------------------------------------------------

function renderFiles(main) {
  const input = h("input", { type: "file", multiple: true, id: "file-input", hidden: true,
    onchange: (e) => { uploadAll(e.target.files); e.target.value = ""; } });
  main.append(
    h("h1", {}, "Files"),
    h("div", { class: "dropzone", id: "dropzone" }, "Drop files anywhere on the page, or ",
      h("button", { type: "button", onclick: () => input.click() }, "choose files"), input),
    h("div", { class: "uploads", id: "uploads" }),
    h("div", { class: "table-wrap" }, h("table", { id: "files" })),
    h("div", { class: "pager", id: "pager" }),
  );
  state.filesCursor = [null];
  loadFiles().catch((e) => setStatus("loading files failed: " + e.message, true));
}

async function loadFiles() {
  const cursor = state.filesCursor[state.filesCursor.length - 1];
  const q = `/api/files?limit=${PAGE_SIZE}` + (cursor ? `&cursor=${encodeURIComponent(cursor)}` : "");
  const list = await api(q);
  const table = document.getElementById("files");
  if (!table) return;
  const head = h("tr", {}, h("th", {}, "name"), h("th", { class: "num" }, "size"), h("th", {}, "storage"),
    h("th", {}, "created"), h("th", {}, ""));
  const rows = list.files.map((f) => h("tr", { dataset: { sha256: f.sha256 } },
    h("td", { class: "name" }, f.name),
    h("td", { class: "num size" }, bytes(f.size)),
    h("td", {}, f.storage),
    h("td", {}, when(f.created_at)),
    h("td", {}, h("div", { class: "actions" },
      h("button", { type: "button", class: "copy-magnet", onclick: () => copy(f.magnet, "magnet") }, "magnet"),
      h("a", { class: "button", href: f.torrent_url, download: "" }, ".torrent"),
      h("button", { type: "button", onclick: () => copy(f.webseed_url, "webseed URL") }, "webseed"),
      h("a", { class: "button", href: f.download_url }, "download"),
      h("button", { type: "button", class: "danger delete", onclick: () => remove(f) }, "delete")))));
  table.replaceChildren(head, ...(rows.length ? rows : [h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No files yet."))]));
  const pager = document.getElementById("pager");
  pager.replaceChildren(...[
    state.filesCursor.length > 1 ? h("button", { type: "button", onclick: () => { state.filesCursor.pop(); loadFiles(); } }, "← newer") : null,
    list.next_cursor ? h("button", { type: "button", onclick: () => { state.filesCursor.push(list.next_cursor); loadFiles(); } }, "older →") : null,
  ].filter(Boolean));
}

async function remove(f) {
  if (!confirm(`Delete ${f.name} (${bytes(f.size)})? Seeding stops too.`)) return;
  try {
    await api(`/api/files/${f.sha256}`, { method: "DELETE" });
    toast("deleted " + f.name);
    await loadFiles();
  } catch (e) {
    toast("delete failed: " + e.message);
  }
}

function uploadAll(files) {
  for (const file of files) upload(file);
}

function upload(file, retried) {
  const box = document.getElementById("uploads");
  const bar = h("progress", { max: file.size || 1, value: 0 });
  const pct = h("span", { class: "pct muted" }, "0%");
  const row = h("div", { class: "upload" }, h("span", { class: "fname" }, file.name), bar, pct);
  if (box) box.prepend(row);
  const xhr = new XMLHttpRequest();
  xhr.open("PUT", "/api/files/" + encodeURIComponent(file.name));
  for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) {
      bar.value = e.loaded; bar.max = e.total;
      pct.textContent = Math.floor((100 * e.loaded) / e.total) + "%";
    }
  };
  xhr.onload = async () => {
    if (xhr.status === 201 || xhr.status === 200) {
      bar.value = bar.max; pct.textContent = "done";
      if (state.page === "files") loadFiles();
      setTimeout(() => row.remove(), 4000);
    } else if ((xhr.status === 401 || xhr.status === 403) && !retried && (await askToken())) {
      row.remove();
      upload(file, true);
    } else {
      row.classList.add("failed");
      pct.textContent = xhr.status;
      row.title = xhr.getResponseHeader("X-Reason") || "upload failed";
      toast(`${file.name}: ${row.title}`);
    }
  };
  xhr.onerror = () => { row.classList.add("failed"); pct.textContent = "error"; };
  xhr.send(file);
}

function installDropTarget() {
  const overlay = document.getElementById("drop-overlay");
  let depth = 0;
  const hasFiles = (e) => e.dataTransfer && [...e.dataTransfer.types].includes("Files");
  window.addEventListener("dragenter", (e) => { if (hasFiles(e)) { depth++; overlay.hidden = false; } });
  window.addEventListener("dragleave", () => { depth = Math.max(0, depth - 1); if (!depth) overlay.hidden = true; });
  window.addEventListener("dragover", (e) => { if (hasFiles(e)) e.preventDefault(); });
  window.addEventListener("drop", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth = 0; overlay.hidden = true;
    if (state.page !== "files") location.hash = "#/files";
    uploadAll(e.dataTransfer.files);
  });
}

// Tracker ------------------------------------------------------------------------------

function renderTracker(main) {
  main.append(h("h1", {}, "Tracker"), h("div", { class: "grid", id: "tracker-cards" }),
    h("h2", {}, "Swarms"), h("div", { class: "table-wrap" }, h("table", { id: "swarms" })),
    h("h2", {}, "Allowlist"), h("div", { id: "allowlist" }));
}

async function refreshTracker() {
  const [stats, swarms, allow] = await Promise.all([api("/api/stats"), api("/api/tracker/swarms?limit=100"),
    api("/api/tracker/allowlist")]);
  const t = stats.tracker;
  document.getElementById("tracker-cards").replaceChildren(...[["Mode", t.mode], ["Torrents", t.torrents],
    ["Seeders", t.seeders], ["Leechers", t.leechers],
    ["Announces", t.announces.http + t.announces.udp]].map(([l, v]) =>
    h("div", { class: "card" }, h("div", { class: "label" }, l), h("div", { class: "value" }, v))));
  document.getElementById("swarms").replaceChildren(
    h("tr", {}, h("th", {}, "info-hash"), h("th", { class: "num" }, "seeders"), h("th", { class: "num" }, "leechers"),
      h("th", { class: "num" }, "completed")),
    ...swarms.swarms.map((s) => h("tr", {}, h("td", { class: "name" }, s.info_hash),
      h("td", { class: "num" }, s.complete), h("td", { class: "num" }, s.incomplete), h("td", { class: "num" }, s.downloaded))));
  const box = document.getElementById("allowlist");
  if (box.contains(document.activeElement)) return; // do not disturb typing
  const hashes = allow.info_hashes || [];
  const editable = t.mode === "allowlist";
  box.replaceChildren(
    editable ? h("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); allowHash(e.target.hash.value.trim()); } },
      h("input", { type: "text", name: "hash", placeholder: "40-hex info-hash", pattern: "[0-9a-fA-F]{40}", required: true }),
      h("button", {}, "allow")) : h("p", { class: "muted" }, `The allowlist is used in allowlist mode (now: ${t.mode}).`),
    h("div", { class: "table-wrap" }, h("table", {}, ...hashes.map((ih) => h("tr", {}, h("td", { class: "name" }, ih),
      h("td", {}, editable ? h("button", { type: "button", class: "danger", onclick: () => disallow(ih) }, "remove") : ""))))));
}

async function allowHash(ih) {
  try { await api("/api/tracker/allowlist/" + ih, { method: "PUT" }); toast("allowed " + ih); await refreshTracker(); }
  catch (e) { toast("failed: " + e.message); }
}

async function disallow(ih) {
  try { await api("/api/tracker/allowlist/" + ih, { method: "DELETE" }); await refreshTracker(); }
  catch (e) { toast("failed: " + e.message); }
}

// Blossom and Nostr --------------------------------------------------------------------

function renderNostr(main) {
  main.append(h("h1", {}, "Blossom & Nostr"), h("div", { id: "nostr-status" }),
    h("h2", {}, "Blobs by pubkey"),
    h("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); listBlobs(e.target.pubkey.value.trim()); } },
      h("input", { type: "text", name: "pubkey", placeholder: "npub… or 64-hex pubkey", required: true }), h("button", {}, "list")),
    h("div", { id: "blobs" }), h("h2", {}, "Reports"), h("div", { id: "reports" }));
  loadNostr().catch((e) => setStatus("loading failed: " + e.message, true));
}

async function loadNostr() {
  const diag = await api("/api/diagnostics");
  const n = diag.nostr || {};
  const queued = new Map((n.outbox || []).map((o) => [o.relay, o]));
  const relays = n.relays || [];
  document.getElementById("nostr-status").replaceChildren(
    h("div", { class: "grid" },
      h("div", { class: "card" }, h("div", { class: "label" }, "Gateway npub"), h("div", { class: "name" }, n.npub || "—")),
      h("div", { class: "card" }, h("div", { class: "label" }, "Blossom"), h("div", {}, (diag.blossom && diag.blossom.url) || "off")),
      h("div", { class: "card" }, h("div", { class: "label" }, "Events accepted"), h("div", { class: "value" }, n.accepted ?? 0)),
      h("div", { class: "card" }, h("div", { class: "label" }, "Events rejected"), h("div", { class: "value" }, n.rejected ?? 0))),
    h("h2", {}, "Relays and outbox"),
    relays.length ? h("div", { class: "table-wrap" }, h("table", {},
      h("tr", {}, h("th", {}, "relay"), h("th", { class: "num" }, "queued"), h("th", {}, "last error")),
      ...relays.map((url) => {
        const o = queued.get(url) || {};
        return h("tr", {}, h("td", { class: "name" }, url), h("td", { class: "num" }, o.queued ?? 0),
          h("td", { class: "name" }, o.last_error || ""));
      }))) : h("p", { class: "muted" }, "No relays configured (nostr.relays)."),
    h("h2", {}, "Rejected events"),
    (n.rejections || []).length ? h("div", { class: "table-wrap" }, h("table", {},
      h("tr", {}, h("th", {}, "relay"), h("th", {}, "event"), h("th", {}, "message"), h("th", {}, "at")),
      ...n.rejections.map((r) => h("tr", {}, h("td", { class: "name" }, r.relay), h("td", { class: "name" }, r.event_id),
        h("td", { class: "name" }, r.message), h("td", {}, when(r.at)))))) : h("p", { class: "muted" }, "None."));
  try {
    const list = await api("/api/blossom/reports?limit=50");
    document.getElementById("reports").replaceChildren(list.length ? h("div", { class: "table-wrap" }, h("table", {},
      h("tr", {}, h("th", {}, "blobs"), h("th", {}, "type"), h("th", {}, "reporter"), h("th", {}, "content"), h("th", {}, "received")),
      ...list.map((r) => h("tr", {}, h("td", { class: "name" }, (r.blobs || []).join(", ")), h("td", {}, r.type || ""),
        h("td", { class: "name" }, r.reporter), h("td", { class: "name" }, r.content || ""), h("td", {}, when(r.received_at))))))
      : h("p", { class: "muted" }, "No reports."));
  } catch (e) {
    document.getElementById("reports").replaceChildren(h("p", { class: "error-text" }, e.message));
  }
}

async function listBlobs(pubkey) {
  const box = document.getElementById("blobs");
  try {
    const list = await api("/api/blossom/list/" + encodeURIComponent(pubkey) + "?limit=100");
    box.replaceChildren(list.length ? h("div", { class: "table-wrap" }, h("table", {}, ...list.map((b) =>
      h("tr", {}, h("td", { class: "name" }, b.sha256), h("td", { class: "num" }, bytes(b.size)), h("td", {}, b.type || ""),
        h("td", {}, when(b.uploaded)))))) : h("p", { class: "muted" }, "No blobs for this pubkey."));
  } catch (e) {
    box.replaceChildren(h("p", { class: "error-text" }, e.message));
  }
}

// Settings -----------------------------------------------------------------------------

function renderSettings(main) {
  main.append(h("h1", {}, "Settings"), h("p", { class: "muted" },
    "The effective configuration, read-only (secrets masked). Change it in the config file and restart."),
    h("div", { class: "table-wrap" }, h("table", { class: "kv", id: "config" })));
  api("/api/config").then((cfg) => {
    const rows = [];
    const walk = (prefix, v) => {
      if (v && typeof v === "object" && !Array.isArray(v)) {
        for (const [k, x] of Object.entries(v)) walk(prefix ? prefix + "." + k : k, x);
      } else {
        rows.push(h("tr", {}, h("td", {}, prefix), h("td", { class: "name" }, JSON.stringify(v))));
      }
    };
    walk("", cfg);
    document.getElementById("config").replaceChildren(...rows);
  }).catch((e) => setStatus("loading settings failed: " + e.message, true));
}

// ---- start ---------------------------------------------------------------------------

window.addEventListener("hashchange", route);
document.addEventListener("visibilitychange", () => schedule(!document.hidden));
installDropTarget();
route();
