// ferry's own script: dialogs with typed confirmations, the live migration panel (Server-Sent Events), and
// error messages for htmx requests. No build step; htmx does the fragment swaps.
(function () {
  "use strict";

  // Typed confirmation: the button named by data-confirm-button is enabled only while the input holds the word
  // (case-insensitive). Enter submits then, and does nothing while the button is disabled.
  function syncConfirm(input) {
    var button = document.getElementById(input.dataset.confirmButton);
    if (!button) return;
    var word = (input.dataset.confirmWord || "").toUpperCase();
    button.disabled = input.value.trim().toUpperCase() !== word;
  }

  document.addEventListener("input", function (e) {
    if (e.target.matches && e.target.matches("[data-confirm-word]")) syncConfirm(e.target);
  });

  document.addEventListener("click", function (e) {
    var opener = e.target.closest && e.target.closest("[data-open-dialog]");
    if (opener) {
      var dialog = document.getElementById(opener.dataset.openDialog);
      if (dialog && !dialog.open) {
        dialog.querySelectorAll("[data-confirm-word]").forEach(function (input) {
          input.value = "";
          syncConfirm(input);
        });
        dialog.showModal();
        var first = dialog.querySelector("input:not([type=hidden]), select");
        if (first) first.focus();
      }
      return;
    }
    var closer = e.target.closest && e.target.closest("[data-close-dialog]");
    if (closer) {
      var d = closer.closest("dialog");
      if (d) d.close();
    }
  });

  // Copy buttons: data-copy names the element whose text is copied. The clipboard API needs a secure context
  // (HTTPS or localhost); elsewhere the text is selected and copied the old way, or left selected to copy by hand.
  function copied(button, ok) {
    var label = button.dataset.label || button.textContent;
    button.dataset.label = label;
    button.textContent = ok ? "Copied" : "Press Ctrl+C";
    setTimeout(function () { button.textContent = label; }, 2000);
  }
  function copyBySelection(el) {
    var range = document.createRange();
    range.selectNodeContents(el);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    try { return document.execCommand("copy"); } catch (err) { return false; }
  }
  document.addEventListener("click", function (e) {
    var button = e.target.closest && e.target.closest("[data-copy]");
    if (!button) return;
    var el = document.getElementById(button.dataset.copy);
    if (!el) return;
    var text = el.textContent.trim();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () { copied(button, true); },
        function () { copied(button, copyBySelection(el)); }
      );
    } else {
      copied(button, copyBySelection(el));
    }
  });

  // Forms that post through htmx close their dialog once sent.
  document.addEventListener("htmx:beforeRequest", function (e) {
    var form = e.target.closest && e.target.closest("form[data-close-on-submit]");
    if (form) {
      var d = form.closest("dialog");
      if (d) d.close();
    }
  });

  // A failed htmx request says why instead of failing silently.
  function toast(message) {
    var el = document.getElementById("toast");
    if (!el) return;
    el.textContent = message;
    el.hidden = false;
    clearTimeout(el._timer);
    el._timer = setTimeout(function () { el.hidden = true; }, 6000);
  }
  document.addEventListener("htmx:responseError", function (e) {
    var xhr = e.detail.xhr;
    toast(xhr.getResponseHeader("x-ferry-message") || ("The request failed (" + xhr.status + ")."));
  });
  document.addEventListener("htmx:sendError", function () {
    toast("ferry could not be reached. Check the connection and try again.");
  });

  // The live migration panel: progress events update the bars in place; at the end the page's main part is
  // fetched again (the panel then offers the revert and the history shows the result), without a reload.
  var STATUS = {
    queued: ["Queued", "badge-neutral"],
    running: ["Running", "badge-info"],
    completed: ["Completed", "badge-success"],
    failed: ["Failed", "badge-danger"],
    cancelled: ["Cancelled", "badge-warning"],
    reverted: ["Reverted", "badge-neutral"]
  };

  function formatCount(n) {
    return Number(n || 0).toLocaleString("en-US");
  }

  function formatDuration(s) {
    s = Math.max(0, Math.round(s));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }

  function setBar(bar, percent) {
    var fill = bar.querySelector(".progress-fill");
    if (fill) fill.style.width = percent + "%";
    bar.setAttribute("aria-valuenow", String(percent));
  }

  function render(panel, m) {
    var status = m.status === "running" && m.cancel_requested ? ["Cancelling…", "badge-warning"]
      : (STATUS[m.status] || [m.status, "badge-neutral"]);
    var badge = panel.querySelector("[data-status]");
    if (badge) {
      badge.textContent = status[0];
      badge.className = "badge " + status[1];
    }
    var text = panel.querySelector("[data-status-text]");
    if (text) {
      if (m.status === "queued") text.textContent = "Waiting for a worker to pick it up…";
      else if (m.status === "running" && m.cancel_requested) text.textContent = "Cancelling after the current batch…";
      else if (m.status === "running") text.textContent = "Moving in batches. You can leave this page: the migration continues in the background.";
      else text.textContent = status[0] + ".";
    }
    renderRevert(panel, m);
    var p = m.progress || {};
    var pct = Number(p.percentage || 0);
    var overall = panel.querySelector("[data-overall]");
    if (overall) setBar(overall, pct.toFixed(1));
    var pctText = panel.querySelector("[data-percentage]");
    if (pctText) pctText.textContent = pct.toFixed(1) + "%";
    var eta = panel.querySelector("[data-eta]");
    if (eta) {
      var secs = m.timing && m.timing.eta_seconds;
      eta.textContent = secs != null ? "about " + formatDuration(secs) + " left" : (m.status === "running" || m.status === "queued" ? "estimating…" : "");
    }
    panel.querySelectorAll("[data-bar]").forEach(function (li) {
      var e = p[li.dataset.bar];
      if (!e) return;
      var total = Number(e.total || 0), moved = Math.min(Number(e.moved || 0), total);
      var percent = m.status === "completed" ? 100 : (total ? moved * 100 / total : 0);
      var bar = li.querySelector("[role=progressbar]");
      if (bar) setBar(bar, percent.toFixed(1));
      var c = li.querySelector("[data-count]");
      if (c) c.textContent = formatCount(moved) + " / " + formatCount(total);
    });
    // The history's row of this migration says the same as the panel.
    var row = document.querySelector("[data-history-current]");
    if (row) {
      var rowBadge = row.querySelector("[data-history-status]");
      if (rowBadge) { rowBadge.textContent = status[0]; rowBadge.className = "badge " + status[1]; }
      var summary = row.querySelector("[data-history-summary]");
      var moved = function (k) { return formatCount((p[k] || {}).moved || 0); };
      if (summary) summary.textContent = moved("conversations") + " conversations, " + moved("messages") +
        " messages, " + moved("attachments") + " attachments, " + moved("contact_inboxes") + " contacts";
    }
  }

  function renderRevert(panel, m) {
    var r = m.revert;
    var box = panel.querySelector("[data-revert]");
    if (!r || !box) return;
    var back = r.restored || {};
    var restored = formatCount(back.conversations || 0) + " conversations, " + formatCount(back.messages || 0) +
      " messages and " + formatCount(back.contact_inboxes || 0) + " contacts";
    var batches = formatCount(r.batches_done || 0) + " of " + formatCount(r.batches_total || 0);
    var text = box.querySelector("[data-revert-text]");
    if (text) {
      if (r.status === "queued") text.textContent = "Revert queued: waiting for a worker to pick it up…";
      else if (r.status === "running" && m.cancel_requested) text.textContent = "Cancelling the revert after its current batch…";
      else if (r.status === "running") text.textContent = "Reverting in batches (" + batches + " undone): " + restored + " back in this inbox so far. You can leave this page.";
      else if (r.status === "reverted") text.textContent = "Reverted: " + restored + " are back in this inbox.";
      else text.textContent = "Revert " + r.status + " after " + batches + " batches: " + restored + " are back in this inbox.";
    }
    var pct = r.status === "reverted" ? 100 : Number(r.percentage || 0);
    var bar = box.querySelector("[data-revert-overall]");
    if (bar) setBar(bar, pct.toFixed(1));
    var pctText = box.querySelector("[data-revert-percentage]");
    if (pctText) pctText.textContent = pct.toFixed(1) + "%";
  }

  function follow(panel) {
    if (panel._source || !window.EventSource) return;
    var source = new EventSource(panel.dataset.eventsUrl);
    panel._source = source;
    source.addEventListener("progress", function (e) { render(panel, JSON.parse(e.data)); });
    source.addEventListener("done", function (e) {
      source.close();
      render(panel, JSON.parse(e.data));
      if (window.htmx) {
        htmx.ajax("GET", window.location.pathname, { target: "#main", select: "#main", swap: "outerHTML" });
      }
    });
    source.onerror = function () {
      // The browser reconnects by itself after a dropped connection; once the panel is gone there is nothing
      // to follow. A refused stream (signed out, no access) is closed for good: say so and load the page again.
      if (!document.body.contains(panel)) {
        source.close();
      } else if (source.readyState === EventSource.CLOSED) {
        toast("Live progress stopped. Reloading the page…");
        setTimeout(function () { window.location.reload(); }, 2000);
      }
    };
  }

  function init(root) {
    (root.querySelectorAll ? root : document).querySelectorAll("[data-events-url]").forEach(follow);
    if (root.matches && root.matches("[data-events-url]")) follow(root);
  }

  // htmx calls init for the page once it loaded and for every fragment it swaps in.
  if (window.htmx) htmx.onLoad(init);
  else document.addEventListener("DOMContentLoaded", function () { init(document); });
})();
