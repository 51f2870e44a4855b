/*
 * Small behaviours of the dashboard: the viewer's time zone, copy buttons, dismissable
 * panels and the confirmation dialog (a native <dialog> filled by htmx).
 */
(function () {
  "use strict";

  // Times are rendered on the server in the viewer's zone (web/middleware.py reads this).
  try {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone && document.cookie.indexOf("tz=" + zone) === -1) {
      document.cookie = "tz=" + zone + "; path=/; max-age=31536000; samesite=lax";
    }
  } catch (e) { /* An old browser keeps UTC. */ }

  // Polled regions swap by morphing (idiomorph), which keeps focus and scroll position.
  // It would also copy the server's closed <details> over one the user opened ("Why it
  // failed", a revision's URL): the user's open/closed state wins over the refresh.
  if (window.Idiomorph) {
    window.Idiomorph.defaults.callbacks.beforeAttributeUpdated = function (name, node) {
      if (name === "open" && node.tagName === "DETAILS") return false;
      return true;
    };
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    // Plain-HTTP installations have no Clipboard API: fall back to a selected textarea.
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    area.remove();
    return Promise.resolve();
  }

  var dialog, content, opener = null;

  function focusables() {
    return Array.prototype.filter.call(
      dialog.querySelectorAll("a[href], button, input, select, textarea, [tabindex]:not([tabindex='-1'])"),
      function (el) { return !el.disabled && el.type !== "hidden" && el.offsetParent !== null; }
    );
  }

  function openDialog() {
    var opening = !dialog.open;
    if (opening) dialog.showModal();
    var first = dialog.querySelector("[autofocus]") || dialog.querySelector("input:checked") ||
      focusables()[0];
    if (!opening) {
      // A form shown again with its errors: scroll to the focused control as before.
      if (first) first.focus();
      return;
    }
    // On a phone the first control (the rollback's strategy) sits below the settings
    // table; focusing it normally scrolls the title and Current/Target out of view. The
    // dialog opens at its top instead, with focus still on that control for the keyboard.
    if (first) first.focus({ preventScroll: true });
    dialog.scrollTop = 0;
  }

  document.addEventListener("DOMContentLoaded", function () {
    dialog = document.getElementById("confirm-dialog");
    content = document.getElementById("dialog-content");
    if (!dialog) return;

    // Remember which button opened the dialog so focus can return to it.
    document.body.addEventListener("htmx:beforeRequest", function (e) {
      if (e.detail.target === content && !dialog.open) opener = e.detail.elt;
    });
    document.body.addEventListener("htmx:afterSwap", function (e) {
      if (e.detail.target === content && content.children.length) openDialog();
    });
    // A new action's panel clears away the panels of finished ones (History keeps
    // their record), so panels never pile up above the table.
    document.body.addEventListener("htmx:afterSwap", function (e) {
      if (e.detail.target.id !== "action-panels") return;
      var panels = e.detail.target.querySelectorAll(".action-panel");
      for (var i = 1; i < panels.length; i++) {
        if (!panels[i].hasAttribute("hx-get") || panels[i].id === panels[0].id) panels[i].remove();
      }
    });
    // The server sends HX-Trigger: sb-dialog-close once an action was accepted.
    document.body.addEventListener("sb-dialog-close", function () {
      if (dialog.open) dialog.close();
    });
    dialog.addEventListener("close", function () {
      content.innerHTML = "";
      var back = opener;
      if (back && !document.body.contains(back) && back.getAttribute("hx-get")) {
        // A live refresh replaced the button while the dialog was open: the new one for
        // the same action and target has the same URL.
        back = document.querySelector('[hx-get="' + CSS.escape(back.getAttribute("hx-get")) + '"]');
      }
      if (back && document.body.contains(back)) back.focus();
      opener = null;
    });
    // showModal() makes the page behind inert and Escape closes the dialog natively;
    // this keeps Tab and Shift+Tab cycling through the dialog's own controls.
    dialog.addEventListener("keydown", function (e) {
      if (e.key !== "Tab") return;
      var items = focusables();
      if (!items.length) return;
      var first = items[0], last = items[items.length - 1];
      if (e.shiftKey && document.activeElement === first) {
        e.preventDefault();
        last.focus();
      } else if (!e.shiftKey && document.activeElement === last) {
        e.preventDefault();
        first.focus();
      }
    });
  });

  document.addEventListener("click", function (e) {
    var closer = e.target.closest("[data-close-dialog]");
    if (closer && dialog && dialog.open) {
      dialog.close();
      return;
    }
    var dismiss = e.target.closest("[data-dismiss]");
    if (dismiss) {
      var panel = dismiss.closest(".panel");
      if (panel) panel.remove();
      return;
    }
    var copy = e.target.closest("[data-copy]");
    if (copy) {
      copyText(copy.getAttribute("data-copy")).then(function () {
        copy.setAttribute("data-copied", "true");
        copy.setAttribute("title", "Copied");
        setTimeout(function () { copy.removeAttribute("data-copied"); }, 1500);
      });
    }
  });
})();
