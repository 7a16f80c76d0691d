// Team leads' work orders on the supervisor page: every open order, most urgent first, with
// assign / reassign to an agent or a team (the new owner is told on their desk), and the
// escalations pushed to the supervisors' socket (docs/work_orders.md).
import { api } from "./api.js";
import { lang, t } from "./i18n.js";

const $ = (sel, root = document) => root.querySelector(sel);
const when = (iso) => new Date(iso).toLocaleString(lang() === "zh" ? "zh-CN" : "en-GB",
  { dateStyle: "short", timeStyle: "short" });

export async function refreshTeamOrders() {
  const body = $("#team-orders");
  if (!body) return;
  let orders;
  try {
    orders = await api("GET", "/work-orders?owner=any&status=open&limit=200");
  } catch (err) {
    $("#team-orders-error").textContent = err.message;
    return;
  }
  $("#team-orders-error").textContent = "";
  body.replaceChildren(...orders.map((o) => {
    const tr = document.createElement("tr");
    tr.dataset.orderId = o.id;
    tr.classList.toggle("overdue", o.overdue);
    for (const text of [`#${o.id}`, o.type, o.severity, o.status, o.owner, when(o.due_at),
      o.escalated_to.join(", ")]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    const td = document.createElement("td");
    const input = document.createElement("input");
    input.name = "owner";
    input.size = 10;
    input.placeholder = t("assignTo");
    const btn = document.createElement("button");
    btn.type = "button";
    btn.dataset.assign = o.id;
    btn.textContent = t("assign");
    btn.addEventListener("click", async () => {
      const target = input.value.trim();
      const owner = target.includes(":") ? target : `agent:${target}`;
      try {
        await api("POST", `/work-orders/${o.id}/assign`, { owner });
        await refreshTeamOrders();
      } catch (err) {
        $("#team-orders-error").textContent = err.message;
      }
    });
    td.append(input, " ", btn);
    tr.append(td);
    return tr;
  }));
  $("#team-orders-empty").hidden = orders.length > 0;
}

export function onTeamOrderMessage(msg) {
  if (msg?.type !== "work_order") return;
  if (msg.event === "escalated") {
    const li = document.createElement("li");
    li.textContent = `${when(msg.order.at)} · #${msg.order.order_id} → ${msg.order.target} (${msg.order.reason})`;
    $("#escalations").prepend(li);
  }
  refreshTeamOrders();
}
