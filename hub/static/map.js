// The county on one map: stations coloured by warning level over the operator's
// GeoJSON layer, a station panel with trend charts, the alarm list with acknowledge.
// No libraries, no tiles: everything is drawn as SVG from /api/ (works offline).
"use strict";
const LEVELS = ["normal", "blue", "yellow", "orange", "red"];
const SVGNS = "http://www.w3.org/2000/svg";
function readToken() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) { sessionStorage.setItem("hubToken", decodeURIComponent(m[1])); history.replaceState(null, "", location.pathname); }
  return sessionStorage.getItem("hubToken") || "";
}
let token = readToken();
window.addEventListener("hashchange", () => { token = readToken(); refresh(); });
let geo = null, state = null, selected = null, proj = null;

async function api(path, opts = {}) {
  // the cookie set by /?token=… rides along by itself; a #token= fragment is sent as a header
  if (token) opts.headers = Object.assign({ Authorization: "Bearer " + token }, opts.headers || {});
  const r = await fetch(path, opts);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.status);
  return body;
}

function el(tag, attrs = {}, parent = null, text = null) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== null) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}

function allCoords() {
  const pts = [];
  const walk = c => (typeof c[0] === "number" ? pts.push(c) : c.forEach(walk));
  (geo.features || []).forEach(f => f.geometry && walk(f.geometry.coordinates));
  state.stations.forEach(s => s.lon !== null && pts.push([s.lon, s.lat]));
  return pts;
}

function makeProjection(svg) {
  const pts = allCoords();
  if (!pts.length) return null;
  let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
  pts.forEach(([x, y]) => { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); });
  const k = Math.cos((y0 + y1) / 2 * Math.PI / 180);     // equirectangular, true at mid latitude
  const w = svg.clientWidth || 800, h = svg.clientHeight || 600, pad = 40;
  const sx = (w - 2 * pad) / Math.max((x1 - x0) * k, 1e-6), sy = (h - 2 * pad) / Math.max(y1 - y0, 1e-6);
  const s = Math.min(sx, sy);
  const ox = (w - (x1 - x0) * k * s) / 2, oy = (h - (y1 - y0) * s) / 2;
  return ([x, y]) => [ox + (x - x0) * k * s, oy + (y1 - y) * s];
}

function drawMap() {
  const svg = document.getElementById("map");
  svg.replaceChildren();
  proj = makeProjection(svg);
  if (!proj) return;
  const path = cs => cs.map((c, i) => (i ? "L" : "M") + proj(c).map(v => v.toFixed(1)).join(",")).join("");
  for (const f of geo.features || []) {
    const g = f.geometry, p = f.properties || {};
    if (!g) continue;
    if (g.type === "LineString") {
      el("path", { d: path(g.coordinates), class: "river" }, svg);
      const mid = proj(g.coordinates[Math.floor(g.coordinates.length / 2)]);
      el("text", { x: mid[0] + 6, y: mid[1] - 6, class: "feature-label" }, svg, p.name ? p.name + " River" : "");
    } else if (g.type === "MultiLineString") {
      g.coordinates.forEach(l => el("path", { d: path(l), class: "river" }, svg));
    } else if (g.type === "Polygon") {
      el("path", { d: path(g.coordinates[0]) + "Z", class: "hazard" }, svg);
    } else if (g.type === "Point") {
      const [x, y] = proj(g.coordinates);
      el(p.kind === "town" ? "rect" : "circle", p.kind === "town"
        ? { x: x - 4, y: y - 4, width: 8, height: 8, class: "town" }
        : { cx: x, cy: y, r: 4, class: "hazardpt" }, svg);
      el("text", { x: x + 7, y: y + 4, class: "feature-label" }, svg, p.name || "");
    }
  }
  for (const s of state.stations) {
    if (s.lon === null) continue;
    const [x, y] = proj([s.lon, s.lat]);
    const g = el("g", { class: "station l" + s.level + (selected === s.id ? " selected" : ""),
                        "data-station": s.id, "data-level": s.level_name }, svg);
    el("circle", { cx: x, cy: y, r: 9, class: "l" + s.level }, g);
    el("text", { x: x + 12, y: y - 8 }, g, s.id);
    el("title", {}, g, s.name + " — " + s.level_name);
    g.addEventListener("click", () => { selected = s.id; drawMap(); showPanel(s); });
  }
}

function fmtTime(t) { return new Date(t * 1000).toISOString().slice(5, 19).replace("T", " "); }

async function showPanel(s) {
  const p = document.getElementById("panel");
  p.replaceChildren();
  const h = document.createElement("h2");
  h.textContent = s.id + " · " + s.name;
  const b = document.createElement("span");
  b.className = "badge l" + s.level; b.textContent = " " + s.level_name + " ";
  h.append(" ", b);
  p.append(h);
  const meta = document.createElement("div");
  meta.className = "hint";
  const st = s.status;
  meta.textContent = [s.type, s.hazard_point, s.zone && "zone " + s.zone,
    st && st.battery_mv && "battery " + (st.battery_mv / 1000).toFixed(2) + " V",
    st && st.log_depth !== null && "node log " + st.log_depth,
    s.gaps.length ? "seq holes " + s.gaps.map(g => g[0] === g[1] ? g[0] : g[0] + "–" + g[1]).join(", ") +
      " (status frames and reboots skip seqs too)" : "no seq holes",
    st && st.seq_gaps !== null && "gateway counts " + st.seq_gaps + " missing"]
    .filter(Boolean).join(" · ");
  p.append(meta);
  for (const c of s.latest) {
    const series = await api(`/api/series?site=${encodeURIComponent(s.site)}&node=${s.node}&chan=${c.chan}&hours=6`);
    p.append(chart(series, c));
  }
}

function chart(series, latest) {
  const box = document.createElement("div");
  const cap = document.createElement("div");
  cap.textContent = `${series.label}: ${latest.value === null ? "fault " + latest.fault : latest.value + " " + series.unit}`;
  box.append(cap);
  const svg = el("svg", { class: "chart", viewBox: "0 0 400 110", preserveAspectRatio: "none", "data-chan": series.label });
  const pts = series.points.filter(p => p[1] !== null);
  if (pts.length) {
    const t0 = pts[0][0], t1 = Math.max(pts[pts.length - 1][0], t0 + 1);
    let v0 = Math.min(...pts.map(p => p[1])), v1 = Math.max(...pts.map(p => p[1]));
    if (v1 - v0 < 1e-9) { v0 -= 1; v1 += 1; }
    const xy = pts.map(p => [30 + (p[0] - t0) / (t1 - t0) * 365, 95 - (p[1] - v0) / (v1 - v0) * 85]);
    el("polyline", { points: xy.map(q => q.map(v => v.toFixed(1)).join(",")).join(" ") }, svg);
    el("text", { x: 2, y: 12 }, svg, String(+v1.toFixed(3)));
    el("text", { x: 2, y: 97 }, svg, String(+v0.toFixed(3)));
    el("text", { x: 30, y: 108 }, svg, fmtTime(t0));
    el("text", { x: 300, y: 108 }, svg, fmtTime(t1));
  }
  box.append(svg);
  return box;
}

function drawAlarms(alarms) {
  const tb = document.querySelector("#alarms tbody");
  tb.replaceChildren();
  for (const a of alarms) {
    const tr = document.createElement("tr");
    tr.className = a.acked_ms ? "acked" : "unacked";
    tr.dataset.key = `${a.site}/${a.node}/${a.seq}/${a.aidx}`;
    const cells = [fmtTime(a.t), a.station, null,
      `${a.event} ${a.chan} ${a.value}${a.unit} (≥ ${a.threshold})`,
      a.sample_to_cap_s === null ? "–" : a.sample_to_cap_s + " s"];
    cells.forEach((c, i) => {
      const td = document.createElement("td");
      if (i === 2) { const b = document.createElement("span"); b.className = "badge l" + a.level; b.textContent = a.level_name; td.append(b); }
      else td.textContent = c;
      tr.append(td);
    });
    const td = document.createElement("td");
    if (a.acked_ms) td.textContent = "✓ " + a.acked_by;
    else {
      const btn = document.createElement("button");
      btn.textContent = "acknowledge";
      btn.className = "ack";
      btn.addEventListener("click", async () => {
        await api("/api/alarms/ack", { method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ site: a.site, node: a.node, seq: a.seq, aidx: a.aidx, who: "duty officer" }) });
        refresh();
      });
      td.append(btn);
    }
    tr.append(td);
    tb.append(tr);
  }
}

async function refresh() {
  try {
    if (!geo) geo = await api("/api/geojson");
    state = await api("/api/state");
    const alarms = await api("/api/alarms");
    const counts = [0, 0, 0, 0, 0];
    state.stations.forEach(s => counts[s.level]++);
    document.getElementById("summary").textContent = `${state.stations.length} stations · ` +
      LEVELS.map((n, i) => counts[i] ? `${counts[i]} ${n}` : "").filter(Boolean).join(", ") +
      ` · ${alarms.filter(a => !a.acked_ms).length} alarms to acknowledge` +
      state.gateways.filter(g => !g.state).map(g => ` · gateway ${g.site}/${g.gateway} OFFLINE`).join("");
    drawMap();
    drawAlarms(alarms);
    const sel = state.stations.find(x => x.id === selected);
    if (sel) showPanel(sel);
    document.body.dataset.ready = "1";
    document.getElementById("error").hidden = true;
  } catch (e) {
    const box = document.getElementById("error");
    box.textContent = "Cannot load data: " + e.message;
    box.hidden = false;
  }
}

refresh();
setInterval(refresh, 5000);
window.addEventListener("resize", drawMap);
