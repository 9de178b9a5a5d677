/// The pages `serve` answers for people, each one self-contained (inline style and script, no external
/// assets, no build step), talking to the same JSON routes any client uses.

/// Shared look of both pages.
private let pageStyle = """
:root { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #1c1e21; background: #fafafa; }
body { max-width: 60rem; margin: 0 auto; padding: 1rem 1.25rem 3rem; }
header { display: flex; align-items: baseline; gap: 1rem; border-bottom: 1px solid #ddd; margin-bottom: 1rem; }
header h1 { font-size: 1.25rem; margin: .5rem 0; }
header a { color: #555; }
input, select, button, textarea { font: inherit; padding: .35rem .5rem; border: 1px solid #bbb; border-radius: 4px; background: #fff; }
button { background: #1a56db; color: #fff; border-color: #1a56db; cursor: pointer; }
button:disabled { background: #999; border-color: #999; }
.error { color: #b00020; white-space: pre-wrap; }
.muted { color: #666; font-size: .9rem; }
code, pre, textarea { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: .85rem; }
mark { background: #fff0a0; padding: 0 1px; }
"""

/// Shared script of both pages: an element with a class and text.
private let pageScript = """
function element(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
"""

/// GET /: search a served index in any mode, optionally reranked, and read each hit's score, headline and snippet.
enum SearchPage {
    static let html = """
    <!doctype html>
    <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
    <title>gemma-encoder search</title>
    <style>\(pageStyle)
    form { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; margin-bottom: 1rem; }
    #q { flex: 1 1 20rem; font-size: 1.05rem; }
    #k { width: 4rem; }
    ol#results { list-style: none; padding: 0; }
    ol#results li { background: #fff; border: 1px solid #e3e3e3; border-radius: 6px; padding: .6rem .8rem; margin-bottom: .5rem; }
    .hit-top { display: flex; gap: .75rem; align-items: baseline; }
    .rank { color: #888; min-width: 1.5rem; text-align: right; }
    .score { font-variant-numeric: tabular-nums; color: #555; }
    .id { font-weight: 600; }
    .headline { color: #222; }
    .snippet { margin: .3rem 0 0 2.25rem; color: #333; line-height: 1.4; }
    </style></head>
    <body>
    <header><h1>gemma-encoder search</h1><span class="muted" id="served"></span><a href="/docs">API</a></header>
    <form id="search">
      <input id="q" name="q" type="search" placeholder="Search…" autofocus autocomplete="off" required>
      <select id="index" name="index" title="index"></select>
      <select id="mode" name="mode" title="mode">
        <option value="">best mode</option><option value="hybrid">hybrid</option>
        <option value="vector">vector</option><option value="keyword">keyword</option>
      </select>
      <label class="muted"><input id="rerank" type="checkbox"> rerank</label>
      <label class="muted">k <input id="k" type="number" min="1" max="100" value="10"></label>
      <input id="key" type="password" placeholder="API key" hidden>
      <button id="go" type="submit">Search</button>
    </form>
    <div id="status" class="muted"></div>
    <ol id="results"></ol>
    <script>
    "use strict";
    const $ = (id) => document.getElementById(id);
    function headers() {
      const h = { "Content-Type": "application/json" };
      if ($("key").value) h["Authorization"] = "Bearer " + $("key").value;
      return h;
    }
    // Text with the [start, end) ranges (UTF-16 offsets, as the server gives them) wrapped in <mark>.
    function marked(text, ranges) {
      const out = document.createDocumentFragment();
      let at = 0;
      for (const [start, end] of ranges) {
        out.append(text.slice(at, start));
        const m = document.createElement("mark");
        m.textContent = text.slice(start, end);
        out.append(m);
        at = end;
      }
      out.append(text.slice(at));
      return out;
    }
    \(pageScript)
    async function loadInfo() {
      const r = await fetch("/info", { headers: headers() });
      if (r.status === 401) { $("key").hidden = false; $("status").textContent = "This server needs an API key."; return; }
      const info = await r.json();
      const names = info.indexes || [];
      $("index").replaceChildren(...names.map((n) => { const o = element("option", "", n); o.value = n; return o; }));
      $("rerank").disabled = !info.reranker;
      $("rerank").parentElement.title = info.reranker ? "rerank with " + info.reranker : "no reranker is loaded";
      $("served").textContent = names.length ? names.length + (names.length === 1 ? " index" : " indexes") : "no index is served";
      if (!names.length) $("go").disabled = true;
    }
    async function search(event) {
      event.preventDefault();
      const body = { query: $("q").value, k: Number($("k").value) || 10, rerank: $("rerank").checked };
      if ($("index").value) body.index = $("index").value;
      if ($("mode").value) body.mode = $("mode").value;
      $("status").textContent = "searching…";
      $("status").className = "muted";
      const started = performance.now();
      try {
        const r = await fetch("/search", { method: "POST", headers: headers(), body: JSON.stringify(body) });
        const answer = await r.json();
        if (!r.ok) {
          if (r.status === 401) $("key").hidden = false;
          throw new Error(answer.error || r.statusText);
        }
        const ms = Math.round(performance.now() - started);
        $("status").textContent = answer.results.length + " results, " + answer.mode + (body.rerank ? ", reranked" : "") +
          ", index " + answer.index + " (" + ms + " ms)";
        $("results").replaceChildren(...answer.results.map((hit, i) => {
          const li = element("li", "hit");
          const top = element("div", "hit-top");
          top.append(element("span", "rank", String(i + 1)), element("span", "score", hit.score.toFixed(4)),
                     element("span", "id", hit.id), element("span", "headline", hit.summary ? hit.summary.headline : ""));
          const snippet = element("div", "snippet");
          if (hit.summary) snippet.append(marked(hit.summary.snippet, hit.summary.highlights));
          else snippet.textContent = hit.text.slice(0, 200);
          li.append(top, snippet);
          return li;
        }));
      } catch (e) {
        $("status").textContent = String(e.message || e);
        $("status").className = "error";
        $("results").replaceChildren();
      }
    }
    // The search in the address (?q=…&mode=…&index=…&rerank=1&k=…): shareable, and run on load.
    function fromAddress() {
      const p = new URLSearchParams(location.search);
      if (p.get("mode") !== null) $("mode").value = p.get("mode");
      if (p.get("index") !== null) $("index").value = p.get("index");
      if (p.get("k") !== null) $("k").value = p.get("k");
      $("rerank").checked = p.get("rerank") === "1" && !$("rerank").disabled;
      if (p.get("q")) { $("q").value = p.get("q"); $("search").requestSubmit(); }
    }
    function toAddress() {
      const p = new URLSearchParams({ q: $("q").value });
      for (const id of ["mode", "index"]) if ($(id).value) p.set(id, $(id).value);
      if ($("k").value !== "10") p.set("k", $("k").value);
      if ($("rerank").checked) p.set("rerank", "1");
      history.replaceState(null, "", "?" + p.toString());
    }
    $("search").addEventListener("submit", (event) => { toAddress(); search(event); });
    $("key").addEventListener("change", loadInfo);
    loadInfo().then(fromAddress);
    </script>
    </body></html>
    """
}

/// GET /docs: /openapi.json rendered — each route's summary, request and response fields, error statuses, and
/// its example request with a button that sends it to this server.
enum APIDocsPage {
    static let html = """
    <!doctype html>
    <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
    <title>gemma-encoder API</title>
    <style>\(pageStyle)
    section.route { background: #fff; border: 1px solid #e3e3e3; border-radius: 6px; padding: .6rem .9rem; margin-bottom: .8rem; }
    .method { display: inline-block; min-width: 3.2rem; font-weight: 700; text-transform: uppercase; font-size: .8rem; color: #fff;
              background: #2e7d32; border-radius: 3px; text-align: center; margin-right: .5rem; }
    .method.post { background: #1a56db; }
    h2 { font-size: 1.05rem; margin: .2rem 0; }
    table { border-collapse: collapse; margin: .3rem 0 .6rem; font-size: .9rem; }
    td, th { border-bottom: 1px solid #eee; padding: .15rem .6rem .15rem 0; text-align: left; vertical-align: top; }
    textarea { width: 100%; min-height: 5rem; box-sizing: border-box; }
    pre.answer { background: #f4f4f4; padding: .5rem; max-height: 16rem; overflow: auto; }
    pre.answer:empty { display: none; }
    </style></head>
    <body>
    <header><h1>gemma-encoder API</h1><span class="muted" id="version"></span><a href="/openapi.json">openapi.json</a><a href="/">search</a></header>
    <p class="muted">Errors answer <code>{"error": …, "error_type": …}</code>. With an API key, send <code>Authorization: Bearer KEY</code>:
    <input id="key" type="password" placeholder="API key (optional)"></p>
    <div id="routes"></div>
    <script>
    "use strict";
    \(pageScript)
    function typeName(s) {
      if (!s || Object.keys(s).length === 0) return "any";
      if (s.anyOf) return s.anyOf.map(typeName).join(" | ");
      if (s.type === "array") return typeName(s.items) + "[]";
      if (s.type === "object" && s.additionalProperties && typeof s.additionalProperties === "object") return "map of " + typeName(s.additionalProperties);
      return s.type;
    }
    // One row per field, nested fields as dotted names.
    function rows(schema, prefix, out) {
      if (!schema) return out;
      if (schema.type === "array") return rows(schema.items, prefix + "[]", out);
      if (schema.anyOf) { schema.anyOf.forEach((o, i) => rows(o, prefix + (prefix ? " " : "") + "(shape " + (i + 1) + ")", out)); return out; }
      if (schema.type !== "object" || !schema.properties) return out;
      const required = new Set(schema.required || []);
      for (const [name, field] of Object.entries(schema.properties).sort()) {
        const full = prefix ? prefix + "." + name : name;
        out.push([full, typeName(field), required.has(name) ? "required" : ""]);
        rows(field, full, out);
      }
      return out;
    }
    function table(schema) {
      const list = rows(schema, "", []);
      if (!list.length) return element("div", "", typeName(schema));
      const t = element("table");
      for (const r of list) { const tr = element("tr"); r.forEach((c) => tr.append(element("td", "", c))); t.append(tr); }
      return t;
    }
    async function send(method, path, textarea, pre) {
      const h = { "Content-Type": "application/json" };
      const key = document.getElementById("key").value;
      if (key) h["Authorization"] = "Bearer " + key;
      pre.textContent = "…";
      try {
        const r = await fetch(path, { method: method.toUpperCase(), headers: h, body: method === "post" ? textarea.value : undefined });
        const text = await r.text();
        let shown = text;
        try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (_) {}
        pre.textContent = r.status + " " + r.statusText + "\\n" + shown.slice(0, 20000);
      } catch (e) { pre.textContent = String(e); }
    }
    async function load() {
      const spec = await (await fetch("/openapi.json")).json();
      document.getElementById("version").textContent = spec.info.title + " " + spec.info.version + " · OpenAPI " + spec.openapi;
      const routes = document.getElementById("routes");
      for (const [path, item] of Object.entries(spec.paths)) {
        for (const [method, op] of Object.entries(item)) {
          const s = element("section", "route");
          s.id = op.operationId;
          const h = element("h2");
          h.append(element("span", "method " + method, method), element("code", "", path));
          s.append(h, element("div", "", op.summary));
          const media = op.requestBody && Object.values(op.requestBody.content)[0];
          if (media) {
            s.append(element("h3", "muted", "request"), table(media.schema));
            const ta = element("textarea");
            ta.value = JSON.stringify(media.example, null, 2);
            const pre = element("pre", "answer");
            const b = element("button", "", "Send");
            b.addEventListener("click", () => send(method, path, ta, pre));
            s.append(ta, b, pre);
          }
          const ok = op.responses["200"];
          const answer = ok.content && Object.entries(ok.content)[0];
          s.append(element("h3", "muted", "response 200" + (answer ? " (" + answer[0] + ")" : "")));
          if (answer && answer[1].schema) s.append(table(answer[1].schema));
          const errors = Object.keys(op.responses).filter((c) => c !== "200");
          if (errors.length) s.append(element("div", "muted", "errors: " + errors.map((c) => c + " " + op.responses[c].description).join(", ")));
          routes.append(s);
        }
      }
    }
    load().catch((e) => { document.getElementById("routes").append(element("p", "error", String(e))); });
    </script>
    </body></html>
    """
}
