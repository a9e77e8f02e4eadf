/* The dashboard refreshes itself: every N seconds (data-seconds) it fetches the page again and swaps in the
   new #content-main, so the scroll position, the open tab and this checkbox stay as they are (a meta refresh
   would reload and jump to the top). Paused while the tab is hidden or the box is unticked; the choice is
   remembered in localStorage. A failed fetch, or a login page instead of the dashboard, is said next to the
   box and the page is left as it was. */
(function () {
  "use strict";
  var box = document.getElementById("sched-refresh");
  if (!box || !window.fetch || !window.DOMParser) return;
  var toggle = box.querySelector("input[type=checkbox]");
  var stamp = box.querySelector(".sched-refresh__when");
  var seconds = parseInt(box.getAttribute("data-seconds"), 10) || 30;
  var KEY = "sched-dashboard-refresh";
  var busy = false;
  try { toggle.checked = window.localStorage.getItem(KEY) !== "off"; } catch (e) { /* private mode */ }
  toggle.addEventListener("change", function () {
    try { window.localStorage.setItem(KEY, toggle.checked ? "on" : "off"); } catch (e) { /* ignore */ }
    if (toggle.checked) refresh();
  });

  function refresh() {
    if (busy || !toggle.checked || document.hidden) return;
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        var main = fresh.getElementById("content-main");
        var current = document.getElementById("content-main");
        if (!main || !current) throw new Error("signed out? reload the page");
        current.replaceWith(main);
        var when = fresh.querySelector("#sched-refresh .sched-refresh__when");
        stamp.textContent = when ? when.textContent : "updated";
        box.classList.remove("is-failing");
      })
      .catch(function (error) {
        stamp.textContent = "refresh failed (" + error.message + "); will retry";
        box.classList.add("is-failing");
      })
      .then(function () { busy = false; });
  }

  window.setInterval(refresh, seconds * 1000);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) refresh(); });
})();
