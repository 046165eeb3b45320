// The console's shell: a hash router over the pages (each a module loaded when first
// shown), the token sign-in, and who is signed in, in the header.

import { ApiError, api, field, h, token, whoami } from "./lib.js";

/** `#/login`: asks for a bearer token and checks it with `GET /v1/whoami`. */
function login(el) {
  const input = h("input", { type: "password", name: "token", autocomplete: "off", placeholder: "cst_..." });
  const out = h("p", { class: "muted", role: "status" });
  const form = h("form", {
    onsubmit: async (event) => {
      event.preventDefault();
      token.set(input.value.trim());
      try {
        await whoami();
        await signedIn();
        location.hash = "#/streams";
      } catch (e) {
        token.clear();
        out.textContent = e.message;
        out.className = "error";
      }
    },
  }, field("Bearer token", input), h("button", { type: "submit" }, "Sign in"));
  const leave = token.get() && h("button", {
    type: "button",
    class: "quiet",
    onclick: async () => {
      token.clear();
      await signedIn().catch(() => {});
      out.textContent = "Signed out.";
    },
  }, "Sign out");
  el.replaceChildren(h("h1", {}, "Token"),
    h("p", { class: "muted" }, "Kept in this tab's session storage only, and sent as a bearer token with each call."),
    form, leave, out);
}

/** Shows who is signed in, in the header. */
async function signedIn() {
  const who = document.getElementById("who");
  try {
    const me = await whoami();
    who.textContent = !me.tokens_required ? "No token needed"
      : me.grants.map((g) => `${g.scope} on ${g.streams.join(", ")}`).join("; ");
  } catch {
    who.textContent = "Sign in";
  }
}

const pages = [
  [/^#\/login$/, async () => login],
  [/^#\/streams$/, async () => (await import("./streams.js")).list],
  [/^#\/streams\/([^/]+)$/, async () => (await import("./stream.js")).page],
  [/^#\/streams\/([^/]+)\/consumers$/, async () => (await import("./consumers.js")).page],
  [/^#\/streams\/([^/]+)\/(webhooks|deliveries|aggregations)$/, async () => (await import("./jobs.js")).page],
  [/^#\/server$/, async () => (await import("./server.js")).page],
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
signedIn();
route();
