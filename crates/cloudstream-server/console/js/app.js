// The console's shell: a hash router over the pages (each a module loaded when first
// shown), the token sign-in, and who is signed in, in the header.

import { ApiError, field, h, token, whoami } from "./lib.js";
import { destroyCharts } from "./charts.js";

/** `#/login`: asks for a bearer token and checks it with `GET /v1/whoami`. */
function login(el) {
  // Not a password field: a browser would offer to save the token in its password manager.
  const input = h("input", { type: "text", class: "secret", name: "token", autocomplete: "off", spellcheck: "false", placeholder: "cst_..." });
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

/** Frees what a page keeps open: its live tails and its charts. */
function leave(view) {
  for (const live of view.querySelectorAll(".tail")) live.stop?.();
  destroyCharts(view);
}

/** Which route is the latest: a page that finishes rendering after another began is dropped. */
let latest = 0;

async function route() {
  const el = document.getElementById("page");
  const mine = ++latest;
  leave(el);
  const hash = location.hash || "#/streams";
  const found = pages.find(([pattern]) => pattern.test(hash));
  // Each page renders into its own element, put in place only if no newer route began.
  const view = h("div", {});
  try {
    if (!found) {
      view.append(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/streams" }, "Streams")));
    } else {
      const render = await found[1]();
      await render(view, ...hash.match(found[0]).slice(1).map(decodeURIComponent));
    }
  } catch (e) {
    leave(view);
    if (mine === latest && e instanceof ApiError && e.status === 401) {
      location.hash = "#/login";
      return;
    }
    view.replaceChildren(h("h1", {}, "Error"), h("p", { class: "error" }, e.message));
  }
  if (mine !== latest) {
    leave(view);
    return;
  }
  el.replaceChildren(view);
}

window.addEventListener("hashchange", route);
signedIn();
route();
