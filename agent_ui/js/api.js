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

export async function api(method, path, body, { raw = false } = {}) {
  const headers = {};
  if (token()) headers.Authorization = `Bearer ${token()}`;
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

export async function login(username, password) {
  const data = await api("POST", "/auth/login", { username, password });
  setToken(data.token);
  return data.user;
}

export const me = () => api("GET", "/auth/me");
