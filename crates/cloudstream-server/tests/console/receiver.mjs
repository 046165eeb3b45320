// A tiny webhook receiver for the console's browser tests: a node HTTP server on
// 127.0.0.1 (a free port) that keeps every POST's body (`{"stream", "webhook", "records"}`)
// and answers 200.

import http from "node:http";

/** Starts the receiver: {url, posts, records, close()}. */
export async function startReceiver() {
  const posts = [];
  const records = [];
  const server = http.createServer((request, response) => {
    const chunks = [];
    request.on("data", (chunk) => chunks.push(chunk));
    request.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      let body = null;
      try {
        body = JSON.parse(text);
      } catch {
        body = { unparsed: text };
      }
      posts.push({ method: request.method, path: request.url, body });
      if (request.method === "POST" && Array.isArray(body?.records)) records.push(...body.records);
      response.writeHead(200, { "content-length": "0" });
      response.end();
    });
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    posts,
    records,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}
