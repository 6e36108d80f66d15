// llmgw alert list: live refresh. Every 15 s (while the tab is visible and "Live" is ticked)
// fetch this same page and swap in its summary, charts and list. The server escaped every value;
// DOMParser runs no script. No framework, nothing else.
(function () {
  "use strict";
  var box = document.getElementById("live-box");
  var live = document.getElementById("live");
  var status = document.getElementById("live-status");
  if (!box || !live || !status || !window.fetch || !window.DOMParser) return;
  box.hidden = false;
  var ids = ["alert-summary", "alert-charts", "alert-list"];
  var busy = false;
  function tick() {
    if (busy || !live.checked || document.hidden) return;
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) {
        if (r.redirected || !r.ok) throw new Error(r.redirected ? "signed out" : "HTTP " + r.status);
        return r.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        ids.forEach(function (id) {
          var fresh = doc.getElementById(id), old = document.getElementById(id);
          if (!fresh || !old) return;
          var was = old.querySelectorAll("details"), now = fresh.querySelectorAll("details");
          for (var i = 0; i < was.length && i < now.length; i++) now[i].open = was[i].open;
          old.replaceWith(document.importNode(fresh, true));
        });
        status.textContent = "updated " + new Date().toLocaleTimeString();
      })
      .catch(function (e) {
        live.checked = false;
        status.textContent = "live refresh stopped (" + e.message + "): reload the page";
      })
      .finally(function () { busy = false; });
  }
  window.setInterval(tick, 15000);
  live.addEventListener("change", tick);
})();
