// REST calls to /api/v1/ with the session cookie. Unsafe methods carry Django's CSRF token,
// which the page renders into <meta name="csrf-token"> (CONTRACT, "Authentication").

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.detail || `Request failed (HTTP ${status})`);
    this.status = status;
    this.code = body?.code || (status === 0 ? "network" : `http_${status}`);
    this.fields = body?.fields || {};
  }

  /** The first field error, or the detail: what to show a person. */
  get message_for_people() {
    const first = Object.values(this.fields)[0];
    return (Array.isArray(first) && first[0]) || this.message;
  }
}

const csrfToken = () => document.querySelector('meta[name="csrf-token"]')?.content || "";

export async function request(method, path, body) {
  const headers = { Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (method !== "GET") headers["X-CSRFToken"] = csrfToken();
  let response;
  try {
    response = await fetch(`/api/v1/${path}`, init);
  } catch {
    throw new ApiError(0, { detail: "Can't reach Parley. Check your connection." });
  }
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** "a=1&b=2" from an object, skipping undefined and null values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null) search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export const api = {
  get: (path, params = {}) => request("GET", `${path}${query(params)}`),
  post: (path, body = {}) => request("POST", path, body),
  put: (path, body = {}) => request("PUT", path, body),
  patch: (path, body = {}) => request("PATCH", path, body),
  delete: (path) => request("DELETE", path),
};

/** Runs `worker` over `items` with at most `limit` at a time (keeps page loads polite). */
export async function inBatches(items, limit, worker) {
  const queue = [...items];
  const runners = Array.from({ length: Math.min(limit, queue.length) }, async () => {
    while (queue.length) {
      const item = queue.shift();
      try { await worker(item); } catch (error) { console.warn("parley:", error); }
    }
  });
  await Promise.all(runners);
}
