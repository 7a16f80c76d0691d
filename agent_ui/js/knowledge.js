// The knowledge base on the agent page: search (Chinese: two characters find an article inside
// words), each result's title, tags and the passage around the words found; with no result,
// one click sends the question to the duty manager as a knowledge gap.
import { api } from "./api.js";
import { lang, t } from "./i18n.js";

const $ = (sel, root = document) => root.querySelector(sel);
let lastQuery = "";

async function onSearch(ev) {
  ev.preventDefault();
  const q = $("#kb-q").value.trim();
  $("#kb-error").textContent = "";
  $("#kb-gap").hidden = true;
  if (!q) return;
  lastQuery = q;
  let found;
  try {
    found = await api("GET", `/kb/search?q=${encodeURIComponent(q)}`);
  } catch (err) {
    $("#kb-error").textContent = err.message;
    return;
  }
  $("#kb-results").replaceChildren(...found.map((a) => {
    const li = document.createElement("li");
    li.dataset.testid = "kb-hit";
    const title = document.createElement("strong");
    title.textContent = a.title;
    const tags = document.createElement("span");
    tags.className = "muted";
    tags.textContent = a.tags.length ? ` · ${a.tags.join(", ")}` : "";
    const text = document.createElement("p");
    text.textContent = a.snippet;
    li.append(title, tags, text);
    return li;
  }));
  $("#kb-gap").hidden = found.length > 0;
}

async function onAsk() {
  try {
    const gap = await api("POST", "/kb/gaps", { question: lastQuery, language: lang() });
    $("#kb-gap").hidden = true;
    $("#kb-error").textContent = t("kbAsked", { id: gap.id });
  } catch (err) {
    $("#kb-error").textContent = err.message;
  }
}

$("#kb-form").addEventListener("submit", onSearch);
$("#kb-ask").addEventListener("click", onAsk);
