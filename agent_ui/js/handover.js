// The shift handover log on the agent page (docs/shift_handover.md): the open entries with
// their items to acknowledge, and a form to write one for the next shift. Items are one per
// line; a line starting with #<work order id> links that order. Reminders arrive over the
// desk socket (`handover_reminder`) and land in the notifications.
import { api } from "./api.js";
import { lang, t } from "./i18n.js";

const $ = (sel, root = document) => root.querySelector(sel);
const when = (iso) => new Date(iso).toLocaleString(lang() === "zh" ? "zh-CN" : "en-GB");

export function wireHandover() {
  $("#handover-form").addEventListener("submit", onWrite);
  $("#handover-refresh").addEventListener("click", () => refreshHandovers());
}

// "#7 call back" -> { text: "call back", work_order_id: 7 }
export function parseItems(text) {
  return text.split("\n").map((l) => l.trim()).filter(Boolean).map((line) => {
    const m = /^#(\d+)\s*(.*)$/.exec(line);
    return m ? { text: m[2] || `#${m[1]}`, work_order_id: Number(m[1]) } : { text: line };
  });
}

async function onWrite(ev) {
  ev.preventDefault();
  const form = ev.target;
  const status = $("#handover-status");
  status.classList.remove("error");
  try {
    const entry = await api("POST", "/handovers", {
      shift: form.elements.shift.value.trim(), next_shift: form.elements.next_shift.value.trim(),
      note: form.elements.note.value.trim(), items: parseItems(form.elements.items.value),
    });
    status.textContent = t("handoverSaved", { id: entry.id });
    form.elements.note.value = "";
    form.elements.items.value = "";
    await refreshHandovers();
  } catch (err) {
    status.classList.add("error");
    status.textContent = err.message;
  }
}

export async function refreshHandovers() {
  const list = $("#handover-list");
  if (!list) return;
  let entries;
  try {
    entries = await api("GET", "/handovers?open=true");
  } catch (err) {
    $("#handover-status").textContent = err.message;
    return;
  }
  list.replaceChildren(...entries.map(entryRow));
  $("#handover-none").hidden = entries.length > 0;
}

function entryRow(e) {
  const li = document.createElement("li");
  li.className = "handover";
  li.dataset.entryId = e.id;
  li.dataset.testid = "handover-entry";
  const head = document.createElement("div");
  head.textContent = `${e.shift} → ${e.next_shift} · ${e.written_by} · ${when(e.written_at)}`;
  const note = document.createElement("div");
  note.className = "muted";
  note.textContent = e.note;
  const items = document.createElement("ul");
  for (const i of e.items) {
    const row = document.createElement("li");
    row.dataset.itemId = i.id;
    row.dataset.acknowledged = i.acknowledged_by ? "1" : "";
    const label = document.createElement("span");
    label.textContent = `${i.work_order_id ? `#${i.work_order_id} ` : ""}${i.text}`
      + (i.acknowledged_by ? ` · ${t("pickedUpBy", { who: i.acknowledged_by })}` : "")
      + (!i.acknowledged_by && i.reminders ? ` · ${t("reminded", { n: i.reminders })}` : "");
    row.append(label);
    if (!i.acknowledged_by) {
      const btn = document.createElement("button");
      btn.type = "button";
      btn.dataset.ackItem = i.id;
      btn.textContent = t("pickUp");
      btn.addEventListener("click", async () => {
        try {
          await api("POST", `/handovers/${e.id}/acknowledge`, { item_ids: [i.id] });
          await refreshHandovers();
        } catch (err) {
          $("#handover-status").classList.add("error");
          $("#handover-status").textContent = err.message;
        }
      });
      row.append(" ", btn);
    }
    items.append(row);
  }
  li.append(head, note, items);
  return li;
}

// Desk messages: a handover entry changed (keyed) or a reminder (a notification line).
export function onHandoverMessage(msg, notify) {
  if (msg?.type === "handover") refreshHandovers();
  if (msg?.type === "handover_reminder") {
    notify(`${t("handoverReminder")} #${msg.entry_id}: ${msg.text} (${msg.next_shift})`);
    refreshHandovers();
  }
}
