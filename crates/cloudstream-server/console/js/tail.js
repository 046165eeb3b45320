// The live tail of a stream: Server-Sent Events read with fetch (EventSource cannot send
// the bearer token), paused by closing the connection and resumed from the last record's
// cursor (Last-Event-ID), so nothing is missed; reconnected the same way when the server
// ends it; records shown newest first, filtered by key, header or text.

import { field, h, payload, recordColumns, request, streamPath, tableHead, tableRow } from "./lib.js";

/** Records kept for the filter, at most, and their bytes at most (records can be 1 MiB). */
const KEPT = 1000;
const KEPT_BYTES = 8 << 20;
/** Rows shown at most. */
const SHOWN = 200;

/** Reads `GET path` as SSE until `signal` aborts or the server ends it: each event's name, data and id. */
async function events(path, lastEventId, signal, onEvent) {
  const response = await request("GET", path, undefined, {
    headers: { accept: "text/event-stream", ...(lastEventId ? { "last-event-id": lastEventId } : {}) },
    signal,
  });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = { name: "message", data: "", id: null };
      for (const line of block.split("\n")) {
        const [field, ...rest] = line.split(":");
        const text = rest.join(":").replace(/^ /, "");
        if (field === "event") event.name = text;
        else if (field === "data") event.data += text;
        else if (field === "id") event.id = text;
      }
      onEvent(event);
    }
  }
}

/**
 * The tail of stream `name` into a new element, from the latest record on; `why` (a reason,
 * or null) says the token may not read it. `el.stop()` closes it for good; it also stops
 * itself once its element has left the page.
 */
export function tail(name, why) {
  const rows = h("tbody");
  const filter = h("input", { name: "filter", placeholder: "key, header or text" });
  const status = h("p", { class: "muted", role: "status" }, why ? `The live tail ${why}.` : "Connecting…");
  const toggle = h("button", { type: "button", disabled: Boolean(why) }, "Pause");
  const el = h("div", { class: "tail" },
    h("div", { class: "bar" }, toggle, field("Filter", filter)), status,
    h("table", {}, tableHead(recordColumns), rows));
  const kept = [];
  let keptBytes = 0;
  let cursor = null;
  let controller = null;
  let stopped = Boolean(why);
  let seen = false;

  const matches = (record) => {
    const q = filter.value.trim();
    if (!q) return true;
    return (record.key ?? "").includes(q) ||
      Object.entries(record.headers ?? {}).some(([k, v]) => k.includes(q) || v.includes(q)) ||
      payload(record).includes(q);
  };
  const redraw = () => rows.replaceChildren(...kept.map((k) => k.record).filter(matches).slice(0, SHOWN)
    .map((r) => tableRow(r, recordColumns)));
  filter.addEventListener("input", redraw);

  const keep = (record, bytes) => {
    kept.unshift({ record, bytes });
    keptBytes += bytes;
    while (kept.length > KEPT || (keptBytes > KEPT_BYTES && kept.length > 1)) keptBytes -= kept.pop().bytes;
  };
  const start = () => {
    if (stopped) return;
    controller = new AbortController();
    const mine = controller;
    toggle.textContent = "Pause";
    const from = cursor ? "" : "?from=latest";
    events(streamPath(name, `/tail${from}`), cursor, mine.signal, (event) => {
      if (!el.isConnected && seen) return mine.abort();
      if (event.id) cursor = event.id;
      if (event.name === "open") status.textContent = "Live.";
      if (event.name === "error") status.textContent = JSON.parse(event.data)?.error?.message ?? "error";
      if (event.name !== "record") return;
      const record = JSON.parse(event.data);
      keep(record, event.data.length);
      if (matches(record)) {
        rows.prepend(tableRow(record, recordColumns));
        while (rows.children.length > SHOWN) rows.lastChild.remove();
      }
    }).then(() => again("The server ended the tail"), (e) => {
      if (e.name === "AbortError") return;
      if (e.status === 401) location.hash = "#/login";
      // Refused (4xx): said once. Lost (a network error, a 5xx): tried again.
      if (e.status && e.status < 500) status.textContent = e.message;
      else again(e.message);
    });
    /** Goes on from the cursor a moment later, unless paused or stopped since. */
    const again = (why) => {
      if (controller !== mine || mine.signal.aborted) return;
      status.textContent = `${why}: reconnecting…`;
      setTimeout(() => controller === mine && !mine.signal.aborted && start(), 1000);
    };
  };
  toggle.addEventListener("click", () => {
    if (controller) {
      controller.abort();
      controller = null;
      toggle.textContent = "Resume";
      status.textContent = "Paused: resuming goes on after the last record received.";
    } else {
      start();
    }
  });
  el.stop = () => {
    stopped = true;
    controller?.abort();
    controller = null;
  };
  // A tail whose page is gone stops, even when no record comes to notice it.
  const watch = setInterval(() => {
    if (el.isConnected) seen = true;
    else if (seen || stopped) {
      el.stop();
      clearInterval(watch);
    }
  }, 1000);
  start();
  return el;
}
