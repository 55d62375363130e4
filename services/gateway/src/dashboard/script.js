"use strict";
const $ = (id) => document.getElementById(id);
const keyInput = $("api-key");
// Filled in by the gateway from the window covisit counts with.
const COVISIT_WINDOW = "{{COVISIT_WINDOW}}";

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
  try {
    const u = new URL(url);
    if (u.protocol === "http:" || u.protocol === "https:") href = u.href;
  } catch {}
  const text = title ? `${title} — ${url}` : url;
  if (href) {
    const a = el("a", text);
    a.href = href;
    a.rel = "noopener noreferrer";
    a.target = "_blank";
    td.append(a);
  } else td.textContent = text;
  return td;
}

const whole = new Intl.NumberFormat("en");
const tenths = new Intl.NumberFormat("en", { minimumFractionDigits: 1, maximumFractionDigits: 1 });
const show = (v, format) => (v === null || v === undefined ? "–" : format.format(v));

function render(s) {
  $("clicks-rate").textContent = show(s.clicks.appliedPerSecond, tenths);
  $("clicks-applied").textContent = show(s.clicks.applied, whole);
  $("published-rate").textContent = show(s.clicks.publishedPerSecond, tenths);
  $("published-total").textContent = s.clicks.published === null ? "ingest: no reading" : `${whole.format(s.clicks.published)} published in all`;

  $("services").replaceChildren(
    ...s.services.map((svc) =>
      row([
        el("td", svc.name),
        el("td", svc.healthy ? "up" : "down", svc.healthy ? "up" : "down"),
        el("td", svc.metrics ? "yes" : "no", svc.metrics ? "" : "down"),
        el("td", svc.residentBytes === null ? "–" : `${whole.format(Math.round(svc.residentBytes / 1048576))} MiB`, "num"),
      ]),
    ),
  );

  $("lag").replaceChildren(
    ...(s.lag.length === 0
      ? [emptyRow(3, "no consumer reporting")]
      : s.lag.map((l) => row([el("td", l.consumer), el("td", l.stream, "stream"), el("td", whole.format(l.messages), "num")]))),
  );

  const a = s.analytics;
  $("analytics-period").textContent = a && a.from ? `${a.from} – ${a.to}` : "analytics: no reading";
  $("event-mix").replaceChildren(
    ...(!a || a.events.length === 0
      ? [emptyRow(2, "no clicks counted yet")]
      : a.events.map((e) => row([el("td", e.event), el("td", whole.format(e.clicks), "num")]))),
  );
  $("trending").replaceChildren(
    ...(!a || a.trending.length === 0
      ? [emptyRow(2, "no clicks counted yet")]
      : a.trending.map((t) => row([el("td", t.url), el("td", whole.format(t.clicks), "num")]))),
  );

  const b = s.embedBatches;
  $("batch-mean").textContent = b && b.meanSize !== null ? tenths.format(b.meanSize) : "–";
  $("batch-count").textContent = b ? `${whole.format(b.batches)} batches, ${whole.format(b.texts)} texts` : "embedder: no reading";
  const bars = $("batches");
  if (!b || b.batches === 0) bars.replaceChildren(el("span", b ? "no batch run yet" : "no reading from the embedder", "empty"));
  else {
    const most = Math.max(...b.buckets.map((x) => x.batches), 1);
    bars.replaceChildren(
      ...b.buckets.flatMap((x) => {
        const bar = el("div", undefined, "bar");
        const fill = el("div");
        fill.style.width = `${((100 * x.batches) / most).toFixed(1)}%`;
        bar.append(fill);
        return [el("span", x.label), bar, el("span", whole.format(x.batches), "num")];
      }),
    );
  }
  $("updated").textContent = `updated ${new Date(s.at).toLocaleTimeString()}`;
}

function setLive(state, text) {
  const badge = $("live");
  badge.className = `status ${state}`;
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
      setLive("off", body.message || `HTTP ${res.status}`);
    } else {
      setLive("live", "live");
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const data = buffer
            .slice(0, end)
            .split("\n")
            .filter((l) => l.startsWith("data:"))
            .map((l) => l.slice(5).trim())
            .join("\n");
          buffer = buffer.slice(end + 2);
          if (data) render(JSON.parse(data));
        }
      }
      setLive("off", "reconnecting…");
    }
  } catch {
    if (ctl.signal.aborted) return;
    setLive("off", "reconnecting…");
  }
  if (retry && !ctl.signal.aborted)
    setTimeout(() => {
      if (following === ctl) follow();
    }, 2000);
}
keyInput.addEventListener("change", () => {
  following?.abort();
  follow();
});
follow();

async function callGateway(method, body) {
  const res = await fetch(`/recsys.gateway.v1.GatewayService/${method}`, { method: "POST", headers: requestHeaders(true), body: JSON.stringify(body) });
  const json = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(json.code ? `${json.code}: ${json.message || ""}` : `HTTP ${res.status}`);
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
    text: items.length ? `pages visited within ${COVISIT_WINDOW} after it, most often first` : "no co-visits of this page yet",
  };
});

answerForm("similar-form", async () => {
  const userid = $("similar-userid").value.trim();
  const includeSeen = $("similar-seen").checked;
  const items = (await callGateway("SimilarContent", { userid, limit: 10, includeSeen })).items || [];
  const known = items.some((i) => (i.similarity || 0) > 0);
  return {
    rows: items.map((i) => row([pageCell(i.url, i.title), el("td", (i.similarity || 0).toFixed(3), "num")])),
    text:
      items.length === 0
        ? "no pages stored yet"
        : known
          ? "closest in meaning to what this user read"
          : "no interest known for this user yet: every similarity is 0",
  };
});
