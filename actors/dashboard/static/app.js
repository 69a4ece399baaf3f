// The dashboard page: the state pushed by the dashboard program (/api/events), drawn.
// Everything from the server is put in the page as text (textContent), never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let chart = null;
let lastHeard = 0;
window.polyarbBadgeLog = [];

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text === null || text === undefined ? "–" : String(text);
  if (cls) td.className = cls;
  if (cls === "why") td.title = td.textContent;  // the whole text on hover
  return td;
}

function fill(tableId, items, build) {
  const body = $(tableId).tBodies[0];
  body.replaceChildren();
  for (const item of items) build(body.insertRow(), item);
}

const time = (ms) => (ms ? new Date(ms).toISOString().slice(11, 19) : "–");
const sign = (micro) => (micro > 0 ? "pos" : micro < 0 ? "neg" : "");
const figures = (obj) => Object.entries(obj || {}).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ");

function drawChart(pnl) {
  $("pnl-empty").hidden = pnl.t_ms.length > 0;
  if (typeof uPlot === "undefined" || pnl.t_ms.length === 0) return;
  const data = [pnl.t_ms.map((t) => t / 1000), pnl.micro.map((m) => m / 1e6)];
  if (chart === null) {
    const width = Math.max(300, $("pnl-chart").clientWidth || 560);
    chart = new uPlot({
      width, height: 220,
      series: [{}, { label: "USDC", stroke: "#5fd38d", width: 2 }],
      axes: [{ stroke: "#9fb3c8", grid: { stroke: "#26313c" } }, { stroke: "#9fb3c8", grid: { stroke: "#26313c" } }],
      legend: { show: false },
    }, data, $("pnl-chart"));
  } else {
    chart.setData(data);
  }
}

function render(s) {
  lastHeard = Date.now();
  $("world").textContent = `${s.world.profile} · chain ${s.world.chain_id} · ${s.world.venue}`;
  const badge = $("breaker-badge");
  if (badge.textContent !== s.breaker.state) {  // when the page showed each state: [shown ms, state, since ms]
    window.polyarbBadgeLog.push([Date.now(), s.breaker.state, s.breaker.since_ms]);
  }
  badge.textContent = s.breaker.state;
  badge.className = `badge ${s.breaker.state}`;
  $("breaker-reason").textContent = s.breaker.reason;

  fill("actors", s.actors, (row, a) => {
    row.id = `actor-${a.name}`;
    cell(row, a.name);
    cell(row, a.up ? "up" : "SILENT", a.up ? "up" : "silent");
    cell(row, a.heard_s_ago === null ? "never" : `${a.heard_s_ago} s ago`);
    cell(row, a.uptime_s === null ? null : `${a.uptime_s} s`);
    cell(row, a.breaker, a.breaker ? a.breaker : "");
    cell(row, figures(a.summary), "figures");
  });

  $("pnl-total").textContent = `${s.pnl.total_usdc} USDC`;
  $("pnl-total").className = sign(s.pnl.micro.length ? s.pnl.micro[s.pnl.micro.length - 1] : 0);
  $("pnl-gas").textContent = `(gas ${s.pnl.gas_usdc})`;
  drawChart(s.pnl);

  $("by-status").textContent = figures(s.by_status);
  fill("executions", s.executions, (row, e) => {
    cell(row, time(e.t_ms));
    cell(row, e.strategy);
    cell(row, e.legs);
    cell(row, e.status);
    cell(row, e.pnl_usdc, sign(e.pnl_micro));
    cell(row, e.gas_usdc);
    cell(row, e.latency_ms === null ? null : `${e.latency_ms} ms`);
    cell(row, e.key.slice(0, 12));
    cell(row, e.error, "why");
  });

  fill("timeline", s.timeline, (row, t) => {
    cell(row, time(t.t_ms));
    cell(row, t.state, t.state);
    cell(row, t.reason, "why");
  });

  $("locked").textContent = s.locked_capital_usdc;
  $("baskets").textContent = s.baskets_held;
  $("doubts").textContent = s.sales_in_doubt;
  $("reconciler").textContent = figures(s.reconciler);
  fill("positions", s.positions, (row, p) => {
    cell(row, p.token_id.slice(0, 16) + "…");
    cell(row, (p.size / 1e6).toFixed(2));
    cell(row, p.attempts);
  });

  const f = s.feed;
  $("feed-figures").textContent = `books ${f.books ?? "–"} · messages ${f.messages ?? "–"} · duplicates ${f.duplicates ?? "–"} · gaps ${f.gaps ?? "–"} · heartbeat ${f.heartbeat_ok === null || f.heartbeat_ok === undefined ? "–" : f.heartbeat_ok ? "ok" : "NO"} · disconnects ${f.reconnects ?? "–"}`;
  fill("connections", f.connections, (row, c) => {
    cell(row, c.id);
    cell(row, c.assets);
    cell(row, c.connected ? "up" : "DOWN", c.connected ? "up" : "silent");
    cell(row, c.last_data_age_s === null ? null : `${c.last_data_age_s} s ago`);
    cell(row, c.connects);
    cell(row, c.last_reason, "why");
  });
  $("nonce-figures").textContent = figures(s.nonce);
}

function connect() {
  const events = new EventSource("/api/events");
  events.onmessage = (m) => render(JSON.parse(m.data));
  events.onopen = () => { $("link").textContent = "live"; };
}

// The page says so when the dashboard program stops answering (EventSource reconnects by itself).
setInterval(() => {
  if (lastHeard && Date.now() - lastHeard > 3000) $("link").textContent = "dashboard program not answering…";
  else if (lastHeard) $("link").textContent = "live";
}, 1000);

connect();
