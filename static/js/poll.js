/*
 * Adaptive polling for regions marked data-poll="<milliseconds>" and hx-trigger="sb-poll",
 * and the fallback of the Versions page's live updates (server-sent events).
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

  // A region inside an open live stream (sse-connect, see live() below) is refreshed by
  // its "changed" events; it polls only at its slow data-poll-live period then.
  function live(el) {
    var source = el.closest("[sse-connect]");
    return source !== null && source.hasAttribute("data-live-open");
  }

  function due(el, now) {
    var slow = live(el) && el.getAttribute("data-poll-live");
    var every = parseInt(slow || el.getAttribute("data-poll"), 10) || 2000;
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

  // A panel inside a container marked data-refreshed-by="#region" (the Versions page's
  // action panels) does not fetch itself: its region's refresh renders it with the table,
  // in the same answer, so the two never disagree. Several due at once make one request
  // (the region's hx-sync="this:queue last").
  function pollerOf(el) {
    var box = el.parentElement && el.parentElement.closest("[data-refreshed-by]");
    return (box && document.querySelector(box.getAttribute("data-refreshed-by"))) || el;
  }

  function poll(force) {
    if (document.hidden || !window.htmx) return;
    var now = Date.now();
    document.querySelectorAll("[data-poll]").forEach(function (el) {
      if (force || due(el, now)) {
        var poller = pollerOf(el);
        lastPolled.set(el, now);
        lastPolled.set(poller, now); // A region refreshed for its panel is not due again.
        window.htmx.trigger(poller, "sb-poll");
      }
    });
  }

  // A region's refresh names the running panels it renders too (?panels=KEY,KEY).
  document.body.addEventListener("htmx:configRequest", function (e) {
    var selector = e.detail.elt.getAttribute && e.detail.elt.getAttribute("data-panels");
    var box = selector && document.querySelector(selector);
    if (!box) return;
    var keys = [];
    box.querySelectorAll("[data-panel-key][data-poll]").forEach(function (panel) {
      keys.push(panel.getAttribute("data-panel-key"));
    });
    if (keys.length) e.detail.parameters.panels = keys.join(",");
  });

  // The live stream (htmx's sse extension): while it is open its regions poll slowly.
  // Each (re)connection refreshes them once, as changes made while it was closed sent
  // no event.
  document.body.addEventListener("htmx:sseOpen", function (e) {
    e.detail.elt.setAttribute("data-live-open", "");
    e.detail.elt.querySelectorAll("[data-poll]").forEach(function (el) {
      if (!document.hidden && window.htmx) window.htmx.trigger(pollerOf(el), "sb-poll");
    });
  });
  function closed(e) {
    if (e.detail.elt && e.detail.elt.removeAttribute) e.detail.elt.removeAttribute("data-live-open");
  }
  document.body.addEventListener("htmx:sseError", closed);
  document.body.addEventListener("htmx:sseClose", closed);

  setInterval(function () { poll(false); }, TICK_MS);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) poll(true);
  });
  // A finished action (its panel's last answer carries HX-Trigger: sb-refresh) changes
  // what the page shows, so refresh at once instead of at the next tick.
  document.body.addEventListener("sb-refresh", function () { poll(true); });
})();
