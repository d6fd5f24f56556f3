/* The flow builder (/admin/flows/{id}): a few behaviours on top of a form that works without them.
 * The page is a plain form; every button posts it with its "op" and the server answers the page again
 * (htmx swaps it in place, keeping the scroll). This file only:
 *   - redraws a node's card when its type changes (<select data-refresh>: clicks the hidden Redraw button);
 *   - lets htmx show a refused save (HTTP 422: the page with each problem beside its node). */
(function () {
  "use strict";
  document.addEventListener("change", function (ev) {
    var el = ev.target;
    if (!el || !el.matches || !el.matches("select[data-refresh]") || !el.form) return;
    var redraw = el.form.querySelector("[data-refresh-button]");
    if (redraw) redraw.click();
  });
  document.addEventListener("htmx:beforeSwap", function (ev) {
    var xhr = ev.detail && ev.detail.xhr;
    if (xhr && xhr.status === 422) {
      ev.detail.shouldSwap = true;
      ev.detail.isError = false;
    }
  });
})();
