// Loyalist charts: each <canvas data-chart="ID"> is drawn from <script type="application/json" id="ID">
// ({type, labels, datasets:[{label, data}]}). A table with the same numbers sits next to every chart.
(function () {
  var palette = ['#0b6e4f', '#2f7ed8', '#f0a202', '#c0392b', '#6c757d', '#8e44ad'];
  var patterns = [[], [6, 3], [2, 2], [8, 2, 2, 2]];  // dashes so lines differ without colour
  document.querySelectorAll('canvas[data-chart]').forEach(function (canvas) {
    var source = document.getElementById(canvas.getAttribute('data-chart'));
    if (!source || typeof Chart === 'undefined') { return; }
    var spec = JSON.parse(source.textContent);
    spec.datasets.forEach(function (ds, i) {
      var multi = spec.type === 'bar' && spec.datasets.length === 1;
      ds.backgroundColor = ds.backgroundColor || (multi ? spec.labels.map(function (_, j) { return palette[j % palette.length]; }) : palette[i % palette.length]);
      ds.borderColor = ds.borderColor || palette[i % palette.length];
      if (spec.type === 'line') { ds.borderDash = patterns[i % patterns.length]; ds.fill = false; }
    });
    new Chart(canvas, {type: spec.type, data: {labels: spec.labels, datasets: spec.datasets},
      options: {responsive: true, maintainAspectRatio: false, animation: false,
        plugins: {legend: {display: spec.datasets.length > 1}}, scales: spec.scales || {}}});
  });
})();
