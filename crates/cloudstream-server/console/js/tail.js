// The live tail of a stream: Server-Sent Events read with fetch (EventSource cannot send
// the bearer token), paused by closing the connection and resumed from the last record's
// cursor (Last-Event-ID), so nothing is missed; records shown newest first, filtered by key,
// header or text.

import { field, h, headers as withToken, payload, streamPath } from "./lib.js";

/** Reads `GET path` as SSE until `signal` aborts: each event's name, data and id. */
async function events(path, lastEventId, signal, onEvent) {
  const headers = withToken({ accept: "text/event-stream" });
  if (lastEventId) headers["last-event-id"] = lastEventId;
  const response = await fetch(path, { headers, signal });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body?.error?.message ?? response.statusText);
  }
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

/** The tail of stream `name` into a new element, from the latest record on. */
export function tail(name) {
  const rows = h("tbody");
  const filter = h("input", { name: "filter", placeholder: "key, header or text" });
  const status = h("p", { class: "muted" }, "Connecting…");
  const toggle = h("button", { type: "button" }, "Pause");
  const kept = [];
  let cursor = null;
  let controller = null;

  const matches = (record) => {
    const q = filter.value.trim();
    if (!q) return true;
    return (record.key ?? "").includes(q) ||
      Object.entries(record.headers ?? {}).some(([k, v]) => k.includes(q) || v.includes(q)) ||
      payload(record).includes(q);
  };
  const row = (record) => h("tr", {},
    h("td", {}, `${record.partition}:${record.sequence}`),
    h("td", {}, record.append_time),
    h("td", {}, record.key ?? ""),
    h("td", {}, h("pre", {}, payload(record))));
  const redraw = () => rows.replaceChildren(...kept.filter(matches).slice(0, 200).map(row));
  filter.addEventListener("input", redraw);

  const start = () => {
    controller = new AbortController();
    toggle.textContent = "Pause";
    const from = cursor ? "" : "?from=latest";
    events(streamPath(name, `/tail${from}`), cursor, controller.signal, (event) => {
      if (event.id) cursor = event.id;
      if (event.name === "open") status.textContent = "Live.";
      if (event.name === "error") status.textContent = JSON.parse(event.data)?.error?.message ?? "error";
      if (event.name !== "record") return;
      const record = JSON.parse(event.data);
      kept.unshift(record);
      kept.length = Math.min(kept.length, 1000);
      if (matches(record)) {
        rows.prepend(row(record));
        while (rows.children.length > 200) rows.lastChild.remove();
      }
    }).catch((e) => {
      if (e.name !== "AbortError") status.textContent = e.message;
    });
  };
  toggle.addEventListener("click", () => {
    if (controller) {
      controller.abort();
      controller = null;
      toggle.textContent = "Resume";
      status.textContent = "Paused: resuming goes on from the last record shown.";
    } else {
      start();
    }
  });
  start();
  const el = h("div", { class: "tail" },
    h("div", { class: "bar" }, toggle, field("Filter", filter)), status,
    h("table", {}, h("thead", {}, h("tr", {}, ["Position", "Appended", "Key", "Payload"].map((t) => h("th", {}, t)))), rows));
  // Stops with the page: the next page's render replaces this element.
  el.stop = () => controller?.abort();
  return el;
}

