// REST calls to the CTI service with the login token; errors carry the server's reason.
const TOKEN_KEY = "desk.token";

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
  }
}

export function token() { return sessionStorage.getItem(TOKEN_KEY); }
export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

function authHeaders() {
  return token() ? { Authorization: `Bearer ${token()}` } : {};
}

export async function api(method, path, body, { raw = false } = {}) {
  const headers = authHeaders();
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = raw ? "text/csv" : "application/json";
    payload = raw ? body : JSON.stringify(body);
  }
  const response = await fetch(path, { method, headers, body: payload });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new ApiError(response.status, data?.detail ?? response.statusText);
  return data;
}

// A binary answer (e.g. a voicemail's WAV) as a Blob: media elements cannot send the bearer
// token themselves, so the page fetches it and plays it from a blob: URL.
export async function apiBlob(path) {
  const response = await fetch(path, { headers: authHeaders() });
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json())?.detail ?? detail; } catch { /* not JSON */ }
    throw new ApiError(response.status, detail);
  }
  return response.blob();
}

export async function login(username, password) {
  const data = await api("POST", "/auth/login", { username, password });
  setToken(data.token);
  return data.user;
}

// Ends the token on the server too (a copied token stops working), then forgets it here.
// The page logs out even when the server cannot be reached.
export async function logout() {
  if (token()) {
    try { await api("POST", "/auth/logout"); } catch (err) { console.warn("logout:", err.message); }
  }
  setToken(null);
}

export const me = () => api("GET", "/auth/me");
