// yunwei inspections: a run's checklist keeps working offline for the length of a round.
// Every answer becomes an op with its own client_op_id and the time the reading was taken (on the
// server's clock, from the offset measured when the page loaded). Ops wait in localStorage and go
// to the API in batches when the browser is online; the server answers each one applied, stale,
// duplicate or rejected, so sending an op twice (a lost answer, a reload) changes nothing and no
// reading is lost. Photos are shrunk, kept with their op and uploaded first (idempotent as well).
// No inline script anywhere: the page's data comes from data-* attributes.
"use strict";
document.addEventListener("click", function (ev) {
  var b = ev.target.closest ? ev.target.closest("[data-print]") : null;
  if (b) { window.print(); }
});
document.addEventListener("DOMContentLoaded", function () {
  var root = document.querySelector("[data-insp-run]");
  if (!root || root.getAttribute("data-open") !== "1" || !window.localStorage || !window.fetch) { return; }
  var cid = root.getAttribute("data-cid");
  var rid = Number(root.getAttribute("data-insp-run"));
  var csrf = root.getAttribute("data-csrf");
  // The server's clock minus this device's, measured when the page came from the server. A page
  // the service worker answered from its cache (offline reload) carries a stale data-now: the
  // offset measured last time is used instead.
  var SKEW = "yunwei.inspection.skew";
  var skew = Number(root.getAttribute("data-now") || Date.now()) - Date.now();
  if (root.getAttribute("data-cached") === "1") {
    skew = Number(localStorage.getItem(SKEW) || 0) || 0;
  } else {
    try { localStorage.setItem(SKEW, String(skew)); } catch (e) { /* full: the offset is only a refinement */ }
  }
  // A reload without a network still opens this checklist (see /inspection-sw.js).
  if (navigator.serviceWorker && window.isSecureContext) {
    navigator.serviceWorker.register("/inspection-sw.js", { scope: "/c/" }).catch(function () { /* offline reload unavailable; nothing else changes */ });
  }
  var zh = (document.documentElement.lang || "").indexOf("zh") === 0;
  var KEY = "yunwei.inspection.queue." + cid;
  var FAILED = KEY + ".failed";
  var t = function (k) { return root.getAttribute("data-t-" + k) || k; };
  var words = zh
    ? { offline: "离线：{n} 条读数保存在本机，联网后自动同步", sending: "正在同步 {n} 条读数…", later: "同步未完成，稍后自动重试（{n} 条待同步）", login: "登录已过期：请在新标签页重新登录后点击“立即同步”（{n} 条待同步）", full: "本机存储已满，请先同步或删除照片", refused: "以下读数被拒绝，已单独保存：", discard: "丢弃被拒绝的读数", closed: "巡检已结束，该读数仅留档" }
    : { offline: "Offline: {n} reading(s) kept on this device, synced when back online", sending: "Syncing {n} reading(s)…", later: "Sync did not finish; retrying shortly ({n} waiting)", login: "Your login expired: log in again in another tab, then Sync now ({n} waiting)", full: "This device's storage is full: sync first or leave out photos", refused: "These readings were refused and kept aside:", discard: "Discard refused readings", closed: "The run is over; the reading is kept in its history only" };
  var bar = root.querySelector(".sync-bar");
  var status = root.querySelector(".sync-status");
  if (bar) { bar.hidden = false; }
  document.querySelectorAll(".js-only").forEach(function (e) { e.hidden = false; });

  var load = function (key) { try { return JSON.parse(localStorage.getItem(key || KEY) || "[]"); } catch (e) { return []; } };
  var save = function (q, key) { try { localStorage.setItem(key || KEY, JSON.stringify(q)); return true; } catch (e) { return false; } };
  var newId = function () {
    var a = new Uint8Array(12);
    window.crypto.getRandomValues(a);
    return "web-" + Array.prototype.map.call(a, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  };
  var say = function (text, kind) {
    if (!status) { return; }
    status.textContent = text;
    status.className = "sync-status" + (kind ? " " + kind : "");
  };
  var fill = function (s, n) { return s.replace("{n}", String(n)); };
  var cellOf = function (target, item) {
    var found = null;
    document.querySelectorAll("li.cell").forEach(function (li) {
      if (li.getAttribute("data-target") === target && li.getAttribute("data-item") === item) { found = li; }
    });
    return found;
  };
  var mark = function (op, state, ok) {
    var li = cellOf(op.target, op.item);
    if (!li) { return; }
    var line = li.querySelector(".cell-sync");
    var what = [];
    if (op.value !== undefined) { what.push(String(op.value)); }
    if (op.text) { what.push(op.text); }
    if (op.ok !== undefined && op.value === undefined && !op.text) { what.push(op.ok ? "✓" : "✗"); }
    if (line) { line.textContent = (state === "pending" ? t("pending") : t("saved")) + (what.length ? ": " + what.join(" ") : ""); }
    li.classList.toggle("pending", state === "pending");
    if (ok === true || ok === false) {
      li.classList.toggle("failed", !ok);
      li.classList.toggle("passed", ok);
    }
  };
  var summary = function () {
    var q = load();
    var failed = load(FAILED);
    if (!q.length && !failed.length) { say(t("idle"), "ok"); return q; }
    if (q.length) { say(fill(navigator.onLine === false ? words.offline : words.later, q.length), "warn"); }
    if (failed.length) { showFailed(failed); }
    return q;
  };
  var showFailed = function (failed) {
    var box = root.querySelector(".sync-failed");
    if (!box) {
      box = document.createElement("div");
      box.className = "sync-failed flash error";
      root.appendChild(box);
    }
    box.textContent = words.refused + " ";
    failed.forEach(function (f) {
      var p = document.createElement("div");
      p.textContent = f.op.target + " · " + f.op.item + ": " + f.message;
      box.appendChild(p);
    });
    var b = document.createElement("button");
    b.type = "button";
    b.className = "secondary";
    b.textContent = words.discard;
    b.addEventListener("click", function () { save([], FAILED); box.remove(); summary(); });
    box.appendChild(b);
  };
  // The readings still waiting show on their cells after a reload.
  load().forEach(function (op) { if (op.run_id === rid) { mark(op, "pending"); } });

  var headers = function (type) { return { "X-CSRF-Token": csrf, "Content-Type": type }; };
  var messageOf = function (j, fallback) {
    var e = (j && j.error) || {};
    return (zh ? e.message_zh : e.message_en) || e.message || fallback;
  };
  var replace = function (op) {
    var q = load();
    for (var i = 0; i < q.length; i++) { if (q[i].client_op_id === op.client_op_id) { q[i] = op; } }
    save(q);
  };
  var dataToBlob = function (url) {
    var parts = url.split(",");
    var bin = atob(parts[1]);
    var bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { bytes[i] = bin.charCodeAt(i); }
    return new Blob([bytes], { type: "application/octet-stream" });
  };
  // Photos first: each with its own client_op_id, so a repeated upload returns the same photo.
  var uploadPhotos = function () {
    var q = load().filter(function (op) { return op.photo; });
    var next = function (i) {
      if (i >= q.length) { return Promise.resolve(); }
      var op = q[i];
      var url = "/api/v1/contracts/" + cid + "/inspection-runs/" + op.run_id + "/photos?client_op_id=" +
        encodeURIComponent(op.photo.id) + "&name=" + encodeURIComponent(op.photo.name);
      return fetch(url, { method: "POST", credentials: "same-origin", headers: headers("application/octet-stream"), body: dataToBlob(op.photo.data) })
        .then(function (r) {
          if (r.status === 401) { throw new Error("login"); }
          return r.json().then(function (j) {
            if (r.ok) { op.photo_ids = [j.id]; } else if (r.status < 500) { op.photo_error = messageOf(j, String(r.status)); } else { throw new Error("later"); }
            delete op.photo;
            replace(op);
          });
        })
        .then(function () { return next(i + 1); });
    };
    return next(0);
  };
  var wire = function (op) {
    var o = { client_op_id: op.client_op_id, run_id: op.run_id, target: op.target, item: op.item, recorded_at: op.recorded_at };
    ["ok", "value", "text", "note", "photo_ids"].forEach(function (k) { if (op[k] !== undefined) { o[k] = op[k]; } });
    return o;
  };
  var syncing = null;
  var sync = function () {
    if (syncing) { return syncing; }
    var q = summary();
    if (!q.length || navigator.onLine === false) { return Promise.resolve(); }
    say(fill(words.sending, q.length), "");
    syncing = uploadPhotos().then(function () {
      var batch = load().filter(function (op) { return !op.photo; }).slice(0, 200);
      if (!batch.length) { return null; }
      return fetch("/api/v1/contracts/" + cid + "/inspection-results", {
        method: "POST", credentials: "same-origin", headers: headers("application/json"),
        body: JSON.stringify({ results: batch.map(wire) })
      }).then(function (r) {
        if (r.status === 401 || r.status === 403) { throw new Error("login"); }
        if (r.status >= 500) { throw new Error("later"); }
        return r.json().then(function (j) {
          var sent = {};
          batch.forEach(function (op) { sent[op.client_op_id] = op; });
          var gone = {};
          if (r.ok) {
            (j.results || []).forEach(function (res) {
              gone[res.client_op_id] = true;
              var op = sent[res.client_op_id];
              if (op && op.run_id === rid) { mark(op, "saved", res.ok); }
              if (res.status === "rejected") { say(words.closed, "warn"); }
            });
          } else {
            // Bad input: the ops named in the problems are set aside (kept, shown), the rest retried.
            var failed = load(FAILED);
            ((j.error && j.error.problems) || []).forEach(function (p) {
              var m = /^results\[(\d+)\]/.exec(p.field || "");
              var op = m ? batch[Number(m[1])] : null;
              if (op && !gone[op.client_op_id]) {
                gone[op.client_op_id] = true;
                failed.push({ op: op, message: zh ? p.message_zh : p.message_en });
              }
            });
            save(failed, FAILED);
          }
          save(load().filter(function (op) { return !gone[op.client_op_id]; }));
        });
      });
    }).then(function () {
      syncing = null;
      var left = summary();
      if (left.length && navigator.onLine !== false) { return sync(); }
      return null;
    }, function (e) {
      syncing = null;
      say(fill(e && e.message === "login" ? words.login : words.later, load().length), "warn");
    });
    return syncing;
  };
  var shrink = function (file, done) {
    var reader = new FileReader();
    reader.onload = function () {
      var img = new Image();
      img.onload = function () {
        var scale = Math.min(1, 1600 / Math.max(img.width, img.height));
        var canvas = document.createElement("canvas");
        canvas.width = Math.round(img.width * scale);
        canvas.height = Math.round(img.height * scale);
        canvas.getContext("2d").drawImage(img, 0, 0, canvas.width, canvas.height);
        done({ id: newId(), name: (file.name || "photo").replace(/\.[^.]*$/, "") + ".jpg", data: canvas.toDataURL("image/jpeg", 0.8) });
      };
      img.onerror = function () { done(null); };
      img.src = reader.result;
    };
    reader.onerror = function () { done(null); };
    reader.readAsDataURL(file);
  };
  document.querySelectorAll("form[data-cell-form]").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var button = ev.submitter;
      var data = new FormData(form);
      var op = { client_op_id: newId(), run_id: rid, target: data.get("target"), item: data.get("item"), recorded_at: Date.now() + skew };
      if (button && button.name === "ok") { op.ok = button.value === "true"; }
      var value = data.get("value");
      if (value !== null && value !== "") { op.value = Number(value); }
      var text = data.get("text");
      if (text) { op.text = String(text); }
      var note = data.get("note");
      if (note) { op.note = String(note); }
      var input = form.querySelector("input[type=file]");
      var finish = function (photo) {
        if (photo) { op.photo = photo; }
        var q = load();
        q.push(op);
        if (!save(q)) {
          delete op.photo;
          q[q.length - 1] = op;
          if (!save(q)) { say(words.full, "error"); return; }
        }
        if (input) { input.value = ""; }
        mark(op, "pending", op.ok);
        sync();
      };
      if (input && input.files && input.files.length) { shrink(input.files[0], finish); } else { finish(null); }
    });
  });
  // Sign-off waits for this run's readings to be synced.
  document.querySelectorAll("form[data-sign-off]").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      var waiting = load().some(function (op) { return op.run_id === rid; });
      if (!waiting) { return; }
      ev.preventDefault();
      sync().then(function () {
        if (!load().some(function (op) { return op.run_id === rid; })) { form.submit(); }
      });
    });
  });
  var now = root.querySelector(".sync-now");
  if (now) { now.addEventListener("click", function () { sync(); }); }
  window.addEventListener("online", function () { sync(); });
  window.addEventListener("offline", function () { summary(); });
  window.setInterval(function () { sync(); }, 30000);
  sync();
});
