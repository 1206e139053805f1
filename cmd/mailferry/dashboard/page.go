package dashboard

import (
	"crypto/sha256"
	"encoding/base64"
)

// pageStyle and pageScript are inline so the page needs nothing but this
// server; the Content-Security-Policy allows exactly them (by hash) and
// connections back to this server.
const pageStyle = `
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em;margin:0 0 .3em}h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.2em .6em;border-bottom:1px solid #ddd;vertical-align:top}
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}
.failed{color:#b00020}.done{color:#1b5e20}.paused{color:#8a6d00}
#conn{font-size:.9em;color:#666}#conn.down{color:#b00020}#error{color:#b00020}
.bar{background:#e6e6e6;height:.6em;width:8em;display:inline-block}.bar>span{background:#2e7d32;height:100%;display:block}
`

const pageScript = `
"use strict";
const $ = (id) => document.getElementById(id);
function el(tag, text, cls) { const e = document.createElement(tag); if (text !== undefined) e.textContent = String(text); if (cls) e.className = cls; return e; }
function mb(n) { return (n / 1048576).toFixed(1) + " MiB"; }
function eta(s) { if (s < 0) return "-"; if (s < 60) return Math.round(s) + " s"; if (s < 3600) return Math.round(s / 60) + " min"; return (s / 3600).toFixed(1) + " h"; }
function bar(done, total) { const b = el("span", undefined, "bar"); const f = el("span"); f.style.width = (total > 0 ? Math.min(100, 100 * done / total) : 0) + "%"; b.append(f); return b; }
function fill(id, rows, cells) {
  const body = $(id); body.replaceChildren();
  for (const r of rows) { const tr = el("tr"); for (const c of cells(r)) tr.append(c); body.append(tr); }
  $(id + "-none").hidden = rows.length > 0;
  body.parentElement.hidden = rows.length === 0;
}
function phaseCell(p, text) { return el("td", text || p, p === "failed" ? "failed" : p === "done" ? "done" : p === "paused" ? "paused" : ""); }
function render(v) {
  const s = v.status || {mailboxes: [], totals: {}, domains: [], phases: {}};
  const t = s.totals || {};
  $("time").textContent = v.time;
  $("totals").textContent = (t.loaded || 0) + " of " + (t.total || 0) + " messages, " + mb(t.loaded_bytes || 0) +
    ", " + (t.messages_per_second || 0).toFixed(1) + " msg/s, ETA " + eta(t.eta_seconds === undefined ? -1 : t.eta_seconds) +
    ", " + (v.dead_total || 0) + " dead letters";
  $("phases").textContent = Object.entries(s.phases || {}).map(([k, n]) => k + " " + n).join(" · ");
  $("error").textContent = v.error ? "reading the state failed: " + v.error : "";
  fill("domains", s.domains || [], (d) => [el("td", d.domain), phaseCell(d.phase), el("td", d.stopped || ""), el("td", d.reason || "")]);
  fill("mailboxes", s.mailboxes || [], (m) => {
    const prog = el("td"); prog.append(bar(m.loaded, m.total), el("span", " " + m.loaded + "/" + m.total));
    return [el("td", m.mailbox), phaseCell(m.phase, m.detail ? m.phase + " (" + m.detail + ")" : m.phase), prog,
      el("td", mb(m.loaded_bytes), "n"), el("td", (m.messages_per_second || 0).toFixed(1), "n"), el("td", m.phase === "failed" || m.phase === "done" ? "-" : eta(m.eta_seconds), "n"),
      el("td", m.dead_lettered, "n"), el("td", m.last_error || m.waiting || "")];
  });
  fill("dead", v.dead_letters || [], (d) => [el("td", d.mailbox), el("td", d.folder), el("td", d.uid, "n"), el("td", d.size, "n"), el("td", d.reason), el("td", d.time)]);
  fill("failures", v.failures || [], (f) => [el("td", f.what), phaseCell(f.phase), el("td", f.reason)]);
}
// From the origin: a URL that carries credentials (the page's own, when
// opened as http://user:password@host/) is refused for subresources.
const es = new EventSource(location.origin + "/events");
// ?once shows one state and stops following it (to print the page or
// take a picture of it).
const once = new URLSearchParams(location.search).has("once");
es.onmessage = (e) => {
  render(JSON.parse(e.data));
  $("conn").className = "";
  $("conn").textContent = once ? "snapshot" : "live";
  if (once) es.close();
};
es.onerror = () => { $("conn").textContent = "disconnected, retrying"; $("conn").className = "down"; };
`

const pageHTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mailferry migration</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>` + pageStyle + `</style></head>
<body>
<h1>mailferry migration</h1>
<p><span id="totals">waiting for the first state…</span> <span id="conn">connecting</span><br>
<span id="phases"></span> · as of <span id="time">-</span></p>
<p id="error"></p>
<h2>Domains</h2>
<p id="domains-none">No cutover campaign.</p>
<table><thead><tr><th>domain</th><th>phase</th><th>stopped in</th><th>reason</th></tr></thead><tbody id="domains"></tbody></table>
<h2>Mailboxes</h2>
<p id="mailboxes-none">No mailboxes.</p>
<table><thead><tr><th>mailbox</th><th>phase</th><th>messages</th><th>moved</th><th>msg/s</th><th>ETA</th><th>dead</th><th>last error or wait</th></tr></thead><tbody id="mailboxes"></tbody></table>
<h2>Dead letters (newest 50)</h2>
<p id="dead-none">None.</p>
<table><thead><tr><th>mailbox</th><th>folder</th><th>UID</th><th>bytes</th><th>reason</th><th>when</th></tr></thead><tbody id="dead"></tbody></table>
<h2>Failures</h2>
<p id="failures-none">None.</p>
<table><thead><tr><th>mailbox or domain</th><th>phase</th><th>why</th></tr></thead><tbody id="failures"></tbody></table>
<script>` + pageScript + `</script>
</body></html>
`

// pageCSP allows the page's own style and script and nothing else.
var pageCSP = "default-src 'none'; style-src '" + hash(pageStyle) + "'; script-src '" + hash(pageScript) +
	"'; connect-src 'self'; img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func hash(s string) string {
	h := sha256.Sum256([]byte(s))
	return "sha256-" + base64.StdEncoding.EncodeToString(h[:])
}
