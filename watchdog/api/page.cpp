#include "watchdog/api/page.hpp"

#include <string>

namespace lastgood::watchdog {

const char* const kApprovalPage = R"PAGE(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>lastgood</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:16px;align-items:center}
header h1{font-size:18px;margin:0}
main{padding:16px 20px;max-width:1100px}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;margin:0 0 16px;padding:12px 16px}
h2{font-size:15px;margin:4px 0 10px}
table{border-collapse:collapse;width:100%}
td,th{text-align:left;padding:4px 8px;border-bottom:1px solid #eef0f3;vertical-align:top}
.ok{color:#1a7f37}.firing,.failed,.escalated{color:#c62828;font-weight:600}.pending,.inconclusive{color:#9a6700}
button{padding:4px 12px;margin-right:6px;border-radius:4px;border:1px solid #888;cursor:pointer}
button.approve{background:#1a7f37;color:#fff;border-color:#1a7f37}button.reject{background:#fff;color:#c62828;border-color:#c62828}
#error{color:#c62828;font-weight:600;min-height:1em}
code{background:#eef0f3;padding:1px 4px;border-radius:3px}
input{padding:4px;width:260px}
input.comment{width:180px;margin-bottom:4px}
small.why b{color:#c62828}
tr:target{background:#fff7d6;outline:2px solid #9a6700}
</style></head>
<body>
<header><h1>lastgood</h1><span id="who"></span>
<span><input id="token" type="password" placeholder="approver token" autocomplete="off"><button id="save">use token</button></span></header>
<main>
<div id="error" role="alert"></div>
<section><h2>Pending proposals</h2><div id="proposals">loading...</div></section>
<section><h2>Services</h2><div id="services">loading...</div></section>
<section><h2>Held and recent decisions</h2><div id="decisions">none</div></section>
<section><h2>Silences and maintenance</h2><div id="silences">none</div></section>
<section><h2>Incidents</h2><div id="incidents">none</div></section>
<section><h2>Recent proposals</h2><div id="recent"></div></section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&":"&amp;","<":"&lt;",">":"&gt;","\"":"&quot;","'":"&#39;"}[c]));
function token() { return sessionStorage.getItem("lastgood-token") || ""; }
$("save").onclick = () => { sessionStorage.setItem("lastgood-token", $("token").value); $("token").value = ""; $("who").textContent = "token set"; };
if (token()) $("who").textContent = "token set";
// Times as people read them: "3 min ago (14:02 UTC)", "in 27 min (14:32 UTC)".
function ago(ms) {
  if (ms === undefined || ms === null) return "";
  const t = typeof ms === "number" ? ms : Date.parse(ms);
  const d = Math.round((t - Date.now()) / 1000), a = Math.abs(d);
  const span = a < 60 ? a + " s" : a < 3600 ? Math.round(a / 60) + " min" : a < 172800 ? Math.round(a / 3600) + " h" : Math.round(a / 86400) + " days";
  const clock = new Date(t).toISOString().replace("T", " ").slice(0, 16) + " UTC";
  return (d < 0 ? span + " ago" : "in " + span) + " (" + clock + ")";
}
function evidence(e) {
  if (!e) return "";
  const why = e.detail ? "<b>" + esc(e.detail) + "</b><br>" : "";
  if (e.measure === "manual" || e.measure === "marked_bad") return why;
  return why + esc(e.measure) + " = " + esc(e.value) + " (threshold " + esc(e.threshold) + (e.probe ? ", probe " + esc(e.probe) : "") +
    ", " + esc(e.samples) + " samples, impact " + esc(e.impact?.probes_failing) + "/" + esc(e.impact?.probes_watched) + " probes failing)";
}
async function post(path, body) {
  $("error").textContent = "";
  if (!token()) { $("error").textContent = "Enter your approver token first."; return; }
  const r = await fetch(path, {method: "POST", headers: {"Authorization": "Bearer " + token(), "Content-Type": "application/json"}, body: JSON.stringify(body)});
  const b = await r.json().catch(() => ({}));
  if (!r.ok) $("error").textContent = (r.status === 401 ? "Not authorized: " : r.status === 403 ? "Refused: " : "Error " + r.status + ": ") + (b.error || "");
  refresh();
}
let shown = {proposals: []};
function vote(id, verb) {
  const p = shown.proposals.find((x) => x.id === id);
  const comment = $("comment-" + id)?.value || "";
  // A rollback changes production: the person says so once more.
  if (verb === "approve" && p && !window.confirm("Approve rolling back " + p.decision.service + " from " + p.decision.release_from + " to " +
      p.decision.release_to + "?" + (p.approvals_needed <= 1 ? "\nYour approval completes the quorum: the rollback starts at once." : ""))) return;
  post("/api/v1/proposals/" + encodeURIComponent(id) + "/" + verb, comment ? {comment} : {});
}
function votes(list, verb) {
  return list.map((a) => "<br>" + esc(a.approver) + " (" + esc(a.role) + ") " + verb + " " + ago(a.at) + (a.comment ? ": &ldquo;" + esc(a.comment) + "&rdquo;" : "")).join("");
}
function proposalRow(p, buttons) {
  const d = p.decision;
  const who = p.requested_by ? "<br><small>asked by " + esc(p.requested_by) + " (" + esc(p.origin) + ")</small>" : "";
  const may = p.may_approve ? "<br>may approve: " + p.may_approve.map(esc).join(", ") +
    (p.secondary && !p.secondary.open ? "; " + p.secondary.roles.map(esc).join(", ") + " too " + ago(p.secondary.from) : "") : "";
  return "<tr id='proposal-" + esc(p.id) + "' data-proposal='" + esc(p.id) + "'><td><b>" + esc(d.service) + "</b><br><code>" + esc(d.release_from) + " &rarr; " + esc(d.release_to) +
    "</code>" + who + "</td><td>" + esc(d.severity) + " " + esc(d.trigger) + "<br>" + esc(d.reason) + "<br><small class='why'>" + evidence(d.evidence) + "</small></td>" +
    "<td class='" + esc(p.state) + " state'>" + esc(p.state) + "<br><small>" + p.approvals.length + "/" + esc(p.quorum) + " approvals" +
    (p.state === "pending" ? ", " + esc(p.approvals_needed) + " more needed" : "") + votes(p.approvals, "approved") + votes(p.rejections, "rejected") + may +
    "<br>created " + ago(p.created_at) + (p.state === "pending" ? "<br>expires " + ago(p.expires_at) : "") + "</small></td>" +
    (buttons ? "<td><input class='comment' id='comment-" + esc(p.id) + "' placeholder='comment (optional)'><br><button class='approve' data-id='" + esc(p.id) +
      "'>Approve</button><button class='reject' data-id='" + esc(p.id) + "'>Reject</button></td>" : "") + "</tr>";
}
let scrolled = false;
async function refresh() {
  try {
    const [s, p, inc, sil] = await Promise.all([fetch("/api/v1/services").then((r) => r.json()), fetch("/api/v1/proposals").then((r) => r.json()),
      fetch("/api/v1/incidents").then((r) => r.json()), fetch("/api/v1/silences").then((r) => r.json())]);
    shown = p;
    $("incidents").innerHTML = inc.incidents.length ? "<table><tr><th>incident</th><th>service</th><th>releases</th><th>status</th><th>review due</th></tr>" +
      inc.incidents.slice(0, 20).map((i) => "<tr data-incident='" + esc(i.id) + "'><td><a href='/api/v1/incidents/" + encodeURIComponent(i.id) + ".md'>" +
        esc(i.id) + "</a> (<a href='/api/v1/incidents/" + encodeURIComponent(i.id) + "'>json</a>)</td><td>" + esc(i.service) + "<br><small>" +
        esc(i.severity) + " " + esc(i.trigger) + "</small></td><td><code>" + esc(i.release_from) + " &rarr; " + esc(i.release_to) + "</code></td><td class='" +
        esc(i.status) + "'>" + esc(i.status) + "</td><td>" + ago(i.review_due_by) + "</td></tr>").join("") + "</table>" : "none";
    const pending = p.proposals.filter((x) => x.state === "pending");
    // Not while a person types a comment (a refresh would take it away).
    if (!document.activeElement?.classList?.contains("comment")) $("proposals").innerHTML = pending.length ? "<table>" + pending.map((x) => proposalRow(x, true)).join("") + "</table>" : "none";
    const recent = p.proposals.filter((x) => x.state !== "pending").slice(-10).reverse();
    $("recent").innerHTML = recent.length ? "<table>" + recent.map((x) => proposalRow(x, false)).join("") + "</table>" : "none";
    $("services").innerHTML = "<table><tr><th>service</th><th>live</th><th>last good</th><th>triggers</th></tr>" + s.services.map((v) =>
      "<tr data-service='" + esc(v.name) + "'><td><b>" + esc(v.name) + "</b>" +
      (v.escalated ? "<br><span class='escalated'>escalated: " + esc(v.escalation) + "</span><br><button class='clear' data-service='" + esc(v.name) + "'>Clear</button>" : "") +
      (v.silenced ? "<br><span class='pending'>silenced by " + esc(v.silenced.by) + ", ends " + ago(v.silenced.ends_at) + "</span>" : "") + "</td><td>" +
      esc(v.live_release?.id ?? "?") + "</td><td>" + esc(v.last_good_release?.id ?? "?") + "</td><td>" +
      v.triggers.map((t) => esc(t.name) + ": <span class='" + esc(t.state) + "'>" + esc(t.state) + "</span> " + (t.state === "firing" || t.state === "pending" ?
        "<small>" + evidence(t.evidence) + " since " + ago(t.since) + "</small>" : "")).join("<br>") + "</td></tr>").join("") + "</table>";
    const held = s.recent_decisions.slice(-10).reverse();
    $("decisions").innerHTML = held.length ? "<table>" + held.map((d) => "<tr class='decision'><td>" + ago(d.at) + "</td><td><b>" + esc(d.service) + "</b> " +
      esc(d.trigger) + "</td><td class='" + (d.kind === "hold" ? "pending" : "ok") + "'>" + esc(d.kind) + "</td><td>" + esc(d.reason) + "</td></tr>").join("") + "</table>" : "none";
    $("silences").innerHTML = sil.silences.length ? "<table><tr><th>services</th><th>state</th><th>until</th><th>by</th><th>why</th></tr>" +
      sil.silences.slice(0, 20).map((x) => "<tr data-silence='" + esc(x.id) + "'><td>" + x.services.map(esc).join(", ") + "</td><td class='" +
        (x.state === "active" ? "pending" : "") + "'>" + esc(x.state) + "</td><td>" + ago(x.ends_at) + "</td><td>" + esc(x.by) +
        (x.expired_by ? "<br><small>ended by " + esc(x.expired_by) + "</small>" : "") + "</td><td>" + esc(x.comment) + "</td></tr>").join("") + "</table>" : "none";
    // A notice's link names one proposal (/#proposal-ID): shown once it is drawn, and marked.
    if (!scrolled && location.hash.startsWith("#proposal-")) {
      const row = document.getElementById(decodeURIComponent(location.hash.slice(1)));
      if (row) { row.scrollIntoView(); scrolled = true; }
    }
    document.querySelectorAll("button.approve").forEach((b) => b.onclick = () => vote(b.dataset.id, "approve"));
    document.querySelectorAll("button.reject").forEach((b) => b.onclick = () => vote(b.dataset.id, "reject"));
    document.querySelectorAll("button.clear").forEach((b) => b.onclick = () => {
      if (window.confirm("Clear the escalation of " + b.dataset.service + "? lastgood may act on it again.")) post("/api/v1/services/" + encodeURIComponent(b.dataset.service) + "/clear", {});
    });
  } catch (e) { $("error").textContent = "cannot reach lastgood: " + e; }
}
refresh();
setInterval(refresh, 2000);
</script></body></html>
)PAGE";

namespace {

// The page is kept as one document in the source, and served as three: the CSP forbids inline
// style and script (default-src 'self'), so the <style> and <script> blocks become /page.css and
// /page.js.
struct Parts {
  std::string html, css, js;
  Parts() {
    const std::string doc = kApprovalPage;
    const auto s0 = doc.find("<style>"), s1 = doc.find("</style>");
    const auto j0 = doc.find("<script>"), j1 = doc.find("</script>");
    css = doc.substr(s0 + 7, s1 - s0 - 7);
    js = doc.substr(j0 + 8, j1 - j0 - 8);
    html = doc.substr(0, s0) + "<link rel=\"stylesheet\" href=\"/page.css\">" + doc.substr(s1 + 8, j0 - s1 - 8) + "<script src=\"/page.js\"></script>" +
           doc.substr(j1 + 9);
  }
};
const Parts& parts() {
  static const Parts p;
  return p;
}

}  // namespace

const std::string& page_html() { return parts().html; }
const std::string& page_css() { return parts().css; }
const std::string& page_js() { return parts().js; }

}  // namespace lastgood::watchdog
