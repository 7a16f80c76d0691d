// Optional WebRTC softphone (JsSIP over WSS). Agents may use a desk SIP phone instead: then
// this module is never loaded. Settings live in localStorage ("desk.softphone").
// The CTI rings the agent's endpoint; an incoming SIP call is matched to the pop by the
// X-CTI-Call-Id header when the PBX sets it, else it is the only ringing session.

const KEY = "desk.softphone";

export function softphoneSettings() {
  try { return JSON.parse(localStorage.getItem(KEY) || "null"); } catch { return null; }
}

export function saveSoftphoneSettings(settings) {
  if (settings) localStorage.setItem(KEY, JSON.stringify(settings));
  else localStorage.removeItem(KEY);
}

export class Softphone extends EventTarget {
  constructor(settings) {
    super();
    this.settings = settings; // { wssUrl, sipUri, password }
    this.ua = null;
    this.sessions = new Map(); // cti call id (or SIP call-id) -> RTCSession
    this.audio = new Audio();
    this.audio.autoplay = true;
  }

  emit(type, detail = {}) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  async start() {
    const { default: JsSIP } = await import("../vendor/jssip.min.js");
    const socket = new JsSIP.WebSocketInterface(this.settings.wssUrl);
    this.ua = new JsSIP.UA({
      sockets: [socket], uri: this.settings.sipUri, password: this.settings.password,
      register: true, session_timers: false,
    });
    this.ua.on("registered", () => this.emit("status", { registered: true }));
    this.ua.on("unregistered", () => this.emit("status", { registered: false }));
    this.ua.on("registrationFailed", (e) => this.emit("status", { registered: false, error: e.cause }));
    this.ua.on("newRTCSession", ({ session, originator, request }) => {
      if (originator !== "remote") return;
      const ctiId = request?.getHeader?.("X-CTI-Call-Id") || session.id;
      this.sessions.set(ctiId, session);
      session.on("peerconnection", ({ peerconnection }) => {
        peerconnection.addEventListener("track", (ev) => { this.audio.srcObject = ev.streams[0]; });
      });
      session.on("ended", () => this.sessions.delete(ctiId));
      session.on("failed", () => this.sessions.delete(ctiId));
      this.emit("incoming", { callId: ctiId });
    });
    this.ua.start();
  }

  stop() { this.ua?.stop(); this.ua = null; }

  // Answer the SIP leg for this CTI call (or the only ringing one). Returns false if none.
  answer(callId) {
    const session = this.sessions.get(callId)
      ?? [...this.sessions.values()].find((s) => s.isInProgress());
    if (!session || !session.isInProgress()) return false;
    session.answer({ mediaConstraints: { audio: true, video: false } });
    return true;
  }

  mute(on) {
    for (const s of this.sessions.values()) on ? s.mute({ audio: true }) : s.unmute({ audio: true });
  }
}
