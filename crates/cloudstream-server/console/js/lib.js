// What every page shares: the client of the server's /v1 API (the bearer token kept in this
// tab's session storage, never in a URL), what the token may do, DOM built with textContent
// only (payloads are untrusted), and the confirmation dialog.

const TOKEN = "cloudstream.token";

/** The token this tab signed in with, if any. */
export const token = {
  get: () => sessionStorage.getItem(TOKEN),
  set: (value) => {
    sessionStorage.setItem(TOKEN, value);
    grants = null;
  },
  clear: () => {
    sessionStorage.removeItem(TOKEN);
    grants = null;
  },
};

/** An error the API answered with: its status, code and message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The request headers every call carries: the token, and `extra`. */
export function headers(extra = {}) {
  const t = token.get();
  return t ? { ...extra, authorization: `Bearer ${t}` } : extra;
}

/**
 * `method path` with the token and an optional JSON body (or `{ndjson: text}`): the response,
 * or the API's error (an ApiError) for one that is not a success.
 */
export async function request(method, path, json, extra = {}) {
  const ndjson = json?.ndjson;
  const type = ndjson !== undefined ? "application/x-ndjson" : json !== undefined ? "application/json" : null;
  const response = await fetch(path, {
    method,
    headers: headers(type ? { ...extra.headers, "content-type": type } : extra.headers),
    body: ndjson ?? (json === undefined ? undefined : JSON.stringify(json)),
    signal: extra.signal,
  });
  if (response.ok) return response;
  const body = await response.json().catch(() => null);
  const error = body?.error ?? {};
  throw new ApiError(response.status, error.code ?? "error", error.message ?? response.statusText);
}

/** Calls the API (see `request`): the JSON answer, or null. */
export async function api(method, path, json) {
  const text = await (await request(method, path, json)).text();
  return text ? JSON.parse(text) : null;
}

/** `GET path` as text (the Prometheus metrics). */
export async function text(path) {
  return (await request("GET", path)).text();
}

/** The path of stream `name`, and of `rest` below it. */
export const streamPath = (name, rest = "") => `/v1/streams/${encodeURIComponent(name)}${rest}`;

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

/** A labelled field: `<label>Text <input></label>`. */
export const field = (text, input) => h("label", {}, text, input);

/** One table row of `row`, shown by `columns`. */
export const tableRow = (row, columns) =>
  h("tr", {}, columns.map(([, cell, opts]) => h("td", { class: opts?.num ? "num" : null }, cell(row))));

/** The head of a table of `columns`. */
export const tableHead = (columns) =>
  h("thead", {}, h("tr", {}, columns.map(([name, , opts]) => h("th", { class: opts?.num ? "num" : null }, name))));

/** A table of `rows`, each shown by `columns`: [heading, row => cell, {num}]. */
export function table(rows, columns, empty = "None yet.") {
  if (rows.length === 0) return h("p", { class: "muted" }, empty);
  return h("table", {}, tableHead(columns), h("tbody", {}, rows.map((row) => tableRow(row, columns))));
}

/** A status line under a form: `show(text)`, `fail(error)`. */
export function status() {
  const el = h("p", { class: "muted", role: "status" });
  el.show = (message) => {
    el.textContent = message;
    el.className = "muted";
  };
  el.fail = (error) => {
    el.textContent = error.message ?? String(error);
    el.className = "error";
  };
  return el;
}

/** A form whose submit runs `action` and shows its failure in `out`. */
export function form(action, out, ...children) {
  return h("form", {
    onsubmit: async (event) => {
      event.preventDefault();
      try {
        await action();
      } catch (e) {
        out.fail(e);
      }
    },
  }, ...children);
}

/** What the token may do (`GET /v1/whoami`), cached until the token changes. */
let grants = null;
export async function whoami() {
  if (grants) return grants;
  const asked = token.get();
  const answer = await api("GET", "/v1/whoami");
  // The token changed while the call was in flight (a sign-out): not this token's grants.
  if (token.get() === asked) grants = answer;
  return answer;
}

/**
 * Whether the token has `scope` (read, write, admin) on `stream` (on some stream if omitted),
 * as the server decides it: admin includes the others; write does not include read.
 */
export function can(who, scope, stream) {
  if (!who.tokens_required) return true;
  return (who.grants ?? []).some((g) =>
    (g.scope === scope || g.scope === "admin") &&
    (stream === undefined || g.streams.some((p) => (p.endsWith("*") ? stream.startsWith(p.slice(0, -1)) : p === stream))));
}

/** Why the token may not use `scope` on `stream`, or null if it may. */
export const gate = (who, scope, stream) => (can(who, scope, stream) ? null : `needs the ${scope} scope`);

/** A button that runs `onclick`, disabled where `why` (a reason, or null) says it may not be. */
export function button(text, why, onclick, attrs = {}) {
  return h("button", { type: attrs.type ?? "button", disabled: Boolean(why), title: why, onclick, ...attrs }, text);
}

/**
 * Asks before something that cannot be undone: a modal dialog with `body` (nodes), and a
 * `confirm` button, enabled only once `typed` (if given) is typed. Resolves true if confirmed.
 */
export function confirm(title, body, confirmText, typed) {
  return new Promise((resolve) => {
    const input = typed === undefined ? null : h("input", { autocomplete: "off" });
    const yes = h("button", { type: "submit", disabled: typed !== undefined, class: "danger" }, confirmText);
    const dialog = h("dialog", {},
      h("form", { method: "dialog" },
        h("h2", {}, title), body,
        input && field("Type the name to confirm", input),
        h("div", { class: "bar" }, yes, h("button", { type: "button", class: "quiet", onclick: () => dialog.close("no") }, "Cancel"))));
    input?.addEventListener("input", () => (yes.disabled = input.value !== typed));
    yes.addEventListener("click", () => (dialog.returnValue = "yes"));
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "yes");
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** Bytes as B, KiB, MiB or GiB. */
export function bytes(n) {
  if (n == null) return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

/** Most characters of a payload shown: a large record must not hang the page. */
const SHOWN = 4096;
const cut = (text) => (text.length > SHOWN ? `${text.slice(0, SHOWN)} …(${text.length} characters)` : text);

/** A record's payload as shown: JSON pretty-printed, text as it is, bytes as hex and base64. */
export function payload(record) {
  if (record.payload_base64 != null) {
    const raw = atob(record.payload_base64);
    const hex = Array.from(raw.slice(0, 256), (c) => c.charCodeAt(0).toString(16).padStart(2, "0")).join(" ");
    return `${raw.length} bytes\nhex ${hex}${raw.length > 256 ? " …" : ""}\nbase64 ${cut(record.payload_base64)}`;
  }
  return cut(typeof record.payload === "string" ? record.payload : JSON.stringify(record.payload, null, 2));
}

/** The columns of a record in a table: position, append time, key, headers, payload. */
export const recordColumns = [
  ["Position", (r) => r.position ?? `${r.partition}:${r.sequence}`],
  ["Appended", (r) => r.append_time],
  ["Key", (r) => r.key ?? ""],
  ["Headers", (r) => h("pre", {}, Object.entries(r.headers ?? {}).map(([k, v]) => `${k}: ${v}`).join("\n"))],
  ["Payload", (r) => h("pre", {}, payload(r))],
];

/** `fn` over `items`, at most `limit` at a time (a page never floods the server). */
export async function mapLimit(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/**
 * Runs `tick` now and `ms` after each run ends, while `el` is on the page (a slow server is
 * not asked again before it answered). A failure shows in `out` until a run succeeds; a 401
 * sends the user to sign in.
 */
export function poll(el, ms, tick, out) {
  const started = Date.now();
  const run = async () => {
    try {
      await tick();
      if (out?.polled) out.show("");
      if (out) out.polled = false;
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) location.hash = "#/login";
      out?.fail(e);
      if (out) out.polled = true;
    }
    // A page is put in place once it has rendered: give it a moment to be.
    if (el.isConnected || Date.now() - started < 5000) setTimeout(run, ms);
  };
  run();
}

/** A time typed by the user (RFC 3339, or as the browser reads dates); throws if it is none. */
export function parseTime(text) {
  const time = new Date(text.trim());
  if (!text.trim() || Number.isNaN(time.getTime())) throw new Error(`"${text}" is not a time`);
  return time;
}

/** Runs `action`, showing its failure in `out`. */
export async function attempt(out, action) {
  try {
    await action();
  } catch (e) {
    out.fail(e);
  }
}
