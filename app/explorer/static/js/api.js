// The public /v1 API, with the bearer key the person typed (sessionStorage, this tab only).

const KEY = "spectral-topics-api-key";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY);
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

let onUnauthorized = () => {};
export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

function headers(extra) {
  const result = { ...extra };
  const key = apiKey();
  if (key) result.Authorization = `Bearer ${key}`;
  return result;
}

async function send(method, path, { json, form, accept = "json" } = {}) {
  const init = { method, headers: headers(json !== undefined ? { "content-type": "application/json" } : {}) };
  if (json !== undefined) init.body = JSON.stringify(json);
  if (form !== undefined) init.body = form;
  const response = await fetch(path, init);
  if (!response.ok) {
    let code = "error";
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && body.error) ({ code, message } = body.error);
    } catch (_) { /* not JSON */ }
    if (response.status === 401) onUnauthorized(message);
    throw new ApiError(response.status, code, message);
  }
  if (accept === "blob") return response.blob();
  if (response.status === 204) return null;
  return response.json();
}

export const api = {
  get: (path) => send("GET", path),
  post: (path, json) => send("POST", path, { json }),
  put: (path, json) => send("PUT", path, { json }),
  upload: (path, form) => send("POST", path, { form }),
  blob: (path) => send("GET", path, { accept: "blob" }),
};

export const enc = encodeURIComponent;
