// Live counts: the element with data-progress-url is refreshed every 2 s from that URL's
// JSON; each [data-field] gets its field's value as text (never as markup).
(function () {
  "use strict";
  var box = document.querySelector("[data-progress-url]");
  if (!box) { return; }
  var url = box.getAttribute("data-progress-url");
  function show(name, value) {
    var nodes = document.querySelectorAll('[data-field="' + name + '"]');
    for (var i = 0; i < nodes.length; i++) {
      if (name === "reply_codes") {
        nodes[i].textContent = Object.keys(value).map(function (k) { return k + ": " + value[k]; }).join(", ");
      } else {
        nodes[i].textContent = value === null ? "–"
          : typeof value === "number" && !Number.isInteger(value) ? value.toFixed(1) : String(value);
      }
    }
  }
  function refresh() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (answer) { return answer.ok ? answer.json() : null; })
      .then(function (standing) {
        if (!standing) { return; }
        Object.keys(standing).forEach(function (name) { show(name, standing[name]); });
      })
      .catch(function () { /* the next beat tries again */ });
  }
  setInterval(refresh, 2000);
})();
