// The live refresh of a list swaps its HTML every few seconds: a <details> a person opened
// (each has an id) is opened again after the swap instead of collapsing.
(function () {
  var open = new Set();
  document.addEventListener("htmx:beforeSwap", function (event) {
    open = new Set();
    event.detail.target.querySelectorAll("details[id][open]").forEach(function (d) {
      open.add(d.id);
    });
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    open.forEach(function (id) {
      var d = document.getElementById(id);
      if (d) d.open = true;
    });
  });
})();
