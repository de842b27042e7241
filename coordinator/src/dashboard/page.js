// rollguard's dashboard: the fleet at "/", a deployment at "/deployments/NAME".
// Data from /api/fleet and /api/deployments/NAME, kept live by the
// Server-Sent Events of /api/events (no polling). Charts are SVG drawn here.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const match = location.pathname.match(/^\/deployments\/([^/]+)$/);
const deployment = match ? decodeURIComponent(match[1]) : null;
const main = document.getElementById("main");
const live = document.getElementById("live");
const RANGES = [[900, "15 min"], [3600, "1 hour"], [6 * 3600, "6 hours"], [86400, "1 day"], [7 * 86400, "7 days"]];
const CHARTS = [
  ["error_rate", "Error rate", (v) => (v * 100).toFixed(2) + " %"],
  ["latency_p99_ms", "p99 latency", (v) => v.toFixed(0) + " ms"],
  ["request_rate", "Requests", (v) => v.toFixed(0) + " /s"],
  ["cpu_percent", "CPU", (v) => v.toFixed(1) + " %"],
  ["memory_percent", "Memory", (v) => v.toFixed(1) + " %"],
];

let page = null; // the deployment page's data
let range = 3600;
let lastStep = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c == null ? "-" : String(c)));
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

function table(caption, head, rows) {
  const t = el("table", {}, el("caption", { class: "visually-hidden" }, caption));
  t.append(el("thead", {}, el("tr", {}, ...head.map((h) => el("th", { scope: "col" }, h)))));
  const body = el("tbody");
  for (const row of rows) body.append(el("tr", {}, ...row.map((c) => (c instanceof Node && c.tagName === "TD" ? c : el("td", {}, c)))));
  t.append(body);
  return el("div", { class: "scroll" }, t);
}

function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 60 ? s + " s ago" : s < 3600 ? Math.round(s / 60) + " min ago" : Math.round(s / 3600) + " h ago";
}

function num(v) {
  return v == null ? "-" : String(Number(v.toPrecision(4)));
}

function pct(v) {
  return v == null ? "-" : v.toFixed(1) + " %";
}

function rolloutText(r) {
  if (!r) return "none";
  return `#${r.number} ${r.version}: ${r.state}, phase ${r.phase}/${r.phases.length} (${r.percent} %)`;
}

async function getJson(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

// ---- fleet page ----

function renderFleet(fleet) {
  const out = [el("h1", {}, "Fleet")];
  const rows = fleet.deployments.map((d) => [
    el("td", {}, el("a", { href: "/deployments/" + encodeURIComponent(d.name) }, d.name)),
    d.cohorts.map((c) => `${c.cohort}: ${c.connected} connected, ${c.stale} stale`).join("; ") || "no hosts",
    el("td", { class: d.verdict || "" }, d.verdict || "no round yet"),
    `${d.consecutive} of ${d.consecutive_failures}`,
    d.armed ? "armed" : "disarmed",
    rolloutText(d.rollout),
    d.last_decision ? `${d.last_decision.kind} ${ago(d.last_decision.issued_at_ms)} by ${d.last_decision.actor}` : "none",
  ]);
  out.push(table("Deployments", ["Deployment", "Cohorts", "Verdict", "Failing rounds", "Policy", "Rollout", "Last decision"], rows));
  for (const d of fleet.deployments) {
    out.push(el("h2", {}, "Hosts of ", el("a", { href: "/deployments/" + encodeURIComponent(d.name) }, d.name)));
    const hosts = d.hosts.map((h) => [
      h.host_id,
      h.version || "-",
      h.cohort,
      el("td", { class: "num" }, pct(h.cpu_percent)),
      el("td", { class: "num" }, pct(h.memory_percent)),
      h.connected ? (h.stale ? "stale, " : "") + ago(h.last_seen_ms) : "disconnected, " + ago(h.last_seen_ms),
    ]);
    out.push(table("Hosts of " + d.name, ["Host", "Version", "Cohort", "CPU", "Memory", "Last seen"], hosts));
  }
  main.replaceChildren(...out);
}

// ---- deployment page ----

async function loadDeployment() {
  page = await getJson(`/api/deployments/${encodeURIComponent(deployment)}?range=${range}`);
  renderDeployment();
}

function chart(key, title, fmt, t0, t1) {
  const W = 600, H = 170, L = 8, R = 592, T = 10, B = 150;
  const rounds = page.rounds;
  const values = [];
  for (const r of rounds) {
    for (const side of ["beta", "baseline"]) if (r[side][key] != null) values.push(r[side][key]);
    if (r.limits[key] != null) values.push(r.limits[key]);
  }
  const max = Math.max(1e-9, ...values) * 1.1;
  const x = (t) => L + ((t - t0) / Math.max(1, t1 - t0)) * (R - L);
  const y = (v) => B - (v / max) * (B - T);
  const path = (get) => {
    let d = "", open = false;
    for (const r of rounds) {
      const v = get(r);
      if (v == null) { open = false; continue; }
      d += (open ? "L" : "M") + x(r.at_ms).toFixed(1) + " " + y(v).toFixed(1);
      open = true;
    }
    return d;
  };
  const latest = rounds.length ? rounds[rounds.length - 1] : null;
  const node = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${title}: beta and baseline over time` });
  node.append(svg("line", { class: "axis", x1: L, x2: R, y1: B, y2: B }));
  node.append(svg("text", { x: L, y: T + 2 }, fmt(max / 1.1)));
  node.append(svg("text", { x: L, y: H - 4 }, new Date(t0).toLocaleTimeString()));
  node.append(svg("text", { x: R, y: H - 4, "text-anchor": "end" }, new Date(t1).toLocaleTimeString()));
  node.append(svg("path", { class: "limit", d: path((r) => r.limits[key]) }));
  node.append(svg("path", { class: "baseline", d: path((r) => r.baseline[key]) }));
  node.append(svg("path", { class: "beta", d: path((r) => r.beta[key]) }));
  for (const m of page.markers) {
    if (m.at_ms < t0) continue;
    node.append(svg("line", { class: "marker " + m.kind, x1: x(m.at_ms), x2: x(m.at_ms), y1: T, y2: B, "data-kind": m.kind }, svg("title", {}, `${m.action} by ${m.actor}: ${m.reason}`)));
  }
  const caption = el("figcaption", {}, title + " ", el("span", {}, latest ? `beta ${latest.beta[key] == null ? "-" : fmt(latest.beta[key])}, baseline ${latest.baseline[key] == null ? "-" : fmt(latest.baseline[key])}` : "no rounds"));
  return el("figure", { "data-chart": key }, caption, node);
}

function strip(t0, t1) {
  const W = 600, H = 40, L = 8, R = 592;
  const x = (t) => L + ((t - t0) / Math.max(1, t1 - t0)) * (R - L);
  const width = Math.min(12, Math.max(1.5, ((R - L) * page.check_interval_ms) / Math.max(1, t1 - t0) - 1));
  const heights = { pass: 10, inconclusive: 18, error: 26, fail: 34 };
  const node = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "strip", role: "img", "aria-label": "Each round's verdict: pass short, inconclusive taller, error taller, fail full height and hatched" });
  node.append(svg("defs", {}, svg("pattern", { id: "hatch", width: 4, height: 4, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" },
    svg("rect", { width: 4, height: 4, fill: "#b3261e" }), svg("line", { x1: 0, y1: 0, x2: 0, y2: 4, stroke: "#fff", "stroke-width": 1.5 }))));
  for (const r of page.rounds) {
    const h = heights[r.verdict] || 10;
    node.append(svg("rect", { class: r.verdict, x: x(r.at_ms) - width / 2, y: 36 - h, width, height: h, "data-seq": r.seq, "data-at": r.at_ms, "data-received": r.received_ms || "" }, svg("title", {}, `${r.verdict}: ${r.reason}`)));
  }
  return el("figure", { id: "verdicts" }, el("figcaption", {}, "Verdict per round ", el("span", {}, "(pass short, inconclusive and error taller, fail full and hatched)")), node);
}

function legend() {
  const sample = (cls) => svg("svg", { viewBox: "0 0 40 10", "aria-hidden": "true" }, svg("line", { class: cls, x1: 0, x2: 40, y1: 5, y2: 5 }));
  return el("p", { class: "legend" }, el("span", {}, sample("beta"), " beta (solid)"), el("span", {}, sample("baseline"), " baseline (dashed)"), el("span", {}, sample("limit"), " rule limit (dotted)"), el("span", {}, sample("marker rollback"), " rollback / rollout step"));
}

function renderDeployment() {
  const t1 = Date.now();
  // The range asked for, or less while the store holds less: the rounds fill the width.
  const first = page.rounds.length ? page.rounds[0].at_ms - page.check_interval_ms : t1;
  const t0 = Math.max(t1 - page.range_s * 1000, Math.min(first, t1 - 60000));
  const select = el("select", { id: "range", "aria-label": "Time range" });
  for (const [seconds, label] of RANGES) {
    if (seconds > page.max_range_s) continue;
    const option = el("option", { value: seconds }, label);
    if (seconds === range) option.selected = true;
    select.append(option);
  }
  select.addEventListener("change", () => { range = Number(select.value); loadDeployment(); });
  const out = [
    el("h1", {}, deployment),
    el("p", {}, "Range ", select, ` — ${page.rounds.length} rounds, ${page.consecutive_failures} failing in a row roll back. Rollout: ${rolloutText(page.rollout)}.`),
    legend(),
    el("div", { class: "charts" }, ...CHARTS.map(([key, title, fmt]) => chart(key, title, fmt, t0, t1))),
    strip(t0, t1),
  ];
  out.push(el("h2", {}, "Why"));
  if (page.why) {
    out.push(el("p", { id: "why" }, el("span", { class: page.why.verdict + " state" }, page.why.verdict), ": " + page.why.reason));
    out.push(table("Rules of the latest round", ["Rule", "Beta", "Baseline", "Limit", "Verdict"], page.why.rules.map((r) => [r.metric, num(r.value), num(r.baseline), r.limit, el("td", { class: r.verdict }, r.verdict + (r.note ? ` (${r.note})` : ""))])));
  } else {
    out.push(el("p", { id: "why" }, "No round judged yet."));
  }
  out.push(el("h2", {}, "Recent commands"));
  const rows = [];
  for (const c of page.commands) {
    for (const r of c.results) rows.push([c.command_id, c.kind + (c.version ? " " + c.version : ""), ago(c.issued_at_ms) + " by " + c.actor, r.host_id, el("td", { class: r.status }, r.status + (r.reason ? `: ${r.reason}` : ""))]);
  }
  out.push(rows.length ? table("Recent commands and each host's result", ["Command", "Kind", "Issued", "Host", "Result"], rows) : el("p", { id: "commands" }, "No command yet."));
  main.replaceChildren(...out);
}

function onRound(round) {
  if (!page || round.deployment !== deployment) return;
  round.received_ms = Date.now();
  page.rounds.push(round);
  const cut = Date.now() - page.range_s * 1000;
  while (page.rounds.length && page.rounds[0].at_ms < cut) page.rounds.shift();
  if (round.command_id) {
    // A decision: its marker, its command and the why come with a reload of the data.
    loadDeployment();
    return;
  }
  page.why = page.why && { ...page.why, verdict: round.verdict, reason: round.reason };
  renderDeployment();
}

function onFleet(fleet) {
  live.textContent = "live, updated " + new Date(fleet.generated_at_ms).toLocaleTimeString();
  if (!deployment) return renderFleet(fleet);
  const d = fleet.deployments.find((x) => x.name === deployment);
  if (!d || !page) return;
  // A rollout step or a host's result of the newest command: reload the data once.
  const decision = d.last_decision;
  const step = JSON.stringify([d.rollout && [d.rollout.state, d.rollout.phase], decision && [decision.command_id, decision.results.map((r) => r.status)]]);
  if (lastStep !== null && step !== lastStep) loadDeployment();
  lastStep = step;
}

async function start() {
  if (deployment) {
    document.getElementById("crumb").textContent = deployment;
    document.title = deployment + " · rollguard";
    await loadDeployment();
  } else {
    renderFleet(await getJson("/api/fleet"));
  }
  const events = new EventSource("/api/events");
  events.addEventListener("round", (e) => onRound(JSON.parse(e.data)));
  events.addEventListener("fleet", (e) => onFleet(JSON.parse(e.data)));
  events.addEventListener("resync", () => deployment && loadDeployment());
  // The server ends a stream after two minutes (every HTTP connection is
  // aged out); the browser reconnects within a second and the data it
  // missed meanwhile is read again.
  let dropped = false;
  events.addEventListener("open", () => {
    live.textContent = "live";
    if (dropped && deployment) loadDeployment();
    dropped = false;
  });
  events.addEventListener("error", () => { live.textContent = "reconnecting…"; dropped = true; });
}

start().catch((err) => {
  main.replaceChildren(el("p", { role: "alert" }, "Cannot load: " + err.message));
});
