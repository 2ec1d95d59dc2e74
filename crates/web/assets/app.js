// yunwei: progressive enhancement only; every page works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // A page without the logout form is seen logged out: the checklists the inspection service worker
  // kept for offline reloads belong to whoever was logged in, so they go.
  if (!document.querySelector("form[action='/logout']") && window.caches) {
    window.caches.delete("yunwei-inspection-v1").catch(function () { /* nothing kept */ });
  }
  // The contract switcher submits on change (a <noscript> button covers browsers without scripts).
  document.querySelectorAll("select[data-autosubmit]").forEach(function (el) {
    el.addEventListener("change", function () { el.form.submit(); });
  });
  // Destructive forms ask first.
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { ev.preventDefault(); }
    });
  });
});
// Buttons that need a second thought ask first (a form's data-confirm covers every button in it).
document.addEventListener("click", function (ev) {
  var b = ev.target.closest ? ev.target.closest("button[data-confirm]") : null;
  if (b && !window.confirm(b.getAttribute("data-confirm"))) { ev.preventDefault(); }
});
// Ticket attachments: the file goes to the API as the raw body, with the page's CSRF token in the
// header (no multipart parsing on the server); the page reloads to list it.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("form[data-upload]").forEach(function (form) {
    var button = form.querySelector("button[type=submit]");
    var status = form.querySelector(".upload-status");
    var zh = (document.documentElement.lang || "").indexOf("zh") === 0;
    var say = function (text, isError) {
      if (!status) { return; }
      status.textContent = text;
      status.className = "upload-status" + (isError ? " error" : "");
    };
    if (button) { button.disabled = false; }
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var input = form.querySelector("input[type=file]");
      if (!input || !input.files || !input.files.length) { return; }
      var file = input.files[0];
      var internal = form.querySelector("input[name=internal]");
      var url = form.getAttribute("data-upload") + "?name=" + encodeURIComponent(file.name) +
        (internal && internal.checked ? "&internal=true" : "");
      if (button) { button.disabled = true; }
      say(form.getAttribute("data-sending"), false);
      fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRF-Token": form.getAttribute("data-csrf"), "Content-Type": "application/octet-stream" },
        body: file
      }).then(function (r) {
        if (r.ok) { window.location.reload(); return null; }
        return r.json().then(function (j) {
          var e = (j && j.error) || {};
          return (zh ? e.message_zh : e.message_en) || e.message || String(r.status);
        }, function () { return String(r.status); });
      }).then(function (message) {
        if (message !== null && message !== undefined) {
          say(form.getAttribute("data-failed") + ": " + message, true);
          if (button) { button.disabled = false; }
        }
      }).catch(function () {
        say(form.getAttribute("data-failed"), true);
        if (button) { button.disabled = false; }
      });
    });
  });
});
// Ledger import: the sheet goes to the API as the raw body (CSRF token in the header), first as a
// dry run that lists every bad row; only a clean check offers the commit, which sends the same file
// again with dry_run=false. XMLHttpRequest (not fetch) so that big files show upload progress.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("form[data-ledger-import]").forEach(function (form) {
    var check = form.querySelector(".check-button");
    var commit = form.querySelector(".commit-button");
    var input = form.querySelector("input[type=file]");
    var status = form.querySelector(".upload-status");
    var out = form.querySelector(".import-report");
    var zh = (document.documentElement.lang || "").indexOf("zh") === 0;
    var d = function (name) { return form.getAttribute("data-" + name) || ""; };
    var busy = false;
    var say = function (text, isError) {
      status.textContent = text;
      status.className = "upload-status" + (isError ? " error" : "");
    };
    var mb = function (n) { return (n / 1048576).toFixed(1) + " MB"; };
    // A problem's message: message_zh / message_en, or a {zh, en} pair, or plain text.
    var msg = function (p) {
      var m = p.message;
      if (m && typeof m === "object") { return (zh ? m.zh : m.en) || m.zh || ""; }
      return (zh ? p.message_zh : p.message_en) || m || "";
    };
    var el = function (tag, text, cls) {
      var e = document.createElement(tag);
      if (text !== undefined && text !== null) { e.textContent = String(text); }
      if (cls) { e.className = cls; }
      return e;
    };
    var show = function (report) {
      out.textContent = "";
      var read = report.rows_read !== undefined ? report.rows_read : report.rows;
      var facts = el("p", [report.file_name, report.format, report.encoding, report.sheet_name]
        .filter(function (x) { return x; }).join(" · "), "muted");
      out.appendChild(facts);
      facts = el("p", d("rows") + " " + read + " · " + d("blank") + " " + report.blank_rows);
      out.appendChild(facts);
      if (report.ignored_columns && report.ignored_columns.length) {
        out.appendChild(el("p", d("ignored") + ": " + report.ignored_columns.join(", "), "muted"));
      }
      var problems = report.problems || [];
      if (problems.length) {
        out.appendChild(el("p", problems.length + " · " + d("bad"), "flash error"));
        var wrap = el("div", null, "scroll");
        var table = el("table", null, "dense import-problems");
        var head = el("tr");
        [d("row"), d("column"), d("problem")].forEach(function (h) { head.appendChild(el("th", h)); });
        var thead = el("thead"); thead.appendChild(head); table.appendChild(thead);
        var body = el("tbody");
        problems.forEach(function (p) {
          var tr = el("tr");
          tr.appendChild(el("td", p.row));
          tr.appendChild(el("td", p.column || "—"));
          tr.appendChild(el("td", msg(p)));
          body.appendChild(tr);
        });
        table.appendChild(body); wrap.appendChild(table); out.appendChild(wrap);
      }
    };
    var send = function (dryRun) {
      if (busy || !input.files || !input.files.length) { return; }
      var file = input.files[0];
      busy = true; check.disabled = true; commit.disabled = true;
      if (dryRun) { commit.hidden = true; out.textContent = ""; }
      var started = Date.now();
      var phase = d("uploading");
      var sent = 0;
      var tick = function () {
        var secs = Math.round((Date.now() - started) / 1000);
        var size = phase === d("uploading") ? " " + mb(sent) + " / " + mb(file.size) : "";
        say(phase + size + " · " + secs + " " + d("seconds") + "…", false);
      };
      var timer = window.setInterval(tick, 1000);
      tick();
      var xhr = new XMLHttpRequest();
      xhr.open("POST", d("ledger-import") + "?name=" + encodeURIComponent(file.name) + "&dry_run=" + (dryRun ? "true" : "false"));
      xhr.setRequestHeader("X-CSRF-Token", d("csrf"));
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.withCredentials = true;
      xhr.upload.onprogress = function (ev) { sent = ev.loaded; tick(); };
      xhr.upload.onload = function () { phase = dryRun ? d("checking") : d("writing"); tick(); };
      var done = function () { window.clearInterval(timer); busy = false; check.disabled = false; commit.disabled = false; };
      xhr.onerror = function () { done(); say(d("failed"), true); };
      xhr.onload = function () {
        done();
        var j = null;
        try { j = JSON.parse(xhr.responseText); } catch (e) { j = null; }
        if (j && j.rows !== undefined && j.problems !== undefined) {
          show(j);
          var clean = !j.problems.length;
          if (!dryRun && j.imported !== null && j.imported !== undefined) {
            say(d("done") + " " + j.imported, false);
            commit.hidden = true;
            var link = el("a", d("done") + " " + j.imported + " →"); link.href = d("list");
            out.appendChild(el("p")).appendChild(link);
          } else if (clean) {
            say(d("clean"), false);
            commit.hidden = !dryRun;
          } else {
            say(d("bad"), true);
            commit.hidden = true;
          }
          return;
        }
        var e = (j && j.error) || {};
        say(d("failed") + ": " + ((zh ? e.message_zh : e.message_en) || e.message || String(xhr.status)), true);
      };
      xhr.send(file);
    };
    check.disabled = false;
    input.addEventListener("change", function () { commit.hidden = true; out.textContent = ""; say("", false); });
    form.addEventListener("submit", function (ev) { ev.preventDefault(); send(true); });
    commit.addEventListener("click", function () { send(false); });
  });
});
// Reconciliation: "moved" and "changed" need a note or the new location; the first tap opens the
// details instead of submitting an empty move.
document.addEventListener("click", function (ev) {
  var b = ev.target.closest ? ev.target.closest("button[data-needs-detail]") : null;
  if (!b || !b.form) { return; }
  var details = b.form.querySelector("details.mark-detail");
  if (details && !details.open) {
    ev.preventDefault();
    details.open = true;
    var note = details.querySelector("input[name=note]");
    if (note) { note.focus(); }
  }
});
