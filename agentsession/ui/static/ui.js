// agentsession ui: the page's only script (served from this server; no inline script).
// A form with data-confirm asks first and is sent only if the person agrees.
"use strict";
document.addEventListener("submit", function (event) {
  var question = event.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
