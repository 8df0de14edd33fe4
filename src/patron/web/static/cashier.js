/* patron till: the keyboard and the focus, so a cashier never needs the mouse.
   The till also works without this file (Enter then submits the whole form).
   - Enter in the member box finds the member; Enter in the product box adds the first
     match (what a barcode scanner types ends with Enter); the box is emptied at once, so
     the next scan can start while the sale is priced again.
   - F2 member, F3 product, F4 coupon, F6 points, F7 stored value, F8 card, F9 check out;
     Down moves into the product matches, Esc clears the product search.
   - After the sale panel is swapped, the field the server names in data-focus gets the
     focus (htmx itself keeps the focus of a field that was only priced again), unless the
     cashier has gone on to type elsewhere; what they typed into the panel while it was
     being priced is kept and priced when they leave the field.
   - Buttons with data-print print the page (the receipt has a print stylesheet); on the
     receipt, "Next sale" has the focus, so Enter starts the next sale. */
(function () {
  "use strict";

  var KEYS = { F2: "member-q", F3: "product-q", F4: "coupon-code", F6: "points",
               F7: "pay-wallet", F8: "pay-card" };
  var shownSale = null;

  function till() { return document.getElementById("till"); }

  function focusField(id) {
    var el = id && document.getElementById(id);
    if (!el || el.disabled) return false;
    el.focus();
    if (typeof el.select === "function" && el.tagName === "INPUT") el.select();
    return true;
  }

  // The box whose Enter sent the last request: the server may move the focus on from it.
  var origin = null;
  // What the cashier typed into a field of the sale panel while a request was on its way.
  var typed = null;

  function isTyping(el) {
    return el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT") &&
      el.type !== "checkbox" && el.type !== "radio";
  }

  function focusFromSale() {
    var sale = document.getElementById("sale");
    if (!sale || sale === shownSale) return;
    shownSale = sale;
    var id = sale.getAttribute("data-focus");
    var active = document.activeElement;
    // never pull the cashier out of a field they went on to type in meanwhile
    var free = !active || active === document.body || !isTyping(active) || active === origin;
    origin = null;
    if (id && id !== "keep" && free) focusField(id);
  }

  function restoreTyped() {
    if (!typed) return;
    var el = document.getElementById(typed.id);
    var value = typed.value;
    typed = null;
    if (!el || el.value !== el.defaultValue || el.value === value) return;
    el.value = value;  // the server had not seen it: keep it, and price it when left
    el.focus();
    el.addEventListener("blur", function () {
      el.dispatchEvent(new Event("change", { bubbles: true }));
    }, { once: true });
  }

  function clearMatches() {
    var box = document.getElementById("product-matches");
    if (box) box.innerHTML = "";
    var input = document.getElementById("product-q");
    if (input) input.setAttribute("aria-expanded", "false");
  }

  function post(op, extra) {
    var form = till();
    if (!form || !window.htmx) return false;
    var values = { op: op };
    Object.keys(extra || {}).forEach(function (k) { values[k] = extra[k]; });
    window.htmx.ajax("POST", "/cashier", { source: form, target: "#sale", swap: "outerHTML",
                                           values: values });
    return true;
  }

  function moveInMatches(current, step) {
    var items = Array.prototype.slice.call(document.querySelectorAll("#product-matches .match"));
    var i = items.indexOf(current);
    if (i < 0) return false;
    var next = items[i + step];
    if (next) next.focus();
    else if (step < 0) focusField("product-q");
    return true;
  }

  document.addEventListener("keydown", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    if (!till()) return;
    if (event.key === "Enter" && target && target.hasAttribute("data-enter-op") && !event.isComposing) {
      var op = target.getAttribute("data-enter-op");
      if (op === "find" || op === "add") {
        event.preventDefault();
        var value = target.value;
        if (!value.trim()) return;
        target.value = "";
        if (op === "add") clearMatches();
        origin = target;
        post(op, { scan: value });
        return;
      }
      if (op === "coupon") {
        event.preventDefault();
        origin = target;
        post("coupon", {});
        return;
      }
    }
    if (target && target.id === "product-q") {
      if (event.key === "ArrowDown") {
        var first = document.querySelector("#product-matches .match");
        if (first) { event.preventDefault(); first.focus(); }
        return;
      }
      if (event.key === "Escape") { target.value = ""; clearMatches(); return; }
    }
    if (target && target.classList.contains("match")) {
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        moveInMatches(target, event.key === "ArrowDown" ? 1 : -1);
        return;
      }
      if (event.key === "Escape") { clearMatches(); focusField("product-q"); return; }
    }
    if (KEYS[event.key]) {
      if (focusField(KEYS[event.key])) event.preventDefault();
      return;
    }
    if (event.key === "F9") {
      var checkout = document.getElementById("checkout");
      if (checkout && !checkout.disabled) { event.preventDefault(); checkout.click(); }
    }
  });

  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail && event.detail.target;
    var active = document.activeElement;
    typed = null;
    if (target && target.id === "sale" && active && active.id && target.contains(active) &&
        isTyping(active) && active.value !== active.defaultValue) {
      typed = { id: active.id, value: active.value };
    }
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    var target = event.detail && event.detail.target;
    if (target && target.id === "product-matches") {
      var input = document.getElementById("product-q");
      if (input) input.setAttribute("aria-expanded", target.querySelector(".match") ? "true" : "false");
      return;
    }
    if (document.getElementById("sale") !== shownSale) {
      var adding = document.activeElement && document.activeElement.classList &&
        document.activeElement.classList.contains("match");
      if (adding) { clearMatches(); var q = document.getElementById("product-q"); if (q) q.value = ""; }
      focusFromSale();
      restoreTyped();
    }
  });

  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    if (target && target.closest("[data-print]")) {
      event.preventDefault();
      window.print();
    }
  });

  function start() {
    if (document.getElementById("sale")) {
      shownSale = null;
      focusFromSale();
      return;
    }
    // the receipt: "Next sale" takes Enter (autofocus alone is not applied after every
    // kind of navigation)
    var next = document.getElementById("next-sale");
    if (next && (!document.activeElement || document.activeElement === document.body)) next.focus();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
