// The desk socket: authenticates with the token in its first message (never in the URL, which
// proxies and access logs keep), keeps per-topic state from snapshots and deltas, checks
// sequence numbers (a gap asks for a resync), and reconnects with backoff. After a reconnect
// the server sends a fresh snapshot, so the page never shows stale state.

export class DeskSocket extends EventTarget {
  constructor(tokenProvider) {
    super();
    this.tokenProvider = tokenProvider;
    this.topics = new Map(); // topic -> { seq, items: Map(key -> message) }
    this.ws = null;
    this.backoff = 250;
    this.closedByUser = false;
    this.connected = false;
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    return `${scheme}://${location.host}/ws/desk`;
  }

  open() {
    this.closedByUser = false;
    const ws = new WebSocket(this.url());
    this.ws = ws;
    ws.onopen = () => { ws.send(JSON.stringify({ type: "auth", token: this.tokenProvider() })); };
    ws.onmessage = (ev) => this.handle(JSON.parse(ev.data));
    ws.onclose = (ev) => {
      this.connected = false;
      this.emit("status", { online: false, code: ev.code });
      if (ev.code === 4401 || ev.code === 1008) { this.emit("unauthorized", { reason: ev.reason }); return; }
      if (!this.closedByUser) {
        setTimeout(() => this.open(), this.backoff);
        this.backoff = Math.min(this.backoff * 2, 5000);
      }
    };
  }

  close() { this.closedByUser = true; this.ws?.close(); }

  send(message) { if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message)); }

  emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  handle(msg) {
    if (msg.type === "hello") {
      // Online only once the server took the token (it answers the auth message with hello).
      this.backoff = 250;
      this.connected = true;
      this.emit("status", { online: true });
      this.emit("hello", msg);
      return;
    }
    if (msg.type === "pong" || msg.type === "error") { this.emit(msg.type, msg); return; }
    const topic = msg.topic;
    if (!topic) return;
    if (msg.type === "snapshot") {
      const items = new Map(msg.items.map((item) => [item.key, item]));
      this.topics.set(topic, { seq: msg.seq, items });
      this.emit("snapshot", { topic, items });
      return;
    }
    const state = this.topics.get(topic);
    if (!state) return; // deltas before our snapshot are already in it
    if (msg.seq <= state.seq) return; // duplicate
    if (msg.seq !== state.seq + 1) {
      this.send({ type: "resync", topic });
      return;
    }
    state.seq = msg.seq;
    if (msg.key !== undefined) {
      if (msg.op === "remove") state.items.delete(msg.key);
      else state.items.set(msg.key, msg);
    }
    this.emit("delta", { topic, message: msg, items: state.items });
  }

  items(topic) { return this.topics.get(topic)?.items ?? new Map(); }
}
