// The reports page (supervisors): a period's figures per interval, day, week or month, per
// queue, agent or team, with the server's charts (SVG, fetched with the bearer token and shown
// from blob: URLs) and Erlang C's staffing beside the agents who were there; CSV and PNG
// downloads of the same report. The callers' satisfaction (surveys) is a column group of its
// own at the end of each row, and a chart.
import { api, apiBlob, me, setToken, token } from "./api.js";
import { lang, setLang, t, translatePage } from "./i18n.js";

const $ = (sel) => document.querySelector(sel);
const METRICS = ["calls", "sl", "asa", "aht", "abandonment", "csat_attitude"];
const urls = {};

const COLUMNS = {
  queues: ["interval_start", "queue", "offered", "answered", "abandoned", "short_abandoned",
    "service_level", "asa_s", "aht_s", "abandonment_rate", "traffic_erlangs", "agents_needed",
    "agents_logged_in", "agents_present_avg"],
  agents: ["interval_start", "agent_id", "team", "calls", "talk_s", "hold_s", "wrap_s",
    "paused_s", "logged_in_s", "occupancy", "missed"],
  teams: ["interval_start", "team", "agents_logged_in", "calls", "talk_s", "hold_s", "wrap_s",
    "paused_s", "logged_in_s", "occupancy"],
};
// the satisfaction group, after each table's own columns
const CSAT = ["csat_surveys", "csat_response_rate", "csat_speed", "csat_attitude",
  "csat_resolved_rate"];
const PERCENT = new Set(["service_level", "abandonment_rate", "occupancy", "csat_response_rate",
  "csat_resolved_rate"]);

function query() {
  const p = new URLSearchParams({
    since: $("#since").value, until: $("#until").value, interval: $("#interval").value,
    hours: $("#hours").value,
  });
  if ($("#tz").value.trim()) p.set("tz", $("#tz").value.trim());
  return p;
}

function cell(name, value) {
  if (value === null || value === undefined) return "–";
  if (name === "interval_start") {
    return value.slice(0, $("#interval").value.endsWith("m") ? 16 : 10).replace("T", " ");
  }
  if (PERCENT.has(name)) return `${(value * 100).toFixed(1)}%`;
  if (typeof value === "number" && !Number.isInteger(value)) {
    return value.toFixed(name === "csat_speed" || name === "csat_attitude" ? 2 : 1);
  }
  return String(value);
}

function renderTable(rows, of) {
  const cols = [...COLUMNS[of], ...CSAT];
  // the satisfaction columns as one <colgroup> (shaded, titled), the header stays one row
  const own = document.createElement("col"); own.span = COLUMNS[of].length;
  const csat = document.createElement("col"); csat.span = CSAT.length;
  csat.className = "csat-group"; csat.dataset.testid = "csat-group";
  const group = document.createElement("colgroup"); group.id = "report-cols";
  group.append(own, csat);
  $("#report-cols")?.remove();
  $("#report-head").before(group);
  const head = document.createElement("tr");
  for (const c of cols) {
    const th = document.createElement("th"); th.textContent = t(`col.${c}`);
    if (CSAT.includes(c)) { th.title = t("csatGroup"); th.classList.add("csat"); }
    head.append(th);
  }
  $("#report-head").replaceChildren(head);
  $("#report-rows").replaceChildren(...rows.map((r) => {
    const tr = document.createElement("tr");
    tr.dataset.testid = "report-row";
    for (const c of cols) {
      const td = document.createElement("td"); td.textContent = cell(c, r[c]);
      if (c === "agents_needed" && r.agents_needed > r.agents_logged_in) td.classList.add("sl-bad");
      tr.append(td);
    }
    return tr;
  }));
}

async function showCharts(p) {
  await Promise.all(METRICS.map(async (metric) => {
    const q = new URLSearchParams(p); q.set("metric", metric);
    const blob = await apiBlob(`/reports/queues/chart.svg?${q}`);
    if (urls[metric]) URL.revokeObjectURL(urls[metric]);
    urls[metric] = URL.createObjectURL(blob);
    const img = $(`#chart-${metric}`);
    img.src = urls[metric];
    await img.decode().catch(() => {});
    img.dataset.loaded = "1";
  }));
}

let last = null;

async function show(ev) {
  ev?.preventDefault();
  $("#report-error").textContent = "";
  const p = query();
  const of = $("#of").value;
  try {
    const report = await api("GET", `/reports/queues?${p}`);
    last = { report, of };
    renderTable(report[of], of);
    const offered = report.queues.reduce((n, r) => n + r.offered, 0);
    $("#report-summary").textContent = t("reportSummary", {
      offered, rows: report[of].length, tz: report.timezone, source: report.source });
    await showCharts(p);
  } catch (err) {
    $("#report-error").textContent = err.message;
  }
}

async function download(path, name) {
  try {
    const blob = await apiBlob(path);
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob); a.download = name; a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  } catch (err) { $("#report-error").textContent = err.message; }
}

async function start() {
  setLang(lang());
  translatePage();
  let user = null;
  try { user = token() ? await me() : null; } catch { setToken(null); }
  if (!user) { location.href = "index.html"; return; }
  $("#who").textContent = user.display_name || user.username;
  const today = new Date();
  const weekAgo = new Date(today.getTime() - 7 * 86400000);
  $("#since").value = weekAgo.toISOString().slice(0, 10);
  $("#until").value = today.toISOString().slice(0, 10);
  const params = new URLSearchParams(location.search);  // a report can be linked
  for (const k of ["since", "until", "interval", "of", "hours", "tz"]) {
    if (params.get(k)) $(`#${k}`).value = params.get(k);
  }
  $("#report-form").addEventListener("submit", show);
  $("#csv").addEventListener("click", () => {
    const p = query(); p.set("format", "csv"); p.set("of", $("#of").value);
    download(`/reports/queues?${p}`, `report-${$("#of").value}.csv`);
  });
  $("#png").addEventListener("click", () => download(`/reports/queues/chart.png?${query()}`, "report.png"));
  $("#lang-toggle").addEventListener("click", () => {
    setLang(lang() === "zh" ? "en" : "zh"); translatePage();
    if (last) renderTable(last.report[last.of], last.of);
  });
  if (params.get("since")) await show();
}

start();
