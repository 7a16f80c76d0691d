// The supervisor page: queues (waiting calls), agents (state, reason, since), live calls.
import { me, setToken, token } from "./api.js";
import { lang, setLang, t, translatePage } from "./i18n.js";
import { DeskSocket } from "./socket.js";

const $ = (sel) => document.querySelector(sel);

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.append(td); }
  return tr;
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
      .map((c) => row([c.call_id, c.state, c.agent_id ?? "", c.queue ?? ""])));
  };
  socket.addEventListener("snapshot", render);
  socket.addEventListener("delta", render);
  socket.addEventListener("status", (ev) => {
    $("#connection").textContent = ev.detail.online ? t("online") : t("offline");
    $("#connection").classList.toggle("off", !ev.detail.online);
  });
  socket.addEventListener("unauthorized", () => { setToken(null); location.href = "index.html"; });
  $("#lang-toggle").addEventListener("click", () => {
    setLang(lang() === "zh" ? "en" : "zh"); translatePage(); render();
  });
  $("#back").addEventListener("click", () => { setToken(null); socket.close(); });
  socket.open();
  window.deskDebug = { socket, user };
}

start();
