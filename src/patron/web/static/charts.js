/* patron charts: Apache ECharts (echarts.min.js, shipped in the package) drawn from options
   the server renders as JSON, so a chart is plain data in the page and needs no code of its own.

     <div class="chart" data-chart="rfm-grid" role="img" aria-label="..."></div>
     <script type="application/json" id="rfm-grid">{ ...an ECharts option... }</script>

   A page that shows charts loads echarts.min.js and this file in its {% block head %}
   (the macro in templates/_charts.html does both). Every chart element gets
   data-chart-ready="1" once drawn, which the browser tests wait for; charts redraw on resize
   and after an htmx swap brings new ones in. Server-side options use ECharts' string
   templates ("{b}: {c}") for labels, never functions, so they stay JSON. */
(function () {
  "use strict";

  var PALETTE = ["#2563eb", "#16a34a", "#f59e0b", "#dc2626", "#7c3aed", "#0891b2",
                 "#db2777", "#65a30d", "#ea580c", "#475569"];
  var drawn = [];

  function draw(el) {
    if (el.getAttribute("data-chart-ready") === "1" || !window.echarts) return;
    var source = document.getElementById(el.getAttribute("data-chart"));
    if (!source) return;
    var option;
    try {
      option = JSON.parse(source.textContent);
    } catch (err) {
      el.textContent = "chart data unreadable";
      return;
    }
    var height = parseInt(el.getAttribute("data-height") || "", 10);
    if (height > 0) el.style.height = height + "px";  // CSSOM: allowed by the page's CSP
    if (!option.color) option.color = PALETTE;
    if (option.animation === undefined) option.animation = false;
    var chart = window.echarts.init(el, null, { renderer: el.getAttribute("data-renderer") || "canvas" });
    chart.setOption(option);
    drawn.push(chart);
    el.setAttribute("data-chart-ready", "1");
  }

  function drawAll(root) {
    var nodes = (root || document).querySelectorAll("[data-chart]");
    for (var i = 0; i < nodes.length; i++) draw(nodes[i]);
  }

  var pending = null;
  window.addEventListener("resize", function () {
    if (pending) window.clearTimeout(pending);
    pending = window.setTimeout(function () {
      drawn = drawn.filter(function (chart) { return !chart.isDisposed(); });
      drawn.forEach(function (chart) { chart.resize(); });
    }, 120);
  });

  document.addEventListener("htmx:afterSettle", function (event) { drawAll(event.target); });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  } else {
    drawAll(document);
  }
  window.patronCharts = { drawAll: drawAll };
})();
