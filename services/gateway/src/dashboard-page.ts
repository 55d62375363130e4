import { createHash } from "node:crypto";

const STYLE = `
:root { color-scheme: light; --ink: #1d2330; --muted: #5d6677; --line: #dde1e8; --panel: #fff; --bg: #f3f5f8; --accent: #2458c6; --good: #1f7a3d; --bad: #b3261e; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.4 system-ui, -apple-system, "Segoe UI", "Liberation Sans", "DejaVu Sans", sans-serif; color: var(--ink); background: var(--bg); }
header { display: flex; align-items: center; gap: 16px; padding: 12px 20px; background: var(--ink); color: #fff; }
header h1 { font-size: 18px; margin: 0; }
header .key { margin-left: auto; font-size: 13px; }
header input { margin-left: 6px; width: 220px; }
main { padding: 16px 20px; display: grid; gap: 16px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(180px, 1fr)); gap: 12px; }
.tile, .panel { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 12px 14px; }
.tile .label { color: var(--muted); font-size: 13px; }
.tile .value { font-size: 30px; font-weight: 600; font-variant-numeric: tabular-nums; }
.tile .sub { color: var(--muted); font-size: 12px; min-height: 1em; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 16px; align-items: start; }
h2 { font-size: 15px; margin: 0 0 8px; }
table { width: 100%; border-collapse: collapse; font-size: 14px; }
th, td { text-align: left; padding: 4px 6px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 500; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.page, td.stream { word-break: break-all; }
.up { color: var(--good); font-weight: 600; }
.down { color: var(--bad); font-weight: 600; }
.empty { color: var(--muted); font-style: italic; }
.status { font-size: 13px; padding: 2px 8px; border-radius: 10px; background: #596275; }
.status.live { background: var(--good); }
.status.off { background: var(--bad); }
#updated { font-size: 12px; color: #c8cdd8; }
.bars { display: grid; grid-template-columns: max-content 1fr max-content; gap: 4px 8px; align-items: center; font-size: 13px; }
.bar { height: 14px; background: #e8ecf3; border-radius: 3px; overflow: hidden; }
.bar > div { height: 100%; background: var(--accent); }
form .row { display: flex; gap: 8px; margin-bottom: 6px; }
form input[type="text"] { flex: 1; min-width: 0; }
input, button { font: inherit; padding: 5px 8px; border: 1px solid #b9c0cc; border-radius: 4px; }
button { background: var(--accent); color: #fff; border-color: var(--accent); cursor: pointer; }
.message { margin: 4px 0; min-height: 1.4em; color: var(--muted); font-size: 13px; }
.message.error { color: var(--bad); }
a { color: var(--accent); }
`;

const SCRIPT = `
"use strict";
const $ = (id) => document.getElementById(id);
const keyInput = $("api-key");

function requestHeaders(json) {
  const headers = json ? { "content-type": "application/json" } : {};
  const key = keyInput.value.trim();
  if (key) headers["x-api-key"] = key;
  return headers;
}

function el(tag, text, className) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (className) e.className = className;
  return e;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) tr.append(c);
  return tr;
}

function emptyRow(columns, text) {
  const td = el("td", text, "empty");
  td.colSpan = columns;
  return row([td]);
}

/** A link only for http(s) urls; anything else stays plain text. */
function pageCell(url, title) {
  const td = el("td", undefined, "page");
  let href = null;
  try { const u = new URL(url); if (u.protocol === "http:" || u.protocol === "https:") href = u.href; } catch {}
  const text = title ? title + " — " + url : url;
  if (href) { const a = el("a", text); a.href = href; a.rel = "noopener noreferrer"; a.target = "_blank"; td.append(a); }
  else td.textContent = text;
  return td;
}

const whole = new Intl.NumberFormat("en");
const tenths = new Intl.NumberFormat("en", { minimumFractionDigits: 1, maximumFractionDigits: 1 });
const show = (v, format) => (v === null || v === undefined ? "–" : format.format(v));

function render(s) {
  $("clicks-rate").textContent = show(s.clicks.appliedPerSecond, tenths);
  $("clicks-applied").textContent = show(s.clicks.applied, whole);
  $("published-rate").textContent = show(s.clicks.publishedPerSecond, tenths);
  $("published-total").textContent = s.clicks.published === null ? "ingest: no reading" : whole.format(s.clicks.published) + " published in all";

  $("services").replaceChildren(...s.services.map((svc) => row([
    el("td", svc.name),
    el("td", svc.healthy ? "up" : "down", svc.healthy ? "up" : "down"),
    el("td", svc.metrics ? "yes" : "no", svc.metrics ? "" : "down"),
    el("td", svc.residentBytes === null ? "–" : whole.format(Math.round(svc.residentBytes / 1048576)) + " MiB", "num"),
  ])));

  $("lag").replaceChildren(...(s.lag.length === 0
    ? [emptyRow(3, "no consumer reporting")]
    : s.lag.map((l) => row([el("td", l.consumer), el("td", l.stream, "stream"), el("td", whole.format(l.messages), "num")]))));

  const b = s.embedBatches;
  $("batch-mean").textContent = b && b.meanSize !== null ? tenths.format(b.meanSize) : "–";
  $("batch-count").textContent = b ? whole.format(b.batches) + " batches, " + whole.format(b.texts) + " texts" : "embedder: no reading";
  const bars = $("batches");
  if (!b || b.batches === 0) bars.replaceChildren(el("span", b ? "no batch run yet" : "no reading from the embedder", "empty"));
  else {
    const most = Math.max(...b.buckets.map((x) => x.batches), 1);
    bars.replaceChildren(...b.buckets.flatMap((x) => {
      const bar = el("div", undefined, "bar");
      const fill = el("div");
      fill.style.width = (100 * x.batches / most).toFixed(1) + "%";
      bar.append(fill);
      return [el("span", x.label), bar, el("span", whole.format(x.batches), "num")];
    }));
  }
  $("updated").textContent = "updated " + new Date(s.at).toLocaleTimeString();
}

function setLive(state, text) {
  const badge = $("live");
  badge.className = "status " + state;
  badge.textContent = text;
}

// The snapshots arrive as server-sent events; read with fetch so that an API key can go in a header.
let following = null;
async function follow() {
  const ctl = new AbortController();
  following = ctl;
  let retry = true;
  try {
    const res = await fetch("/dashboard/events", { headers: requestHeaders(false), signal: ctl.signal, cache: "no-store" });
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      retry = res.status !== 401 && res.status !== 403;
      setLive("off", body.message || "HTTP " + res.status);
    } else {
      setLive("live", "live");
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\\n\\n")) >= 0) {
          const data = buffer.slice(0, end).split("\\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\\n");
          buffer = buffer.slice(end + 2);
          if (data) render(JSON.parse(data));
        }
      }
      setLive("off", "reconnecting…");
    }
  } catch (err) {
    if (ctl.signal.aborted) return;
    setLive("off", "reconnecting…");
  }
  if (retry && !ctl.signal.aborted) setTimeout(() => { if (following === ctl) follow(); }, 2000);
}
keyInput.addEventListener("change", () => { following?.abort(); follow(); });
follow();

async function callGateway(method, body) {
  const res = await fetch("/recsys.gateway.v1.GatewayService/" + method, { method: "POST", headers: requestHeaders(true), body: JSON.stringify(body) });
  const json = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(json.code ? json.code + ": " + (json.message || "") : "HTTP " + res.status);
  return json;
}

function answerForm(formId, run) {
  const form = $(formId);
  const message = form.querySelector(".message");
  const results = form.querySelector("tbody");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.className = "message";
    message.textContent = "asking…";
    try {
      const { rows, text } = await run();
      results.replaceChildren(...rows);
      message.textContent = text;
    } catch (err) {
      results.replaceChildren();
      message.className = "message error";
      message.textContent = String(err.message || err);
    }
  });
}

answerForm("recommendation-form", async () => {
  const url = $("recommendation-url").value.trim();
  const items = (await callGateway("Recommendation", { url, limit: 10 })).items || [];
  return {
    rows: items.map((i) => row([pageCell(i.recommendation), el("td", String(i.frequency), "num")])),
    text: items.length ? "pages visited within 10 minutes after it, most often first" : "no co-visits of this page yet",
  };
});

answerForm("similar-form", async () => {
  const userid = $("similar-userid").value.trim();
  const items = (await callGateway("SimilarContent", { userid, limit: 10 })).items || [];
  const known = items.some((i) => (i.similarity || 0) > 0);
  return {
    rows: items.map((i) => row([pageCell(i.url, i.title), el("td", (i.similarity || 0).toFixed(3), "num")])),
    text: items.length === 0 ? "no pages stored yet" : known ? "closest in meaning to what this user read" : "no interest known for this user yet: every similarity is 0",
  };
});
`;

const HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>recsys live</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
<header>
  <h1>recsys live</h1>
  <span id="live" class="status">connecting…</span>
  <span id="updated"></span>
  <label class="key">API key<input id="api-key" type="password" autocomplete="off" placeholder="only if the gateway needs one"></label>
</header>
<main>
  <section class="tiles">
    <div class="tile"><div class="label">clicks/s applied</div><div class="value" id="clicks-rate">–</div><div class="sub">by covisit, over the last 5 s</div></div>
    <div class="tile"><div class="label">clicks applied</div><div class="value" id="clicks-applied">–</div><div class="sub">since covisit started</div></div>
    <div class="tile"><div class="label">clicks/s published</div><div class="value" id="published-rate">–</div><div class="sub" id="published-total"></div></div>
    <div class="tile"><div class="label">mean embed batch size</div><div class="value" id="batch-mean">–</div><div class="sub" id="batch-count"></div></div>
  </section>
  <section class="grid">
    <div class="panel">
      <h2>Services</h2>
      <table><thead><tr><th>service</th><th>health</th><th>metrics</th><th class="num">memory</th></tr></thead><tbody id="services"></tbody></table>
    </div>
    <div class="panel">
      <h2>Consumer lag</h2>
      <table><thead><tr><th>consumer</th><th>stream</th><th class="num">messages</th></tr></thead><tbody id="lag"></tbody></table>
    </div>
    <div class="panel">
      <h2>Embedder batch sizes</h2>
      <div id="batches" class="bars"></div>
    </div>
  </section>
  <section class="grid">
    <form id="recommendation-form" class="panel" autocomplete="off">
      <h2>Co-visits of a page</h2>
      <div class="row"><input id="recommendation-url" type="text" placeholder="https://en.wikipedia.org/wiki/…" required><button type="submit">Recommend</button></div>
      <p class="message"></p>
      <table><thead><tr><th>page</th><th class="num">frequency</th></tr></thead><tbody id="recommendation-results"></tbody></table>
    </form>
    <form id="similar-form" class="panel" autocomplete="off">
      <h2>Similar pages for a user</h2>
      <div class="row"><input id="similar-userid" type="text" placeholder="userid" required><button type="submit">Find</button></div>
      <p class="message"></p>
      <table><thead><tr><th>page</th><th class="num">similarity</th></tr></thead><tbody id="similar-results"></tbody></table>
    </form>
  </section>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;

const sha256 = (text: string) => `'sha256-${createHash("sha256").update(text, "utf8").digest("base64")}'`;

/** The dashboard page, and a policy that lets only its own inline script and style run. */
export const DASHBOARD_PAGE = {
  html: HTML,
  contentSecurityPolicy: [
    "default-src 'none'",
    `script-src ${sha256(SCRIPT)}`,
    `style-src ${sha256(STYLE)}`,
    "connect-src 'self'",
    "img-src data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; "),
};
