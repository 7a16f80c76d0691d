// The supervisor page: queues (waiting calls), agents (state, reason, since), live calls, and
// what callers left when nobody answered: call-back requests and voicemails (polled over REST).
import { api, apiBlob, logout, me, setToken, token } from "./api.js";
import { lang, setLang, t, translatePage } from "./i18n.js";
import { drawChart } from "./minichart.js";
import { DeskSocket } from "./socket.js";
import { onTeamOrderMessage, refreshTeamOrders } from "./team_orders.js";

const $ = (sel) => document.querySelector(sel);

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.append(td); }
  return tr;
}

const POLL_MS = 10000;
const fallback = { callbacks: [], voicemails: [], at: null };
let playerUrl = null;
let playerLabel = null;  // [key, vars] of the line above the player, re-said on a language switch

function localTime(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString(lang() === "zh" ? "zh-CN" : "en-GB",
    { dateStyle: "short", timeStyle: "short" });
}

function duration(seconds) {
  if (seconds == null) return "—";
  const s = Math.round(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function langName(code) {
  const name = t(`langs.${code}`);
  return name === `langs.${code}` ? code : name;
}

function button(label, onClick, attrs = {}) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  Object.assign(b.dataset, attrs);
  b.addEventListener("click", onClick);
  return b;
}

function renderFallback() {
  $("#callbacks").replaceChildren(...fallback.callbacks.map((cb) => {
    const tr = row([cb.caller_number, localTime(cb.requested_at), cb.queue ?? "—", langName(cb.lang)]);
    tr.dataset.testid = "callback-row";
    tr.dataset.id = cb.id;
    tr.classList.toggle("done", Boolean(cb.done_at));
    tr.children[1].className = "num";
    const td = document.createElement("td");
    if (cb.done_at) td.textContent = t("doneAt", { time: localTime(cb.done_at) });
    else td.append(button(t("markDone"), () => markDone(cb.id), { action: "done" }));
    tr.append(td);
    return tr;
  }));
  $("#callbacks-empty").hidden = fallback.callbacks.length > 0;
  $("#voicemails").replaceChildren(...fallback.voicemails.map((vm) => {
    const box = vm.queue ? `${vm.mailbox} · ${vm.queue}` : vm.mailbox;
    const tr = row([vm.caller_number, box, localTime(vm.recorded_at), duration(vm.duration_s)]);
    tr.dataset.testid = "voicemail-row";
    tr.dataset.id = vm.id;
    tr.children[2].className = "num";
    tr.children[3].className = "num";
    const td = document.createElement("td");
    td.append(button(t("play"), () => play(vm), { action: "play" }));
    tr.append(td);
    return tr;
  }));
  $("#voicemails-empty").hidden = fallback.voicemails.length > 0;
  $("#player-label").textContent = playerLabel ? t(...playerLabel) : "";
  $("#fallback-updated").textContent = fallback.at
    ? t("updatedAt", { time: fallback.at.toLocaleTimeString(lang() === "zh" ? "zh-CN" : "en-GB") })
    : "";
}

let loading = null;
function loadFallback() {
  // one request at a time: a slow answer is not overtaken by the next poll
  loading ??= (async () => {
    try {
      const [callbacks, voicemails] = await Promise.all([api("GET", "/callbacks?limit=50"),
        api("GET", "/voicemails?limit=50")]);
      Object.assign(fallback, { callbacks, voicemails, at: new Date() });
      $("#fallback-error").textContent = "";
      renderFallback();
    } catch (err) {
      if (err.status === 401) { setToken(null); location.href = "index.html"; return; }
      $("#fallback-error").textContent = err.message;
    } finally {
      loading = null;
    }
  })();
  return loading;
}

async function markDone(id) {
  try {
    await api("POST", `/callbacks/${id}/done`);
  } catch (err) {
    $("#fallback-error").textContent = err.message;
  }
  await loadFallback();
}

async function play(vm) {
  const player = $("#voicemail-player");
  const label = (key, vars) => {
    playerLabel = key && [key, vars];
    $("#player-label").textContent = key ? t(key, vars) : "";
  };
  label("loadingAudio");
  try {
    const blob = await apiBlob(`/voicemails/${vm.id}/audio`);
    if (playerUrl) URL.revokeObjectURL(playerUrl);
    playerUrl = URL.createObjectURL(blob);
    player.src = playerUrl;
    player.hidden = false;
    player.dataset.voicemailId = vm.id;
    label("playing", { number: vm.caller_number });
    // the browser may refuse to start by itself; the controls are there to press play
    await player.play().catch(() => {});
  } catch (err) {
    label(null);
    $("#fallback-error").textContent = err.message;
  }
}

// Listen / whisper / barge (docs/monitoring.md): the supervisor's phone (a desk phone or the
// softphone's endpoint) is dialled once; the buttons switch mode on that same call.
const ENDPOINT_KEY = "supervisor.monitorEndpoint";
const monitors = new Map();  // call id -> the monitor as the server last answered
const MODES = ["listen", "whisper", "barge"];

function callRow(c) {
  const tr = row([c.call_id, c.state, c.agent_id ?? "", c.queue ?? ""]);
  tr.dataset.testid = "call-row";
  tr.dataset.callId = c.call_id;
  const td = document.createElement("td");
  const mon = monitors.get(c.call_id);
  if (c.agent_id && (c.state === "connected" || mon)) {
    for (const mode of MODES) {
      const b = button(t(mode), () => monitor(c.call_id, mode), { action: mode });
      if (mon?.mode === mode) b.classList.add("active");
      b.setAttribute("aria-pressed", String(mon?.mode === mode));
      td.append(b);
    }
    if (mon) {
      td.append(button(t("stopMonitor"), () => stopMonitor(c.call_id), { action: "stop-monitor" }));
      if (mon.state === "dialling") td.append(document.createTextNode(` ${t("monitorDialling")}`));
    }
  }
  tr.append(td);
  return tr;
}

let rerender = () => {};

async function monitor(callId, mode) {
  const endpoint = $("#monitor-endpoint").value.trim();
  try {
    let answer;
    if (monitors.has(callId)) {
      answer = await api("PATCH", `/calls/${encodeURIComponent(callId)}/monitor`, { mode });
    } else {
      if (!endpoint) { $("#monitor-error").textContent = t("needPhone"); return; }
      localStorage.setItem(ENDPOINT_KEY, endpoint);
      answer = await api("POST", `/calls/${encodeURIComponent(callId)}/monitor`, { mode, endpoint });
    }
    monitors.set(callId, answer);
    $("#monitor-error").textContent = "";
  } catch (err) {
    $("#monitor-error").textContent = err.message;
  }
  await loadMonitors();
}

async function stopMonitor(callId) {
  try {
    await api("DELETE", `/calls/${encodeURIComponent(callId)}/monitor`);
  } catch (err) {
    $("#monitor-error").textContent = err.message;
  }
  await loadMonitors();
}

async function loadMonitors() {
  try {
    const list = await api("GET", "/monitors");
    monitors.clear();
    for (const m of list) monitors.set(m.call_id, m);
  } catch (err) {
    $("#monitor-error").textContent = err.message;
  }
  rerender();
}

const pct = (x) => (x === null || x === undefined ? "–" : `${Math.round(x * 100)}%`);
const secs = (x) => (x === null || x === undefined ? "–" : duration(x));

// A service level below its goal is red, within the queue's warning points of it amber
// (docs/reports.md); the queue's other thresholds are [amber, red] pairs.
function slClass(sl, goal, warn = 0.1) {
  if (sl === null || sl === undefined) return "";
  if (sl >= goal) return "ok";
  return sl >= goal - warn ? "warn" : "bad";
}

function overClass(value, pair) {
  if (!pair || value === null || value === undefined) return "";
  if (value >= pair[1]) return "bad";
  return value >= pair[0] ? "warn" : "ok";
}

function renderCharts(items) {
  const series = items.filter((m) => m.type === "wallboard.series");
  const select = $("#chart-queue");
  const names = series.map((m) => m.queue).sort();
  if (select.options.length !== names.length) {
    const chosen = select.value;
    select.replaceChildren(...names.map((n) => { const o = document.createElement("option"); o.value = n; o.textContent = n; return o; }));
    if (names.includes(chosen)) select.value = chosen;
  }
  const s = series.find((m) => m.queue === select.value);
  const tile = items.find((m) => m.type === "wallboard.queue" && m.queue === select.value);
  const pts = s ? s.points : [];
  const of = (f, k = 1) => pts.map((p) => ({ t: p.t, value: p[f] === null ? null : p[f] * k }));
  drawChart($("#live-calls"), of("offered"), { kind: "bar" });
  drawChart($("#live-sl"), of("service_level", 100), { max: 100, unit: "%",
    goal: tile ? tile.sl_goal * 100 : null });
  drawChart($("#live-asa"), of("asa_s"), { unit: "s" });
  drawChart($("#live-aht"), of("aht_s"), { unit: "s" });
  drawChart($("#live-abandon"), of("abandonment_rate", 100), { max: 100, unit: "%" });
}

function renderWallboard(items) {
  const queues = items.filter((m) => m.type === "wallboard.queue")
    .sort((a, b) => a.queue.localeCompare(b.queue));
  $("#wallboard-queues").replaceChildren(...queues.map((q) => {
    const level = q.service_level;
    const tr = row([q.queue, String(q.waiting), secs(q.longest_wait_now_s), String(q.offered),
      String(q.answered), `${q.abandoned} (+${q.short_abandoned})`, pct(level), secs(q.asa_s),
      secs(q.aht_s), pct(q.abandonment_rate)]);
    tr.dataset.queue = q.queue;
    const th = q.thresholds || {};
    const marks = [[6, slClass(level, q.sl_goal, th.sl_warn ?? 0.1)],
      [2, overClass(q.longest_wait_now_s, th.longest_wait_s)], [7, overClass(q.asa_s, th.asa_s)],
      [9, overClass(q.abandonment_rate, th.abandonment)]];
    for (const [i, cls] of marks) if (cls) tr.children[i].classList.add(`sl-${cls}`);
    return tr;
  }));
  const agents = items.filter((m) => m.type === "wallboard.agent")
    .sort((a, b) => a.agent_id.localeCompare(b.agent_id));
  $("#wallboard-agents").replaceChildren(...agents.map((a) => row([a.agent_id, String(a.calls),
    secs(a.talk_s), secs(a.wrap_s), secs(a.paused_s), pct(a.occupancy)])));
}

async function start() {
  setLang(lang());
  translatePage();
  let user = null;
  try { user = token() ? await me() : null; } catch { setToken(null); }
  if (!user) { location.href = "index.html"; return; }
  $("#who").textContent = user.display_name || user.username;
  const socket = new DeskSocket(token);
  const render = () => {
    const items = [...socket.items("supervisors").values()];
    $("#queues").replaceChildren(...items.filter((m) => m.type === "queue.state")
      .map((q) => row([q.queue, String(q.waiting.length)])));
    $("#agents").replaceChildren(...items.filter((m) => m.type === "agent.state")
      .sort((a, b) => a.agent_id.localeCompare(b.agent_id))
      .map((a) => row([a.agent_id, t(`states.${a.state}`), a.reason ?? ""])));
    $("#calls").replaceChildren(...items.filter((m) => m.type === "call.state" && m.state !== "ended")
      .map(callRow));
    renderWallboard(items);
    renderCharts(items);
  };
  rerender = render;
  $("#chart-queue").addEventListener("change", render);
  $("#monitor-endpoint").value = localStorage.getItem(ENDPOINT_KEY) ?? "";
  socket.addEventListener("snapshot", render);
  socket.addEventListener("delta", render);
  socket.addEventListener("delta", (ev) => onTeamOrderMessage(ev.detail.message));
  $("#team-orders-refresh").addEventListener("click", refreshTeamOrders);
  refreshTeamOrders();
  let online = false;
  const renderConnection = () => {
    $("#connection").textContent = online ? t("online") : t("offline");
    $("#connection").classList.toggle("off", !online);
  };
  socket.addEventListener("status", (ev) => { online = ev.detail.online; renderConnection(); });
  socket.addEventListener("unauthorized", () => { setToken(null); location.href = "index.html"; });
  $("#lang-toggle").addEventListener("click", () => {
    setLang(lang() === "zh" ? "en" : "zh"); translatePage();
    render(); renderFallback(); renderConnection();
  });
  $("#fallback-refresh").addEventListener("click", loadFallback);
  loadFallback();
  setInterval(loadFallback, POLL_MS);
  loadMonitors();
  setInterval(loadMonitors, 2000);  // a dialling phone becomes active, or hangs up
  $("#back").addEventListener("click", async (ev) => {
    ev.preventDefault(); // first end the token on the server, then leave
    socket.close();
    await logout();
    location.href = "index.html";
  });
  socket.open();
  window.deskDebug = { socket, user };
}

start();
