/* patron admin: small progressive enhancements; every page also works without this file.
   - "/" focuses the page's search box (unless you are typing in a field)
   - forms with data-confirm ask before they submit (delete, merge, revoke)
   - buttons with data-copy copy the text of the element they point at
   - links with data-open="id" open a <details> before jumping to it
   - links with data-back go back in history (their href is the fallback) */
(function () {
  "use strict";

  function typing(el) {
    if (!el) return false;
    var tag = el.tagName;
    return el.isContentEditable || tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT";
  }

  document.addEventListener("keydown", function (event) {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
    if (typing(document.activeElement)) return;
    var box = document.querySelector("[data-search]");
    if (!box) return;
    event.preventDefault();
    box.focus();
    box.select();
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var message = form && form.getAttribute && form.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  }, true);

  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    var copy = target.closest("[data-copy]");
    if (copy) {
      var source = document.querySelector(copy.getAttribute("data-copy"));
      if (source && navigator.clipboard) {
        navigator.clipboard.writeText(source.textContent.trim()).then(function () {
          copy.textContent = "✓";
        });
      }
      return;
    }
    var back = target.closest("[data-back]");
    if (back && window.history.length > 1) {
      event.preventDefault();
      window.history.back();
      return;
    }
    var opener = target.closest("[data-open]");
    if (opener) {
      var details = document.getElementById(opener.getAttribute("data-open"));
      if (details && details.tagName === "DETAILS") details.open = true;
    }
  });

  // An htmx swap that arrives as an error page (e.g. 403) replaces the results with it
  // rather than failing silently.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var status = event.detail.xhr.status;
    if (status >= 400 && status < 500) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
})();
