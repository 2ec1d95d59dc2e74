// yunwei: progressive enhancement only; every page works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
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
