/* Small form behaviours the pages declare with data attributes (no inline handlers: the pages' Content
 * Security Policy allows scripts from files only).
 *   <select data-autosubmit>        submits its form when changed
 *   <form data-confirm="Question?">  asks before submitting */
(function () {
  "use strict";
  document.addEventListener("change", function (ev) {
    var el = ev.target;
    if (el && el.matches && el.matches("[data-autosubmit]") && el.form) el.form.submit();
  });
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var question = form && form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) ev.preventDefault();
  }, true);
})();
