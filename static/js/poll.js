/*
 * Adaptive polling for regions marked data-poll="<milliseconds>" and hx-trigger="sb-poll".
 *
 * htmx's own "every Ns" trigger keeps firing in a hidden tab. The Versions table must keep
 * polling (a CLI deploy can start at any time), and so must a running action's panel, so
 * instead of stopping them we pause them while nobody can see them: a hidden tab sends no
 * requests at all, and the moment the tab becomes visible again every region refreshes
 * at once, so it is never shown stale.
 * Regions are looked up on every tick because each poll swaps in a fresh element.
 */
(function () {
  "use strict";

  var TICK_MS = 100;
  var lastPolled = new WeakMap();

  function due(el, now) {
    var every = parseInt(el.getAttribute("data-poll"), 10) || 2000;
    var last = lastPolled.get(el);
    if (last === undefined) {
      // Not seen being swapped in (see htmx:load below): wait a full interval from now.
      lastPolled.set(el, now);
      return false;
    }
    return now - last >= every;
  }

  // A region swapped in was just rendered: its interval starts now, not at the next tick,
  // so a running action's panel asks again exactly a second after its last answer.
  document.body.addEventListener("htmx:load", function (e) {
    var now = Date.now();
    var root = e.detail.elt;
    if (root.matches && root.matches("[data-poll]")) lastPolled.set(root, now);
    if (root.querySelectorAll) {
      root.querySelectorAll("[data-poll]").forEach(function (el) { lastPolled.set(el, now); });
    }
  });

  function poll(force) {
    if (document.hidden || !window.htmx) return;
    var now = Date.now();
    document.querySelectorAll("[data-poll]").forEach(function (el) {
      if (force || due(el, now)) {
        lastPolled.set(el, now);
        window.htmx.trigger(el, "sb-poll");
      }
    });
  }

  setInterval(function () { poll(false); }, TICK_MS);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) poll(true);
  });
  // A finished action (its panel's last answer carries HX-Trigger: sb-refresh) changes
  // what the page shows, so refresh at once instead of at the next tick.
  document.body.addEventListener("sb-refresh", function () { poll(true); });
})();
