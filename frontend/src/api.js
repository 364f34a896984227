// The API client: same-origin requests (the dev server proxies /api), the token in
// sessionStorage, and errors turned into one readable sentence.
const TOKEN = "genesis.token";

export const token = {
  get: () => sessionStorage.getItem(TOKEN),
  set: (value) => sessionStorage.setItem(TOKEN, value),
  clear: () => sessionStorage.removeItem(TOKEN),
};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function explain(status, body) {
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((e) => `${(e.loc || []).slice(-1)[0]}: ${e.msg}`).join("; ");
  }
  return `Request failed (HTTP ${status})`;
}

export async function request(method, path, { json, form } = {}) {
  const headers = {};
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = new URLSearchParams(form);
  }
  const current = token.get();
  if (current) headers.Authorization = `Bearer ${current}`;
  const response = await fetch(path, { method, headers, body });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new ApiError(response.status, explain(response.status, data));
  return data;
}

export const api = {
  register: (email, password) => request("POST", "/api/auth/register", { json: { email, password } }),
  login: (email, password) => request("POST", "/api/auth/login", { form: { username: email, password } }),
  me: () => request("GET", "/api/auth/me"),
  businesses: () => request("GET", "/api/businesses"),
  createBusiness: (fields) => request("POST", "/api/businesses", { json: fields }),
  ask: (businessId, question) =>
    request("POST", "/api/coaching/sessions", { json: { business_id: businessId, question } }),
};
