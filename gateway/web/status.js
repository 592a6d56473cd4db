// The status page: polls /api/status every few seconds and redraws. Plain DOM and SVG,
// no libraries, nothing from the internet (a site may have no uplink at all).
"use strict";

const REFRESH_MS = 3000;
const LEVELS = ["normal", "blue IV", "yellow III", "orange II", "red I"];
let scale = "5min";
let last = null;

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

function levelBadge(lv) {
  const n = Number.isInteger(lv) && lv >= 0 && lv < LEVELS.length ? lv : 0;
  return el("span", { class: "lv lv" + n, "data-level": n }, LEVELS[n]);
}

function ago(now, t) {
  if (t === null || t === undefined) return "never";
  const s = Math.max(0, now - t);
  if (s < 120) return Math.round(s) + " s ago";
  if (s < 7200) return Math.round(s / 60) + " min ago";
  if (s < 172800) return (s / 3600).toFixed(1) + " h ago";
  return (s / 86400).toFixed(1) + " days ago";
}

function dash(v, fmt) { return v === null || v === undefined ? "-" : (fmt ? fmt(v) : v); }

function utc(t) { return t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) : "-"; }

function fill(id, rows) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren(...rows);
}

function drawNodes(st) {
  const snap = st.snapshot || {};
  const nodes = snap.nodes || {};
  const ids = new Set(st.site.nodes.map(n => String(n.id)));
  for (const k of Object.keys(nodes)) ids.add(k);
  const names = Object.fromEntries(st.site.nodes.map(n => [String(n.id), n.name]));
  const rows = [...ids].sort((a, b) => a - b).map(id => {
    const d = nodes[id] || {};
    const silent = d.last_seen === undefined || d.last_seen === null || st.now - d.last_seen > 3 * 3600;
    return el("tr", { "data-node": id },
      el("td", {}, id), el("td", {}, d.name || names[id] || ""),
      el("td", {}, levelBadge(st.node_levels[id] || 0)),
      el("td", silent ? { class: "bad" } : {}, ago(st.now, d.last_seen)),
      el("td", {}, dash(d.battery_mv, v => (v / 1000).toFixed(2) + " V")),
      el("td", {}, dash(d.rssi_dbm, v => v + " dBm")),
      el("td", {}, dash(d.log_depth)), el("td", {}, dash(d.seq_gaps)),
      el("td", {}, dash(d.frames)), el("td", {}, dash(d.downlink_queue)));
  });
  fill("nodes", rows);
}

function drawDevices(st) {
  const mb = (st.snapshot || {}).modbus || {};
  const rows = st.site.devices.map(dev => {
    const d = mb[dev.name] || {};
    const state = d.online === true ? el("span", { class: "ok" }, "online")
      : d.online === false ? el("span", { class: "bad" }, "OFFLINE") : "not polled yet";
    return el("tr", { "data-device": dev.name },
      el("td", {}, dev.name), el("td", {}, dev.node), el("td", {}, levelBadge(d.level || 0)),
      el("td", {}, state), el("td", {}, ago(st.now, d.last_ok)),
      el("td", {}, dash(d.polls_ok) + " / " + dash(d.polls)), el("td", {}, dash(d.timeouts)),
      el("td", {}, d.last_error || ""));
  });
  fill("devices", rows);
}

function drawAlarms(st) {
  const rows = st.alarms.map(a => el("tr", { "data-alarm-level": a.level },
    el("td", {}, utc(a.t)), el("td", {}, a.node), el("td", {}, a.chan),
    el("td", {}, levelBadge(a.level)), el("td", {}, levelBadge(a.prev_level)),
    el("td", {}, a.value), el("td", {}, a.threshold), el("td", {}, a.rule_id + " " + a.rule)));
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 8 }, "no alarms since the gateway started")));
  fill("alarms", rows);
}

function drawUplink(st) {
  const snap = st.snapshot || {};
  const b = snap.broker || {};
  const up = document.getElementById("uplink");
  up.replaceChildren(
    el("span", { class: b.connected ? "ok" : "bad", id: "uplink-state" },
      b.connected ? "CONNECTED" : "DISCONNECTED"),
    " broker " + dash(b.broker) + " (" + dash(b.protocol) + "), last PUBACK " +
    ago(st.now, b.last_puback) + ", batches in flight " + dash(b.inflight_batches));
  const lanes = snap.lanes || {};
  fill("lanes", Object.entries(lanes).map(([name, d]) => el("tr", { "data-lane": name },
    el("td", {}, name), el("td", {}, dash(d.depth)),
    el("td", {}, d.oldest_age_s === null || d.oldest_age_s === undefined ? "-" : ago(0, d.oldest_age_s)))));
}

const SPANS = { "5min": [300, 86400], "hour": [3600, 7 * 86400] };   // bucket, window (s)

function chart(series, width, height, now) {
  const pts = series.points;
  const box = el("div", { class: "chart", "data-chan": series.chan, "data-node": series.node });
  const label = series.sum ? series.kind + " (" + series.unit + " per bucket)" : series.kind + " (" + series.unit + ")";
  box.append(el("div", { class: "t" }, "node " + series.node + " " + series.chan + ": " + label));
  const s = svg("svg", { width, height, viewBox: "0 0 " + width + " " + height });
  const pad = 30;
  const [bucket, span] = SPANS[scale];
  const t1 = Math.max(now, pts[pts.length - 1][0] + bucket), t0 = t1 - span;   // the whole window
  let lo = Math.min(...pts.map(p => p[1])), hi = Math.max(...pts.map(p => p[1]));
  if (series.sum) lo = 0;
  if (hi === lo) hi = lo + 1;
  const x = t => pad + (t - t0) / (t1 - t0) * (width - pad - 4);
  const y = v => height - 14 - (v - lo) / (hi - lo) * (height - 24);
  s.append(svg("line", { class: "axis", x1: pad, y1: height - 14, x2: width, y2: height - 14 }));
  const tl = svg("text", { x: 0, y: 10 }); tl.textContent = hi.toFixed(2); s.append(tl);
  const bl = svg("text", { x: 0, y: height - 16 }); bl.textContent = lo.toFixed(2); s.append(bl);
  const when = svg("text", { x: pad, y: height - 2 }); when.textContent = utc(t0).slice(5, 16) + " .. " + utc(t1).slice(5, 16) + " UTC";
  s.append(when);
  if (series.sum) {
    const w = Math.max(1, x(t0 + bucket) - x(t0) - 0.5);
    for (const [t, v] of pts) s.append(svg("rect", { class: "bar", x: x(t), y: y(v), width: w, height: Math.max(0, height - 14 - y(v)) }));
  } else {
    s.append(svg("polyline", { class: "line", points: pts.map(p => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" ") }));
    const [tn, vn] = pts[pts.length - 1];             // the newest value, visible even alone
    s.append(svg("circle", { class: "dot", cx: x(tn).toFixed(1), cy: y(vn).toFixed(1), r: 2.5 }));
  }
  box.append(s);
  return box;
}

function drawTrends(st) {
  const series = (st.trends[scale] || []).filter(s => s.points.length);
  const box = document.getElementById("trends");
  if (!series.length) { box.replaceChildren("no rain, displacement or level readings yet"); return; }
  box.replaceChildren(el("div", { class: "charts" }, ...series.map(s => chart(s, 320, 120, st.now))));
}

function draw(st) {
  last = st;
  const snap = st.snapshot;
  document.getElementById("title").textContent = "site " + st.site.id + " / gateway " + st.site.gateway;
  const sum = document.getElementById("summary");
  if (!snap) {
    sum.replaceChildren(el("span", { class: "stale" }, "no status snapshot: is the daemon running?"));
  } else {
    const age = st.now - snap.t;
    const lanes = snap.lanes || {};
    sum.replaceChildren("snapshot " + ago(st.now, snap.t) + ", backlog " +
      dash((lanes.backlog || {}).depth) + " readings, " + dash((lanes.alarm || {}).depth) + " alarm(s) waiting",
      age > 30 ? el("span", { class: "stale" }, " STALE") : "");
  }
  drawNodes(st); drawDevices(st); drawAlarms(st); drawUplink(st); drawTrends(st);
  document.body.setAttribute("data-updated", String(st.now));
}

async function refresh() {
  try {
    const r = await fetch("/api/status", { credentials: "same-origin", cache: "no-store" });
    if (r.status === 401) {
      document.getElementById("summary").textContent = "not authorised: open this page as /?token=<the gateway's status token>";
      return;
    }
    draw(await r.json());
  } catch (e) {
    document.getElementById("summary").replaceChildren(el("span", { class: "stale" }, "gateway unreachable: " + e));
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

for (const s of ["5min", "hour"]) {
  document.getElementById("scale-" + s).addEventListener("click", () => {
    scale = s;
    document.querySelectorAll(".scale button").forEach(b => b.classList.toggle("on", b.id === "scale-" + s));
    if (last) drawTrends(last);
  });
}
refresh();
