// tickpipe dashboard: plain JavaScript over the Market Data API (/v1), no build step.
// The chart is TradingView Lightweight Charts (vendor/lightweight-charts, Apache-2.0).
"use strict";

const $ = (id) => document.getElementById(id);
const keyInput = $("api-key");
keyInput.value = localStorage.getItem("tickpipe-api-key") || "";
keyInput.addEventListener("change", () => {
  localStorage.setItem("tickpipe-api-key", keyInput.value);
  loadInstruments();
});

/** fetch JSON from the API with the key; throws an Error with the problem's detail. */
async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (keyInput.value) headers["X-API-Key"] = keyInput.value;
  const response = await fetch(path, { ...options, headers });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(`${response.status} ${body.title || ""}: ${body.detail || ""}`);
  return body;
}

const day = (iso) => (iso ? iso.slice(0, 10) : "");
let instruments = [];

async function loadInstruments() {
  try {
    instruments = (await api("/v1/instruments")).data;
    $("instruments-error").textContent = "";
  } catch (e) {
    $("instruments-error").textContent = String(e.message);
    return;
  }
  const tbody = $("instruments").querySelector("tbody");
  tbody.replaceChildren();
  for (const inst of instruments) {
    for (const c of inst.coverage.length ? inst.coverage : [{}]) {
      const tr = document.createElement("tr");
      const cells = [inst.instrument, inst.price_scale, inst.asset_class || "", c.kind || "",
        c.units_stored ?? "", c.units_empty ?? "", c.units_suspect_empty ?? "", c.units_failed ?? "",
        (c.rows ?? "").toLocaleString(), day(c.first_row), day(c.last_row)];
      for (const v of cells) {
        const td = document.createElement("td");
        td.textContent = v;
        tr.appendChild(td);
      }
      tbody.appendChild(tr);
    }
  }
  for (const id of ["cov-instrument", "chart-instrument"]) {
    const select = $(id);
    const keep = select.value;
    select.replaceChildren(...instruments.map((i) => new Option(i.instrument, i.instrument)));
    if (keep && instruments.some((i) => i.instrument === keep)) select.value = keep;
  }
  onCoverageInstrument();
  onChartInstrument();
}

function onCoverageInstrument() {
  const inst = instruments.find((i) => i.instrument === $("cov-instrument").value);
  const kinds = inst ? inst.coverage.map((c) => c.kind) : [];
  $("cov-kind").replaceChildren(...kinds.map((k) => new Option(k, k)));
}

function onChartInstrument() {
  const inst = instruments.find((i) => i.instrument === $("chart-instrument").value);
  const ticks = inst && inst.coverage.find((c) => c.kind === "ticks" && c.first_row);
  if (ticks && !$("chart-start").dataset.touched) {
    const first = new Date(ticks.first_row);
    first.setUTCHours(0, 0, 0, 0);
    const end = new Date(Math.min(first.getTime() + 86400000, new Date(ticks.last_row).getTime() + 60000));
    $("chart-start").value = first.toISOString().slice(0, 16) + "Z";
    $("chart-end").value = end.toISOString().slice(0, 16) + "Z";
  }
}
$("cov-instrument").addEventListener("change", onCoverageInstrument);
$("chart-instrument").addEventListener("change", onChartInstrument);
for (const id of ["chart-start", "chart-end"]) $(id).addEventListener("input", (e) => { e.target.dataset.touched = "1"; });

async function loadCoverage() {
  const instrument = $("cov-instrument").value;
  const kind = $("cov-kind").value || "ticks";
  if (!instrument) return;
  const map = $("heatmap");
  map.replaceChildren();
  let rows;
  try {
    rows = (await api(`/v1/coverage?instrument=${encodeURIComponent(instrument)}&kind=${encodeURIComponent(kind)}`)).data;
  } catch (e) {
    $("cov-detail").textContent = String(e.message);
    return;
  }
  $("coverage-title").textContent = `— ${instrument} ${kind}`;
  for (const r of rows) {
    const cell = document.createElement("span");
    const quiet = !r.expected && !r.stored && !r.empty && !r.failed && !r.suspect_empty;
    const state = quiet ? "closed" : r.missing || r.failed ? "gaps" : r.suspect_empty || r.partial ? "suspect" : "complete";
    cell.className = `cell ${state}`;
    cell.dataset.day = r.day;
    cell.title = `${r.day} (${r.period}): expected ${r.expected}, stored ${r.stored}, empty ${r.empty}, ` +
      `suspect ${r.suspect_empty}, failed ${r.failed}, missing ${r.missing}, rows ${r.rows}`;
    cell.addEventListener("click", () => {
      const reasons = (r.failures || []).map((f) => `${f.unit} ${f.stage}: ${f.reason}`).join("; ");
      $("cov-detail").textContent = cell.title + (reasons ? ` — ${reasons}` : "");
    });
    map.appendChild(cell);
  }
  $("cov-detail").textContent = `${rows.length} periods; click one for details`;
}
$("cov-load").addEventListener("click", loadCoverage);

const chart = LightweightCharts.createChart($("chart"), {
  height: 420,
  timeScale: { timeVisible: true, secondsVisible: false },
  layout: { background: { color: "#ffffff" }, textColor: "#1d2330" },
});
const series = chart.addCandlestickSeries();

async function drawChart(event) {
  if (event) event.preventDefault();
  const p = new URLSearchParams({
    instrument: $("chart-instrument").value,
    start: $("chart-start").value,
    end: $("chart-end").value,
    timeframe: $("chart-timeframe").value,
    price_format: "float",
    limit: "5000",
  });
  if ($("chart-source").checked) p.set("source_candles", "true");
  else p.set("side", $("chart-side").value);
  const bars = [];
  let cursor = null;
  try {
    do {
      if (cursor) p.set("cursor", cursor);
      const page = await api(`/v1/candles?${p}`);
      for (const c of page.data) {
        bars.push({ time: Date.parse(c.ts) / 1000, open: c.open, high: c.high, low: c.low, close: c.close });
      }
      cursor = page.next;
      $("chart-info").textContent = `${page.source}; prices at scale ${page.price_scale}; ts = bar open time (UTC)`;
    } while (cursor);
  } catch (e) {
    $("chart-info").textContent = String(e.message);
  }
  series.setData(bars);
  chart.timeScale().fitContent();
  $("chart").dataset.bars = String(bars.length);
  $("chart-info").textContent = `${bars.length} bars — ` + $("chart-info").textContent;
}
$("chart-form").addEventListener("submit", drawChart);

async function submitRequest(event) {
  event.preventDefault();
  const status = $("request-status");
  const body = {
    instrument: $("req-instrument").value,
    source: $("req-source").value,
    kind: $("req-kind").value,
    start: $("req-start").value,
    end: $("req-end").value,
    skip_existing: $("req-skip").checked,
  };
  if ($("req-timeframe").value) body.timeframe = $("req-timeframe").value;
  let accepted;
  try {
    accepted = await api("/v1/requests", {
      method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" },
    });
  } catch (e) {
    status.dataset.status = "error";
    status.textContent = String(e.message);
    return;
  }
  const id = accepted.request_id;
  status.dataset.requestId = id;
  for (;;) {
    let s;
    try {
      s = await api(`/v1/requests/${id}`);
    } catch (e) {
      status.textContent = String(e.message);
      await new Promise((r) => setTimeout(r, 2000));
      continue;
    }
    status.dataset.status = s.status;
    const done = (s.stored || 0) + (s.empty || 0) + (s.suspect_empty || 0) + (s.failed || 0);
    $("request-progress").max = s.units || 1;
    $("request-progress").value = s.status === "completed" ? (s.units || 1) : done;
    status.textContent = s.status === "rejected"
      ? `request ${id} rejected: ${s.reason}`
      : `request ${id} ${s.status}: ${s.stored} stored, ${s.empty} empty, ${s.suspect_empty || 0} suspect-empty, ` +
        `${s.failed} failed of ${s.units ?? "?"} units, ${s.rows} rows`;
    if (s.status === "completed" || s.status === "rejected") {
      loadInstruments();
      return;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}
$("request-form").addEventListener("submit", submitRequest);

loadInstruments();
