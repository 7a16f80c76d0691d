// Work orders on the agent page: the caller's open orders on the pop card (the desk's
// `work_orders:<call_id>` message), a form to open a work order / complaint during the call
// (linked to the call, hence to the caller's CRM record), "my open orders" with status moves,
// notes and hand-over, and the work-order notifications the desk pushes (docs/work_orders.md).
import { api } from "./api.js";
import { lang, t } from "./i18n.js";

const $ = (sel, root = document) => root.querySelector(sel);
let config = null; // GET /work-orders/types
let onDial = null; // set by the page: click-to-dial from an order (calls.js)
const notes = []; // the last notifications, newest first

export function setDialer(fn) { onDial = fn; }

export async function loadWorkOrderTypes() {
  config = await api("GET", "/work-orders/types");
  for (const form of document.querySelectorAll("form.wo-create")) fillTypeSelect(form);
  return config;
}

function fillTypeSelect(form) {
  if (!config) return;
  const type = form.elements.type;
  if (type.options.length === 0) {
    type.replaceChildren(...config.types.map((k) => new Option(t(`woTypes.${k.name}`) === `woTypes.${k.name}` ? k.name : t(`woTypes.${k.name}`), k.name)));
    type.addEventListener("change", () => fillSeverities(form));
  }
  fillSeverities(form);
}

function fillSeverities(form) {
  const kind = config.types.find((k) => k.name === form.elements.type.value);
  const sev = form.elements.severity;
  const keep = sev.value;
  sev.replaceChildren(...(kind?.severities ?? []).map((s) => new Option(t(`severities.${s}`), s)));
  if ([...sev.options].some((o) => o.value === keep)) sev.value = keep;
  else if ([...sev.options].some((o) => o.value === "normal")) sev.value = "normal";
}

const when = (iso) => new Date(iso).toLocaleString(lang() === "zh" ? "zh-CN" : "en-GB");

function orderLine(o) {
  return `#${o.id} · ${t(`woTypes.${o.type}`) === `woTypes.${o.type}` ? o.type : t(`woTypes.${o.type}`)}`
    + ` · ${t(`severities.${o.severity}`)} · ${t(`woStatus.${o.status}`)}`
    + ` · ${t("due")} ${when(o.due_at)}${o.overdue ? ` · ${t("overdue")}` : ""}`;
}

// The pop card: the caller's open orders and the create form.
export function fillCardOrders(card, message) {
  const list = $(".caller-orders", card);
  const orders = message?.orders ?? [];
  list.replaceChildren(...orders.map((o) => {
    const li = document.createElement("li");
    li.dataset.orderId = o.id;
    li.classList.toggle("overdue", Boolean(o.overdue));
    li.textContent = `${orderLine(o)}${o.description ? ` — ${o.description}` : ""}`;
    return li;
  }));
  $(".caller-orders-none", card).hidden = orders.length > 0;
}

export function wireCardOrders(card, callId, popOf) {
  const form = $("form.wo-create", card);
  fillTypeSelect(form);
  const status = $(".wo-create-status", card);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    status.textContent = "";
    status.classList.remove("error");
    const pop = popOf();
    const body = {
      call_id: callId, type: form.elements.type.value, severity: form.elements.severity.value,
      description: form.elements.description.value.trim(),
    };
    const customer = pop?.caller?.customer?.id;
    if (customer) body.customer_id = customer;
    try {
      const order = await api("POST", "/work-orders", body);
      status.textContent = t("woCreated", { id: order.id });
      status.dataset.orderId = order.id;
      form.elements.description.value = "";
      await refreshMyOrders();
    } catch (err) {
      status.classList.add("error");
      status.textContent = err.message;
    }
  });
}

// "My open orders": status moves along the configured flow, a note, hand over.
export async function refreshMyOrders() {
  const list = $("#my-orders");
  if (!list) return;
  let orders;
  try {
    orders = await api("GET", "/work-orders?owner=me&status=open");
  } catch (err) {
    $("#orders-error").textContent = err.message;
    return;
  }
  $("#orders-error").textContent = "";
  list.replaceChildren(...orders.map(orderRow));
  $("#my-orders-none").hidden = orders.length > 0;
}

function orderRow(o) {
  const li = $("#order-template").content.firstElementChild.cloneNode(true);
  li.dataset.orderId = o.id;
  li.dataset.status = o.status;
  $(".order-line", li).textContent = orderLine(o);
  $(".order-desc", li).textContent = o.description;
  li.classList.toggle("overdue", o.overdue);
  const move = $("select[name=to]", li);
  const moves = config?.flow?.[o.status] ?? [];
  move.replaceChildren(...moves.map((s) => new Option(t(`woStatus.${s}`), s)));
  for (const el of li.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of li.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  const err = $(".order-error", li);
  const run = async (fn) => {
    err.textContent = "";
    try { await fn(); await refreshMyOrders(); } catch (e) { err.textContent = e.message; }
  };
  const form = $("form.order-actions", li);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const action = ev.submitter?.value;
    const note = form.elements.note.value.trim();
    if (action === "move") {
      const body = { to: move.value, note };
      if (move.value === "resolved") body.result = form.elements.result.value.trim();
      run(() => api("POST", `/work-orders/${o.id}/transition`, body));
    } else if (action === "note") {
      run(() => api("POST", `/work-orders/${o.id}/notes`, { note }));
    } else if (action === "handover") {
      const target = form.elements.owner.value.trim();
      const owner = target.includes(":") ? target : `agent:${target}`;
      run(() => api("POST", `/work-orders/${o.id}/assign`, { owner, note }));
    } else if (action === "ack") {
      run(() => api("POST", `/work-orders/${o.id}/acknowledge`, { note }));
    }
  });
  $("[value=ack]", li).hidden = !o.complaint || Boolean(o.acknowledged_at);
  const dial = $("[data-dial-order]", li);
  dial.hidden = !o.customer_id || !onDial;
  dial.addEventListener("click", () => run(() => onDial({ customer_id: o.customer_id, work_order_id: o.id })));
  return li;
}

// A desk message of type "work_order": a notification line, and the list is read again.
export function onWorkOrderMessage(msg) {
  if (msg?.type !== "work_order") return;
  const o = msg.order ?? {};
  notes.unshift({ at: msg.at ?? new Date().toISOString(), text: `${t(`woEvents.${msg.event}`)} #${o.order_id ?? o.id ?? ""}${o.note ? ` — ${o.note}` : ""}` });
  notes.length = Math.min(notes.length, 20);
  renderNotifications();
  refreshMyOrders();
}

// Any other feature's notification line (a handover reminder, say).
export function notify(text) {
  notes.unshift({ at: new Date().toISOString(), text });
  notes.length = Math.min(notes.length, 20);
  renderNotifications();
}

export function renderNotifications() {
  const list = $("#wo-notifications");
  if (!list) return;
  list.replaceChildren(...notes.map((n) => {
    const li = document.createElement("li");
    li.textContent = `${when(n.at)} · ${n.text}`;
    return li;
  }));
}
