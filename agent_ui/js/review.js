// The quality review page: pick a call, read its time line (recording, IVR path, routing,
// procedures, transfers, holds, departures from the script), play the recording with seeking
// and fill in an evaluation form. The <audio> element plays an audio link (a key for that
// recording only, see POST /recordings/{id}/audio-link): it cannot send the bearer token, and
// playing from the link lets it ask byte ranges itself, so seeking does not download the file.
import { ApiError, api, me, setToken, token } from "./api.js";

const $ = (sel) => document.querySelector(sel);
const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "dataset") Object.assign(node.dataset, v);
    else if (k in node) node[k] = v;
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
};

const LANES = ["call", "ivr", "routing", "procedure", "recording", "transfer", "hold", "departure"];
const LANE_NAMES = { call: "通话 call", ivr: "IVR", routing: "路由 routing", procedure: "规程 procedure",
  recording: "录音 recording", transfer: "转接 transfer", hold: "保持 hold", departure: "偏离 departure" };

const state = { calls: [], review: null, forms: [], segment: null, linkRetried: false, total: 1 };

function when(iso) {
  return iso ? new Date(iso).toLocaleString("zh-CN", { dateStyle: "short", timeStyle: "medium" }) : "";
}
function length(call) {
  if (!call.ended_at) return "…";
  const s = Math.round((new Date(call.ended_at) - new Date(call.arrived_at)) / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}
function message(err) { return err instanceof ApiError ? `${err.status}: ${err.message}` : String(err); }

// ----- the calls ------------------------------------------------------------------------------

async function loadCalls() {
  $("#calls-error").textContent = "";
  try { state.calls = await api("GET", "/calls?limit=500"); } catch (err) {
    if (err.status === 401) { setToken(null); location.href = "index.html"; return; }
    $("#calls-error").textContent = message(err);
  }
  renderCalls();
}

function renderCalls() {
  const q = $("#call-search").value.trim().toLowerCase();
  const shown = state.calls.filter((c) => !q || [c.id, c.caller_number, c.agent_id, c.queue]
    .some((v) => (v ?? "").toLowerCase().includes(q)));
  $("#call-list").replaceChildren(...shown.map((c) => {
    const tr = el("tr", { dataset: { testid: "call-row", callId: c.id } },
      el("td", { className: "num" }, when(c.arrived_at)), el("td", {}, c.caller_number),
      el("td", {}, c.agent_id ?? "—"), el("td", {}, c.queue ?? "—"),
      el("td", { className: "num" }, length(c)));
    tr.classList.toggle("selected", state.review?.call_id === c.id);
    tr.addEventListener("click", () => openCall(c.id));
    return tr;
  }));
}

// ----- one call's review ----------------------------------------------------------------------

async function openCall(callId) {
  $("#review-error").textContent = "";
  history.replaceState(null, "", `?call=${encodeURIComponent(callId)}`);
  try {
    state.review = await api("GET", `/calls/${encodeURIComponent(callId)}/review`);
  } catch (err) {
    $("#review-panel").hidden = false;
    $("#review-error").textContent = message(err);
    return;
  }
  renderCalls();
  renderReview();
  renderForm();
  loadEvaluations();
}

function renderReview() {
  const r = state.review;
  $("#review-panel").hidden = false;
  $("#evaluation-panel").hidden = false;
  $("#review-title").textContent = `通话 · Call ${r.call_id}`;
  const dur = r.duration_s == null ? "…" : `${r.duration_s.toFixed(1)} s`;
  $("#review-summary").textContent = `${when(r.started_at)} · ${dur} · 坐席 agents: ${
    r.agents.join(", ") || "—"} · 队列 queues: ${r.queues.join(", ") || "—"}`;
  renderPlayer();
  renderLanes();
  $("#departures").replaceChildren(...r.departures.map((d) => el("li",
    { dataset: { testid: "departure", kind: d.kind } },
    `+${d.offset_s.toFixed(1)} s · ${d.kind} (${d.what})${d.agent_id ? ` · ${d.agent_id}` : ""}`)));
  $("#no-departures").hidden = r.departures.length > 0;
  $("#timeline").replaceChildren(...r.entries.map((e) => {
    const play = e.media && e.media.recording_id
      ? el("button", { type: "button", title: "从此处播放 · play from here",
        dataset: { action: "seek" } }, "▶") : "";
    if (play) play.addEventListener("click", () => seek(e.media.recording_id, e.media.at_s));
    const tr = el("tr", { dataset: { testid: "entry", lane: e.lane, kind: e.kind } },
      el("td", { className: "num" }, e.offset_s.toFixed(1)), el("td", {}, LANE_NAMES[e.lane] ?? e.lane),
      el("td", {}, e.text), el("td", {}, play));
    tr.classList.toggle("departure", e.lane === "departure");
    return tr;
  }));
  $("#runs").replaceChildren(...r.runs.map((run) => el("div", { className: "run", dataset: { testid: "run" } },
    el("strong", {}, `${run.procedure}`),
    ` · ${run.started_by}${run.agent_id ? ` ${run.agent_id}` : ""} · ${run.end_reason ?? "running"}`,
    el("ol", {}, ...run.steps.map((s) => el("li", {},
      `+${(s.offset_ms / 1000).toFixed(2)} s ${s.kind} ${s.detail.phrase ?? (s.detail.seconds != null ? `${s.detail.seconds} s` : "")}`))))));
  if (!r.runs.length) $("#runs").append(el("p", { className: "muted" }, "无 · none"));
}

function renderLanes() {
  const r = state.review;
  const ends = [r.duration_s ?? 0, ...r.entries.map((e) => e.offset_s),
    ...r.stretches.map((s) => s.end_s ?? s.start_s)];
  const total = Math.max(1, ...ends);
  state.total = total;
  const pct = (s) => `${(100 * s / total).toFixed(3)}%`;
  $("#lanes").replaceChildren(...LANES.map((lane) => {
    const row = el("div", { className: "lane", dataset: { lane } }, el("span", { className: "lane-name" }, LANE_NAMES[lane]));
    for (const s of r.stretches.filter((x) => x.lane === lane)) {
      const bar = el("div", { className: `bar-span ${s.kind}`, title: s.label });
      bar.style.left = pct(s.start_s);
      bar.style.width = pct(Math.max(0.2, (s.end_s ?? total) - s.start_s));
      row.append(bar);
    }
    for (const e of r.entries.filter((x) => x.lane === lane)) {
      const tick = el("div", { className: `tick ${lane}`, title: `+${e.offset_s.toFixed(1)} s ${e.text}` });
      tick.style.left = pct(e.offset_s);
      if (e.media) tick.addEventListener("click", () => seek(e.media.recording_id, e.media.at_s));
      row.append(tick);
    }
    return row;
  }));
}

// ----- the recording --------------------------------------------------------------------------

const playable = () => state.review.recordings.filter((s) => s.status === "done" || s.status === "recording");

function renderPlayer() {
  const segs = state.review.recordings;
  const audio = $("#review-audio");
  $("#segments").replaceChildren(...segs.map((s) => {
    const b = el("button", { type: "button", dataset: { testid: "segment", id: String(s.id) } },
      `录音 ${s.segment} · ${s.status}${s.reason ? `: ${s.reason}` : ""}`);
    b.disabled = !(s.status === "done" || s.status === "recording");
    b.addEventListener("click", () => loadSegment(s.id));
    return b;
  }));
  const first = playable()[0];
  if (!first) {
    audio.removeAttribute("src");
    audio.hidden = true;
    $("#player-status").textContent = segs.length ? "录音不可播放 · no playable recording" : "未录音 · not recorded";
    return;
  }
  audio.hidden = false;
  loadSegment(first.id);
}

async function loadSegment(id, at = null) {
  const audio = $("#review-audio");
  state.segment = id;
  state.linkRetried = false;
  for (const b of document.querySelectorAll("#segments button")) b.classList.toggle("selected", b.dataset.id === String(id));
  try {
    const link = await api("POST", `/recordings/${id}/audio-link`);
    audio.src = link.url;
    $("#player-status").textContent = "";
    if (at != null) audio.addEventListener("loadedmetadata", () => { audio.currentTime = at; audio.play(); }, { once: true });
  } catch (err) {
    $("#player-status").textContent = `录音 · recording: ${message(err)}`;
  }
}

function seek(recordingId, at) {
  const audio = $("#review-audio");
  if (state.segment !== recordingId || !audio.src) { loadSegment(recordingId, at); return; }
  audio.currentTime = at;
  audio.play().catch(() => { /* autoplay refused: the position is set */ });
}

// Where the player is, on the call's axis: the segment's start plus the file's time, plus the
// pauses before it (the file holds none of them). Drawn in the recording lane.
function callTimeOf(recordingId, fileTime) {
  const r = state.review;
  const seg = r.stretches.find((s) => s.kind === "segment" && s.recording_id === recordingId);
  if (!seg) return null;
  let t = seg.start_s + fileTime;
  for (const p of r.stretches.filter((s) => s.kind === "pause" && s.recording_id === recordingId)
    .sort((a, b) => a.start_s - b.start_s)) {
    if (p.start_s <= t && p.end_s != null) t += p.end_s - p.start_s;
  }
  return t;
}

function drawCursor() {
  const lane = document.querySelector(".lane[data-lane=recording]");
  if (!lane || state.segment == null) return;
  const t = callTimeOf(state.segment, $("#review-audio").currentTime);
  let cursor = lane.querySelector(".cursor");
  if (!cursor) { cursor = el("div", { className: "cursor", dataset: { testid: "play-cursor" } }); lane.append(cursor); }
  cursor.style.left = `${(100 * (t ?? 0) / state.total).toFixed(3)}%`;
}

function wirePlayer() {
  const audio = $("#review-audio");
  audio.addEventListener("timeupdate", drawCursor);
  audio.addEventListener("seeked", drawCursor);
  audio.addEventListener("error", async () => {
    // An expired link (30 min) or a logout: ask a new one once, at the same place.
    if (state.segment == null || state.linkRetried) {
      $("#player-status").textContent = "录音无法播放 · the recording cannot be played";
      return;
    }
    const at = audio.currentTime;
    const id = state.segment;
    await loadSegment(id, at);
    state.linkRetried = true;
  });
}

// ----- the evaluation -------------------------------------------------------------------------

function currentForm() { return state.forms.find((f) => f.id === $("#form-select").value) ?? state.forms[0]; }

function renderForm() {
  const form = currentForm();
  const agents = state.review.agents;
  $("#agent-choice").hidden = agents.length < 2;
  $("#agent-select").replaceChildren(...agents.map((a) => el("option", { value: a }, a)));
  $("#evaluation-result").textContent = "";
  $("#evaluation-error").textContent = "";
  if (!form) { $("#evaluation-form").replaceChildren(el("p", { className: "muted" }, "无评分表 · no form")); return; }
  $("#evaluation-form").replaceChildren(...form.sections.map((s) => el("fieldset", { dataset: { section: s.id } },
    el("legend", {}, `${s.title} (${s.weight})`),
    ...s.questions.map((q) => {
      const values = q.scale === 1 ? [[1, "是 yes"], [0, "否 no"]]
        : Array.from({ length: q.scale + 1 }, (_, i) => [q.scale - i, String(q.scale - i)]);
      if (q.na) values.push(["na", "不适用 N/A"]);
      return el("div", { className: "question", dataset: { testid: "question", question: q.id } },
        el("div", {}, q.text, q.auto_fail ? el("span", { className: "auto-fail" }, " · 一票否决 automatic fail") : ""),
        el("div", { className: "answers" }, ...values.map(([v, label]) => el("label", {},
          el("input", { type: "radio", name: q.id, value: String(v), dataset: { answer: String(v) } }), label))));
    }))));
}

async function save() {
  const form = currentForm();
  $("#evaluation-error").textContent = "";
  const answers = {};
  for (const q of form.sections.flatMap((s) => s.questions)) {
    const picked = document.querySelector(`input[name="${CSS.escape(q.id)}"]:checked`);
    if (picked) answers[q.id] = picked.value === "na" ? "na" : Number(picked.value);
  }
  const body = { form_id: form.id, answers, comment: $("#evaluation-comment").value };
  if (state.review.agents.length > 1) body.agent_id = $("#agent-select").value;
  try {
    const saved = await api("POST", `/calls/${encodeURIComponent(state.review.call_id)}/evaluations`, body);
    $("#evaluation-result").textContent = `得分 · Score ${saved.score}${saved.auto_failed.length
      ? ` (一票否决 automatic fail: ${saved.auto_failed.join(", ")})` : ""}`;
    $("#evaluation-result").dataset.score = String(saved.score);
    $("#evaluation-result").dataset.id = String(saved.id);
    loadEvaluations();
  } catch (err) {
    $("#evaluation-error").textContent = message(err);
  }
}

async function loadEvaluations() {
  try {
    const found = await api("GET", `/evaluations?call_id=${encodeURIComponent(state.review.call_id)}`);
    $("#evaluations").replaceChildren(...found.evaluations.map((e) => el("tr", { dataset: { testid: "evaluation-row" } },
      el("td", { className: "num" }, when(e.created_at)), el("td", {}, e.agent_id ?? "—"),
      el("td", {}, e.evaluator), el("td", { className: "num" }, String(e.score)))));
  } catch (err) {
    $("#evaluation-error").textContent = message(err);
  }
}

// ----- start ----------------------------------------------------------------------------------

async function start() {
  let user = null;
  try { user = token() ? await me() : null; } catch { setToken(null); }
  if (!user) { location.href = "index.html"; return; }
  $("#who").textContent = user.display_name || user.username;
  wirePlayer();
  $("#call-search").addEventListener("input", renderCalls);
  $("#calls-refresh").addEventListener("click", loadCalls);
  $("#evaluation-save").addEventListener("click", save);
  $("#form-select").addEventListener("change", renderForm);
  try {
    state.forms = await api("GET", "/evaluation-forms");
  } catch (err) { $("#evaluation-error").textContent = message(err); }
  $("#form-select").replaceChildren(...state.forms.map((f) => el("option", { value: f.id }, `${f.title} (v${f.version})`)));
  await loadCalls();
  const wanted = new URLSearchParams(location.search).get("call");
  if (wanted) openCall(wanted);
  window.reviewDebug = { state };
}

start();
