// The rayctl dashboard: one page, a tab per view, each refreshed every 2 s from the head web
// service's JSON routes (same origin, the login cookie). No dependencies: the charts are SVG
// drawn here. Every value from the cluster is inserted as text, never as HTML.
"use strict";

const TABS = [
  ["overview", "Overview"], ["autoscaler", "Autoscaler"], ["jobs", "Jobs"],
  ["actors", "Actors"], ["placement-groups", "Placement groups"], ["tasks", "Tasks"],
  ["logs", "Logs"],
];
const REFRESH_MS = 2000;
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777"];
const state = { tab: "overview", window: "hour", job: null, jobSocket: null, jobLog: "",
                logNode: null, logFile: null, timer: null, lastOk: 0 };

// --- small helpers ------------------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "onclick" || key === "onchange") node[key] = value;
    else if (value !== null && value !== undefined) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function get(path) {
  const reply = await fetch(path, { credentials: "same-origin" });
  if (reply.status === 401) {
    location.href = "/login?next=" + encodeURIComponent("/" + location.hash);
    throw new Error("not logged in");
  }
  if (!reply.ok) throw new Error(path + ": " + reply.status + " " + (await reply.text()));
  const type = reply.headers.get("content-type") || "";
  return type.includes("json") ? reply.json() : reply.text();
}

function ago(unixS) {
  if (!unixS) return "—";
  const s = Math.max(0, Date.now() / 1000 - unixS);
  if (s < 60) return Math.round(s) + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return (s / 3600).toFixed(1) + " h ago";
  return (s / 86400).toFixed(1) + " d ago";
}

function duration(s) {
  if (s === null || s === undefined) return "—";
  if (s < 60) return Math.round(s) + " s";
  if (s < 3600) return Math.round(s / 60) + " min";
  return (s / 3600).toFixed(1) + " h";
}

function bytes(n) {
  if (!n) return "0 B";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + units[i];
}

function shape(s) {
  return "{" + Object.entries(s || {}).map(([k, v]) => k + ": " + v).join(", ") + "}";
}

function stateCell(text) { return el("td", { class: "state-" + text }, text); }

function table(columns, rows, onRow) {
  const head = el("tr", {}, columns.map(([, label]) => el("th", {}, label)));
  const body = rows.map((row) => {
    const cells = columns.map(([key]) => {
      const value = typeof key === "function" ? key(row) : row[key];
      return value instanceof Node && value.tagName === "TD" ? value : el("td", {}, value ?? "—");
    });
    return el("tr", onRow ? { class: "click", onclick: () => onRow(row) } : {}, cells);
  });
  return rows.length ? el("table", {}, head, body) : el("p", { class: "muted" }, "None.");
}

function usage(pair, format) {
  if (!pair || !pair[1]) return "—";
  const [used, total] = pair;
  const pct = Math.min(100, (100 * used) / total);
  const fmt = format || ((x) => +x.toFixed(2));
  return el("span", {}, el("span", { class: "bar" }, el("span", { style: `width:${pct}%` })),
            `${fmt(used)} / ${fmt(total)}`);
}

// --- charts: SVG lines over time ---------------------------------------------------------------
function chart(title, points, lines, format) {
  const W = 600, H = 160, L = 48, B = 18;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const add = (tag, attrs, text) => {
    const n = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    svg.append(n);
  };
  const series = lines.map((line) => points.map((p) => [p.t, line.value(p.v)]));
  const ys = series.flat().map(([, y]) => y).filter((y) => Number.isFinite(y));
  const max = Math.max(1, ...ys);
  const t0 = points.length ? points[0].t : 0, t1 = points.length ? points[points.length - 1].t : 1;
  const x = (t) => L + ((t - t0) / Math.max(1, t1 - t0)) * (W - L - 4);
  const y = (v) => H - B - (v / max) * (H - B - 6);
  add("line", { x1: L, y1: H - B, x2: W, y2: H - B, stroke: "#cbd5e1" });
  add("text", { x: 2, y: 12, "font-size": 11, fill: "#6b7280" }, format(max));
  add("text", { x: 2, y: H - B, "font-size": 11, fill: "#6b7280" }, format(0));
  if (points.length) {
    add("text", { x: L, y: H - 3, "font-size": 11, fill: "#6b7280" }, new Date(t0 * 1000).toLocaleTimeString());
    add("text", { x: W - 70, y: H - 3, "font-size": 11, fill: "#6b7280" }, new Date(t1 * 1000).toLocaleTimeString());
  }
  series.forEach((pts, i) => {
    const color = COLORS[i % COLORS.length];
    const finite = pts.filter(([, v]) => Number.isFinite(v));
    const d = finite.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`);
    if (d.length > 1) add("polyline", { points: d.join(" "), fill: "none", stroke: color, "stroke-width": 2 });
    if (finite.length <= 60) {  // few samples yet: each one visible
      for (const [t, v] of finite) add("circle", { cx: x(t).toFixed(1), cy: y(v).toFixed(1), r: 2.5, fill: color });
    }
  });
  const legend = el("div", { class: "legend" }, lines.map((line, i) =>
    el("span", { style: `color:${COLORS[i % COLORS.length]}` }, "● " + line.label)));
  return el("div", { class: "chart", "data-chart": title }, el("h3", {}, title), svg, legend,
            points.length ? null : el("p", { class: "muted" }, "No samples yet (one every 10 s)."));
}

function percent(used, total) { return (v) => (v[total] ? (100 * (v[used] || 0)) / v[total] : NaN); }

function charts(points) {
  const types = [...new Set(points.flatMap((p) => Object.keys(p.v)))]
    .filter((k) => k.startsWith("nodes:")).sort();
  const count = (v) => String(Math.round(v));
  return el("div", { class: "charts" },
    chart("Nodes by type", points, types.map((k) => ({ label: k.slice(6), value: (v) => v[k] || 0 })), count),
    chart("Demand", points, [
      { label: "pending", value: (v) => v["demand:pending"] || 0 },
      { label: "infeasible", value: (v) => v["demand:infeasible"] || 0 },
      { label: "instances launching", value: (v) => v["instances:pending"] || 0 }], count),
    chart("Utilisation (%)", points, [
      { label: "CPU", value: percent("CPU:used", "CPU:total") },
      { label: "GPU", value: percent("GPU:used", "GPU:total") },
      { label: "memory", value: percent("memory:used", "memory:total") }], (v) => Math.round(v) + "%"),
    chart("Object store", points, [
      { label: "used", value: (v) => v["store:used"] || 0 },
      { label: "capacity", value: (v) => v["store:capacity"] || 0 }], bytes));
}

// --- the views ----------------------------------------------------------------------------------
async function overview() {
  const [c, points] = await Promise.all([get("/api/cluster"), get("/api/series?window=" + state.window)]);
  const alive = c.nodes.filter((n) => n.state !== "DEAD");
  const sum = (name) => alive.reduce((a, n) => [a[0] + (n.resources[name] || [0, 0])[0],
                                               a[1] + (n.resources[name] || [0, 0])[1]], [0, 0]);
  const cards = el("div", { class: "cards" },
    card(alive.length, "nodes alive"), card(c.address, "GCS address"), card(ago(c.started_at).replace(" ago", ""), "cluster age"),
    card(usage(sum("CPU")), "CPU in use"), card(usage(sum("GPU")), "GPU in use"),
    card(usage(sum("memory"), bytes), "memory reserved"),
    card(usage(alive.reduce((a, n) => [a[0] + (n.store ? n.store[0] : 0), a[1] + (n.store ? n.store[1] : 0)], [0, 0]), bytes), "object store"));
  const counts = Object.entries(c.counts).map(([type, states]) => ({ type, ...states }));
  const stateNames = [...new Set(counts.flatMap((r) => Object.keys(r).filter((k) => k !== "type")))];
  const windowPick = el("select", { onchange: (e) => { state.window = e.target.value; refresh(); } },
    el("option", { value: "hour" }, "last hour (10 s)"), el("option", { value: "day" }, "last day (5 min)"));
  windowPick.value = state.window;
  return [cards,
    el("h2", {}, "Nodes by type and state"),
    table([["type", "type"], ...stateNames.map((s) => [s, s])], counts),
    el("h2", {}, "Nodes"),
    table([["node_id", "node"], ["node_type", "type"], [(n) => stateCell(n.state), "state"],
           ["address", "address"], [(n) => usage(n.resources.CPU), "CPU"], [(n) => usage(n.resources.GPU), "GPU"],
           [(n) => usage(n.resources.memory, bytes), "memory"], [(n) => usage(n.store, bytes), "object store"],
           [(n) => (n.idle_s === null ? "busy" : "idle " + duration(n.idle_s)), "activity"]], c.nodes),
    el("div", { class: "controls" }, el("h2", {}, "Over time"), windowPick),
    charts(points)];
}

function card(value, label) {
  return el("div", { class: "card" }, el("div", { class: "n" }, value), el("div", { class: "l" }, label));
}

async function autoscaler() {
  const s = await get("/api/autoscaler");
  if (!s.at) return [el("p", { class: "muted" }, "No autoscaler status: this head runs no autoscaler (start it with --autoscaling-config, or `rayctl up`).")];
  const launching = s.pending.length;
  return [
    el("p", { class: "muted" }, "Status written " + ago(s.at) + " by the monitor."),
    el("h2", {}, "Pending demand"),
    table([[(d) => shape(d.shape), "shape"], ["count", "count"], ["kind", "from"],
           [() => (launching ? `waiting for ${launching} instance(s) being launched` : "waiting for room on a node"), "why it waits"]], s.demand),
    el("h2", {}, "Infeasible demand"),
    table([[(d) => shape(d.shape), "shape"], ["count", "count"], ["reason", "why it waits"]], s.infeasible),
    el("h2", {}, "Instances being launched"),
    table([["instance_id", "instance"], ["node_type", "type"], ["status", "status"], [(p) => duration(p.for_s), "for"]], s.pending),
    el("h2", {}, "Recent decisions"),
    table([[(d) => ago(d.at), "when"], ["action", "action"], ["cause", "cause"], ["target", "target"],
           ["node_type", "type"], ["reason", "reason"]], [...s.decisions].sort((a, b) => b.at - a.at)),
    el("h2", {}, "Launch failures"),
    table([[(f) => ago(f.at), "when"], ["instance_id", "instance"], ["node_type", "type"], ["status", "status"], ["reason", "reason"]],
          [...s.failures].sort((a, b) => b.at - a.at)),
    el("h2", {}, "Offerings marked unavailable"),
    table([["node_type", "type"], [(u) => u.offering || "the whole type", "offering"],
           [(u) => "for " + duration(u.until - Date.now() / 1000), "expires"], ["reason", "reason"]], s.unavailable),
    el("h2", {}, "Instance lifecycles"),
    table([["instance_id", "instance"], ["node_type", "type"], ["cloud_instance_id", "cloud id"],
           [(i) => el("td", {}, el("div", { class: "timeline" }, i.history.map(([st, at, why]) =>
             el("span", { title: why || "" }, `${st} ${new Date(at * 1000).toLocaleTimeString()}`)))), "timeline"]], s.instances),
    s.notes.length ? el("h2", {}, "Notes") : null,
    s.notes.map((n) => el("p", {}, n))];
}

async function jobs() {
  const list = await get("/api/jobs/");
  const rows = [...list].sort((a, b) => (b.start_time || 0) - (a.start_time || 0));
  const out = [table([["submission_id", "submission"], ["job_id", "job"], ["type", "type"],
                      [(j) => stateCell(j.status), "status"], ["entrypoint", "entrypoint"],
                      [(j) => (j.start_time ? ago(j.start_time / 1000) : "—"), "started"],
                      [(j) => (j.end_time && j.start_time ? duration((j.end_time - j.start_time) / 1000) : "—"), "ran"],
                      ["message", "message"]], rows, (j) => j.submission_id && openJob(j.submission_id))];
  if (state.job) {
    out.push(el("h2", {}, "Logs of " + state.job + " (live)"), el("pre", { class: "log", id: "job-log" }, state.jobLog));
  }
  return out;
}

function openJob(id) {
  if (state.jobSocket) state.jobSocket.close();
  state.job = id;
  state.jobLog = "";
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${location.host}/api/jobs/${encodeURIComponent(id)}/logs/tail`);
  socket.onmessage = (m) => {
    state.jobLog += m.data;
    const pre = document.getElementById("job-log");
    if (pre) { pre.textContent = state.jobLog; pre.scrollTop = pre.scrollHeight; }
  };
  state.jobSocket = socket;
  refresh();
}

async function actors() {
  const rows = await get("/api/state/actors");
  return [table([["actor_id", "actor"], ["class_name", "class"], [(a) => stateCell(a.state), "state"],
                 ["name", "name"], ["node_id", "node"], ["pid", "pid"], ["num_restarts", "restarts"],
                 ["death_cause", "death cause"]], rows)];
}

async function groups() {
  const rows = await get("/api/state/placement-groups");
  return [table([["placement_group_id", "group"], ["name", "name"], [(g) => stateCell(g.state), "state"],
                 ["strategy", "strategy"], [(g) => g.bundles.map(shape).join(" "), "bundles"],
                 [(g) => g.bundle_node_ids.join(" "), "nodes"]], rows)];
}

async function tasks() {
  const [summary, recent] = await Promise.all([get("/api/summary/tasks"), get("/api/state/tasks?limit=50")]);
  const groupsRows = Object.values(summary.summary);
  const states = [...new Set(groupsRows.flatMap((g) => Object.keys(g.state_counts)))];
  return [
    el("p", {}, `${summary.total} tasks held` + (summary.dropped ? `, ${summary.dropped} dropped` : "")),
    table([["func_or_class_name", "function"], ["type", "type"], ...states.map((s) => [(g) => g.state_counts[s] || 0, s]),
           ["retries", "retries"]], groupsRows),
    el("h2", {}, "Latest tasks"),
    table([["task_id", "task"], ["name", "name"], [(t) => stateCell(t.state), "state"], ["node_id", "node"],
           ["attempt_number", "attempt"], ["error_type", "error"]], recent)];
}

async function logs() {
  const nodes = await get("/api/logs");
  const out = [table([["node_id", "node"], ["node_type", "type"],
    [(n) => el("td", {}, n.files.map((f) => el("a", { href: "#logs", onclick: (e) => { e.preventDefault(); state.logNode = n.node_id; state.logFile = f.name; refresh(); } },
      `${f.name} (${bytes(f.size)})`, " "))), "files"]], nodes)];
  if (state.logNode && state.logFile) {
    const text = await get(`/api/logs/${encodeURIComponent(state.logNode)}/${encodeURIComponent(state.logFile)}?tail=65536`);
    out.push(el("h2", {}, `${state.logFile} on ${state.logNode} (last 64 KiB, live)`), el("pre", { class: "log", id: "node-log" }, text));
  }
  return out;
}

const VIEWS = { overview, autoscaler, jobs, actors, "placement-groups": groups, tasks, logs };

// --- the frame ------------------------------------------------------------------------------------
function tabs() {
  const nav = document.getElementById("tabs");
  nav.replaceChildren(...TABS.map(([id, label]) =>
    el("a", { href: "#" + id, class: id === state.tab ? "active" : null, "data-tab": id }, label)));
}

async function refresh() {
  clearTimeout(state.timer);
  const tab = state.tab;
  try {
    const content = await VIEWS[tab]();
    if (tab === state.tab) {
      const scroll = document.querySelector("pre.log") ? document.querySelector("pre.log").scrollTop : null;
      document.getElementById("page").replaceChildren(...[content].flat(2).filter((x) => x));
      const pre = document.querySelector("pre.log");
      if (pre && scroll !== null) pre.scrollTop = pre.scrollHeight;
      document.getElementById("page").dataset.updated = String(Date.now());
    }
    state.lastOk = Date.now();
    document.getElementById("live").className = "";
  } catch (err) {
    document.getElementById("live").className = "stale";
    document.getElementById("live").title = String(err);
  }
  state.timer = setTimeout(refresh, REFRESH_MS);
}

function route() {
  const wanted = location.hash.slice(1);
  state.tab = VIEWS[wanted] ? wanted : "overview";
  tabs();
  refresh();
}

window.addEventListener("hashchange", route);
route();
