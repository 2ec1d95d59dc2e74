// yunwei inspections: a service worker so that a checklist reloaded in a machine room without a
// network still opens. Network first, always: a page or script fetched from the server is kept in
// the cache and answered; only when the network fails is the kept copy answered instead, marked
// data-cached="1" so that the page's script knows its data-now (the server's clock) is stale.
// It keeps the run pages (/c/{cid}/inspections/runs/{rid}) and the scripts and styles they load,
// nothing else. Logged-out pages clear the cache (app.js): a run page is one person's.
"use strict";
var CACHE = "yunwei-inspection-v1";
var RUN_PAGE = /^\/c\/\d+\/inspections\/runs\/\d+$/;
var ASSETS = ["/assets/app.css", "/assets/app.js", "/assets/inspection.css", "/assets/inspection.js"];

self.addEventListener("install", function () { self.skipWaiting(); });
self.addEventListener("activate", function (ev) { ev.waitUntil(self.clients.claim()); });

self.addEventListener("fetch", function (ev) {
  var req = ev.request;
  if (req.method !== "GET") { return; }
  var url = new URL(req.url);
  if (url.origin !== self.location.origin) { return; }
  var page = RUN_PAGE.test(url.pathname) && url.search === "";
  if (!page && ASSETS.indexOf(url.pathname) < 0) { return; }
  ev.respondWith(
    fetch(req).then(function (res) {
      // Only a page the server answered as itself: not a redirect to the login, not an error.
      if (res.ok && !res.redirected && res.type === "basic") {
        var copy = res.clone();
        caches.open(CACHE).then(function (c) { return c.put(url.pathname, copy); });
      }
      return res;
    }, function (err) {
      return caches.open(CACHE).then(function (c) { return c.match(url.pathname); }).then(function (kept) {
        if (!kept) { throw err; }
        if (!page) { return kept; }
        return kept.text().then(function (html) {
          var marked = html.replace("data-insp-run=", 'data-cached="1" data-insp-run=');
          var headers = new Headers(kept.headers);
          headers.delete("content-length");
          return new Response(marked, { status: 200, headers: headers });
        });
      });
    })
  );
});
