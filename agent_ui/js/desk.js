// The agent page: login, state buttons with the wrap-up timer, the pop card per call with
// call control, procedures and disposition, customer search, and the optional softphone.
import { api, login, logout, me, setToken, token } from "./api.js";
import { lang, setLang, t, translatePage } from "./i18n.js";
import { DeskSocket } from "./socket.js";
import { Softphone, saveSoftphoneSettings, softphoneSettings } from "./softphone.js";
import {
  fillCardOrders, loadWorkOrderTypes, notify, onWorkOrderMessage, refreshMyOrders, setDialer,
  wireCardOrders,
} from "./work_orders.js";
import { onHandoverMessage, refreshHandovers, wireHandover } from "./handover.js";

const $ = (sel, root = document) => root.querySelector(sel);
let user = null;
let socket = null;
let softphone = null;
let ticker = null;

function show(view) {
  $("#login-view").hidden = view !== "login";
  $("#desk-view").hidden = view !== "desk";
  $("#logout-btn").hidden = view !== "desk";
}

async function start() {
  setLang(lang());
  translatePage();
  $("#lang-toggle").addEventListener("click", () => {
    setLang(lang() === "zh" ? "en" : "zh");
    translatePage();
    render();
  });
  $("#login-form").addEventListener("submit", onLogin);
  $("#logout-btn").addEventListener("click", onLogout);
  for (const btn of document.querySelectorAll("[data-action]")) {
    btn.addEventListener("click", () => requestState(btn.dataset.action));
  }
  $("#search-form").addEventListener("submit", onSearch);
  $("#softphone-form").addEventListener("submit", onSoftphoneSave);
  $("#softphone-off").addEventListener("click", () => { saveSoftphoneSettings(null); stopSoftphone(); });
  $("#orders-refresh").addEventListener("click", () => refreshMyOrders());
  $("#dial-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    placeCall({ number: $("#dial-number").value.trim() }).catch(() => {});
  });
  setDialer(placeCall);
  wireHandover();
  if (token()) {
    try { user = await me(); } catch { setToken(null); }
  }
  if (user) openDesk(); else show("login");
}

async function onLogin(ev) {
  ev.preventDefault();
  $("#login-error").textContent = "";
  try {
    user = await login($("#username").value.trim(), $("#password").value);
  } catch (err) {
    $("#login-error").textContent = err.status === 401 ? t("loginFailed") : err.message;
    return;
  }
  if (!user.agent_id) { location.href = "supervisor.html"; return; }
  openDesk();
}

async function onLogout() {
  closeDesk();
  await logout(); // ends the token on the server, not only in this tab
}

// The server ended the token (logged out elsewhere, user deactivated, expired): say why.
function onUnauthorized(ev) {
  closeDesk();
  setToken(null);
  $("#login-error").textContent = ev.detail?.reason ?? "";
}

function closeDesk() {
  socket?.close();
  socket = null;
  stopSoftphone();
  user = null;
  show("login");
}

function openDesk() {
  if (!user.agent_id) { location.href = "supervisor.html"; return; }
  setLang(user.language && !localStorage.getItem("desk.lang") ? user.language : lang());
  translatePage();
  show("desk");
  $("#who").textContent = `${user.display_name || user.username} · ${user.agent_id}`;
  socket = new DeskSocket(token);
  socket.addEventListener("snapshot", render);
  socket.addEventListener("delta", render);
  socket.addEventListener("delta", (ev) => onWorkOrderMessage(ev.detail.message));
  socket.addEventListener("delta", (ev) => onHandoverMessage(ev.detail.message, notify));
  socket.addEventListener("status", (ev) => {
    const el = $("#connection");
    el.textContent = ev.detail.online ? t("online") : t("offline");
    el.classList.toggle("off", !ev.detail.online);
  });
  socket.addEventListener("unauthorized", onUnauthorized);
  socket.open();
  window.deskDebug = { socket, user };
  ticker = ticker ?? setInterval(renderTimer, 1000);
  refreshHandovers();
  loadWorkOrderTypes().then(refreshMyOrders).catch((e) => { $("#orders-error").textContent = e.message; });
  const sp = softphoneSettings();
  if (sp) startSoftphone(sp); else $("#softphone-status").textContent = t("softphoneOff");
}

const myTopic = () => `agent:${user.agent_id}`;
const items = () => socket?.items(myTopic()) ?? new Map();

async function requestState(state) {
  $("#state-error").textContent = "";
  const body = { state };
  if (state === "paused") body.reason = $("#pause-reason").value;
  try {
    await api("POST", "/agents/me/state", body);
  } catch (err) {
    $("#state-error").textContent = err.message;
  }
}

function render() {
  const all = items();
  const agentState = all.get("agent_state");
  const stateName = agentState?.state ?? "logged_out";
  $("#agent-state").textContent = t(`states.${stateName}`);
  $("#agent-state").dataset.state = stateName;
  $("#state-reason").textContent = agentState?.reason ? `(${t(`reasons.${agentState.reason}`)})` : "";
  renderTimer();
  const pops = [...all.values()].filter((m) => m.type === "pop");
  const container = $("#pops");
  const seen = new Set();
  for (const pop of pops) {
    seen.add(pop.call_id);
    let card = container.querySelector(`[data-call-id="${CSS.escape(pop.call_id)}"]`);
    if (!card) {
      card = $("#pop-template").content.firstElementChild.cloneNode(true);
      card.dataset.callId = pop.call_id;
      wireCard(card, pop.call_id);
      container.prepend(card);
    }
    fillCard(card, pop, all.get(`call:${pop.call_id}`), all.get(`procedure:${pop.call_id}`), stateName);
    fillCardOrders(card, all.get(`work_orders:${pop.call_id}`));
  }
  for (const card of container.querySelectorAll(".pop")) {
    if (!seen.has(card.dataset.callId)) card.remove();
  }
  $("#no-call").hidden = pops.length > 0;
}

function renderTimer() {
  const el = $("#wrapup-timer");
  const st = items().get("agent_state");
  if (!st || st.state !== "wrap_up") { el.hidden = true; return; }
  const elapsed = Math.max(0, Math.floor((Date.now() - Date.parse(st.since)) / 1000));
  const total = Number(st.wrap_up_s ?? 0);
  const shown = total > 0 ? Math.max(0, Math.ceil(total - elapsed)) : elapsed;
  el.hidden = false;
  el.textContent = `${t("wrapUp")} ${Math.floor(shown / 60)}:${String(shown % 60).padStart(2, "0")}`;
}

function fillCard(card, pop, call, procedure, agentState) {
  const c = pop.caller?.customer;
  const l = lang();
  card.classList.toggle("vip", Boolean(c?.vip));
  $(".vip-badge", card).hidden = !c?.vip;
  $(".customer-name", card).textContent = c ? (c.name || pop.script?.address_as?.[l] || c.surname) : t("unknownCaller");
  $(".tier", card).textContent = c ? c.tier : "";
  const state = call?.state === "ended" || pop.state === "ended" ? "ended" : (call?.state ?? pop.state);
  $(".call-state", card).textContent = (pop.direction === "outbound" ? `${t("outboundCall")} · ` : "")
    + (t(state) !== state ? t(state) : state);
  card.dataset.state = state;
  const outbound = pop.direction === "outbound";
  card.dataset.direction = outbound ? "outbound" : "inbound";
  $(".script", card).hidden = outbound;  // the inbound greeting does not fit a call we placed
  $(".script", card).textContent = outbound ? "" : (pop.script?.text?.[l] ?? "");
  $(".number", card).textContent = pop.caller?.number ?? "";
  $(".queue", card).textContent = pop.queue ?? "";
  $(".menu-path", card).textContent = (pop.menu_path ?? []).join(" › ");
  $(".waited", card).textContent = `${pop.waited_s ?? 0} ${t("seconds")}`;
  $(".notes", card).textContent = c?.notes ?? "";
  $(".crm-status", card).textContent = pop.caller?.external_pending ? t("pending")
    : pop.caller?.external_error ? t("crmError") : "";
  const history = $(".history", card);
  history.replaceChildren(...(pop.caller?.history ?? []).map((h) => {
    const li = document.createElement("li");
    li.textContent = `${new Date(h.at).toLocaleString(l === "zh" ? "zh-CN" : "en-GB")} · ${h.outcome}${h.agent_id ? ` · ${h.agent_id}` : ""}`;
    return li;
  }));
  const live = state !== "ended";
  for (const btn of card.querySelectorAll("[data-call], [data-procedure], .transfer button")) {
    btn.disabled = !live;
  }
  $("[data-call=answer]", card).disabled = state !== "ringing";
  const muteBtn = $("[data-call=mute]", card);
  muteBtn.dataset.on = call?.muted ? "1" : "";
  muteBtn.textContent = call?.muted ? t("unmute") : t("mute");
  $(".consult-buttons", card).hidden = state !== "consulting";
  card.dataset.cause = call?.cause ?? "";
  $(".procedure-progress", card).textContent = procedure
    ? `${t(`proc.${procedure.name}`)}: ${procedure.step} (${procedure.status})` : "";
  $(".disposition", card).hidden = !(state === "ended" || agentState === "wrap_up");
}

function wireCard(card, callId) {
  translatePage(card);
  wireCardOrders(card, callId, () => items().get(`pop:${callId}`));
  const err = $(".call-error", card);
  const run = async (fn) => {
    err.textContent = "";
    try { await fn(); } catch (e) { err.textContent = e.message; }
  };
  for (const btn of card.querySelectorAll("[data-call]")) {
    btn.addEventListener("click", () => run(async () => {
      const action = btn.dataset.call;
      if (action === "answer" && softphone?.answer(callId)) return;
      if (action === "recording") {  // pause / resume the call's recording
        const paused = Boolean(btn.dataset.paused);
        const res = await api("POST",
          `/calls/${encodeURIComponent(callId)}/recording/${paused ? "resume" : "pause"}`);
        btn.dataset.paused = res?.recording === "paused" ? "1" : "";
        btn.textContent = t(btn.dataset.paused ? "resumeRecording" : "pauseRecording");
        return;
      }
      if (action === "mute") {
        const on = !btn.dataset.on;
        softphone?.mute(on);
        await api("POST", `/calls/${encodeURIComponent(callId)}/mute`, { on });
        return;
      }
      await api("POST", `/calls/${encodeURIComponent(callId)}/${action}`);
    }));
  }
  for (const btn of card.querySelectorAll("[data-procedure]")) {
    btn.addEventListener("click", () => run(() =>
      api("POST", `/calls/${encodeURIComponent(callId)}/procedures/${btn.dataset.procedure}`)));
  }
  $(".transfer", card).addEventListener("submit", (ev) => {
    ev.preventDefault();
    const form = ev.target;
    run(() => api("POST", `/calls/${encodeURIComponent(callId)}/transfer`, {
      target_type: form.target_type.value, target: form.target.value.trim(),
      kind: ev.submitter?.value ?? "blind",
    }));
  });
  for (const btn of card.querySelectorAll("[data-transfer]")) {
    btn.addEventListener("click", () => run(() =>
      api("POST", `/calls/${encodeURIComponent(callId)}/transfer/${btn.dataset.transfer}`)));
  }
  $(".disposition", card).addEventListener("submit", (ev) => {
    ev.preventDefault();
    const form = ev.target;
    const pop = items().get(`pop:${callId}`);
    run(async () => {
      await api("POST", `/calls/${encodeURIComponent(callId)}/disposition`, {
        outcome: form.outcome.value, note: form.note.value,
        customer_id: pop?.caller?.customer?.id ?? null,
      });
      form.hidden = true;
    });
  });
}

// Click-to-dial (dial pad, a search result, a work order): the agent's own phone rings first,
// then the customer is dialled; the call pops on this page like any other.
async function placeCall(target) {
  const status = $("#dial-status");
  status.classList.remove("error");
  try {
    const placed = await api("POST", "/calls/outbound", target);
    status.textContent = t("dialing", { number: placed.number });
    status.dataset.callId = placed.call_id;
  } catch (err) {
    status.classList.add("error");
    status.textContent = err.message;
    throw err;
  }
}

async function onSearch(ev) {
  ev.preventDefault();
  const list = $("#search-results");
  const found = await api("GET", `/crm/customers?q=${encodeURIComponent($("#search-q").value)}`);
  list.replaceChildren(...found.map((c) => {
    const li = document.createElement("li");
    li.textContent = `${c.name || c.surname} · ${c.tier} · ${c.numbers.join(", ")}${c.company ? ` · ${c.company}` : ""}`;
    if (c.numbers.length) {
      const call = document.createElement("button");
      call.type = "button";
      call.dataset.dialCustomer = c.id;
      call.textContent = t("call");
      call.addEventListener("click", () => placeCall({ customer_id: c.id }).catch(() => {}));
      li.append(call);
    }
    return li;
  }));
  if (!found.length) list.innerHTML = `<li class="muted">${t("noResults")}</li>`;
}

function onSoftphoneSave(ev) {
  ev.preventDefault();
  const form = ev.target;
  const settings = { wssUrl: form.wssUrl.value.trim(), sipUri: form.sipUri.value.trim(), password: form.password.value };
  saveSoftphoneSettings(settings);
  startSoftphone(settings);
}

async function startSoftphone(settings) {
  stopSoftphone();
  softphone = new Softphone(settings);
  softphone.addEventListener("status", (ev) => {
    $("#softphone-status").textContent = ev.detail.registered ? t("softphoneOn") : (ev.detail.error ?? t("offline"));
  });
  try { await softphone.start(); } catch (e) { $("#softphone-status").textContent = e.message; }
}

function stopSoftphone() {
  softphone?.stop();
  softphone = null;
  $("#softphone-status").textContent = t("softphoneOff");
}

start();
