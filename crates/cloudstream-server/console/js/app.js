// The console's shell: a hash router over pages, a client of the server's /v1 API with the
// token kept in this tab's session storage (never in a URL), and DOM built with
// textContent only (payloads are untrusted).

const TOKEN = "cloudstream.token";

/** An error the API answered with: its status, code and message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Calls the API: `method path` with an optional JSON body; the JSON answer, or null. */
export async function api(method, path, json) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN);
  if (token) headers.authorization = `Bearer ${token}`;
  if (json !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: json === undefined ? undefined : JSON.stringify(json),
  });
  const text = await response.text();
  const body = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const error = body?.error ?? {};
    throw new ApiError(response.status, error.code ?? "error", error.message ?? response.statusText);
  }
  return body;
}

/** An element: `h("td", {class: "num"}, "12")`; children are nodes or text. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (value !== false && value !== undefined && value !== null) el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** A table of `rows`, each shown by `columns`: [heading, row => cell, {num}]. */
export function table(rows, columns) {
  return h("table", {},
    h("thead", {}, h("tr", {}, columns.map(([name, , opts]) => h("th", { class: opts?.num ? "num" : null }, name)))),
    h("tbody", {}, rows.map((row) => h("tr", {}, columns.map(([, cell, opts]) => h("td", { class: opts?.num ? "num" : null }, cell(row)))))));
}

/** What the token may do (`GET /v1/whoami`), cached until the token changes. */
let grants = null;
export async function whoami() {
  grants ??= await api("GET", "/v1/whoami");
  return grants;
}

/** Whether the token has `scope` (read, write, admin) on `stream`. */
export function can(who, scope, stream) {
  if (!who.tokens_required) return true;
  return (who.grants ?? []).some((g) =>
    (g.scope === scope || g.scope === "admin") &&
    g.streams.some((p) => (p.endsWith("*") ? stream.startsWith(p.slice(0, -1)) : p === stream)));
}

function login(el) {
  const input = h("input", { type: "password", name: "token", autocomplete: "off", placeholder: "cst_..." });
  const status = h("p", { class: "muted" });
  const form = h("form", {
    onsubmit: async (event) => {
      event.preventDefault();
      sessionStorage.setItem(TOKEN, input.value.trim());
      grants = null;
      try {
        const who = await whoami();
        status.textContent = who.tokens_required
          ? `Signed in: ${who.grants.map((g) => `${g.scope} on ${g.streams.join(", ")}`).join("; ")}`
          : "This server asks for no token.";
        location.hash = "#/streams";
      } catch (e) {
        sessionStorage.removeItem(TOKEN);
        status.textContent = e.message;
        status.className = "error";
      }
    },
  }, h("label", {}, "Bearer token", input), h("button", { type: "submit" }, "Sign in"));
  el.replaceChildren(h("h1", {}, "Token"), form, status);
}

const pages = [
  [/^#\/login$/, () => login],
  [/^#\/streams$/, async () => (await import("./streams.js")).list],
  [/^#\/streams\/([^/]+)$/, async () => (await import("./streams.js")).one],
];

async function route() {
  const el = document.getElementById("page");
  // What the last page keeps open (a live tail) stops with it.
  for (const live of el.querySelectorAll(".tail")) live.stop?.();
  const hash = location.hash || "#/streams";
  for (const [pattern, load] of pages) {
    const match = hash.match(pattern);
    if (!match) continue;
    try {
      const render = await load();
      await render(el, ...match.slice(1).map(decodeURIComponent));
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        location.hash = "#/login";
        return;
      }
      el.replaceChildren(h("h1", {}, "Error"), h("p", { class: "error" }, e.message));
    }
    return;
  }
  el.replaceChildren(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/streams" }, "Streams")));
}

window.addEventListener("hashchange", route);
route();
