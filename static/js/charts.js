// Loyalist charts: each <canvas data-chart="ID"> is drawn from <script type="application/json" id="ID">
// ({type, labels, datasets:[{label, data}]}). A table with the same numbers sits next to every chart.
// Line charts: datasets labelled "Lower bound" / "Upper bound" are drawn as one shaded interval band
// around the forecast (not as two more dashed lines on top of it), so actual, forecast and interval differ
// by colour, dash and fill, and the legend names each.
(function () {
  var palette = ['#0b6e4f', '#2f7ed8', '#f0a202', '#c0392b', '#6c757d', '#8e44ad'];
  var patterns = [[], [6, 3], [2, 2], [8, 2, 2, 2]];  // dashes so lines differ without colour
  var BAND = 'rgba(47, 126, 216, 0.18)';
  function isBound(ds) { return /\b(lower|upper) bound\b/i.test(ds.label || ''); }
  function fmt(v) { return typeof v === 'number' ? v.toLocaleString() : v; }
  document.querySelectorAll('canvas[data-chart]').forEach(function (canvas) {
    var source = document.getElementById(canvas.getAttribute('data-chart'));
    if (!source || typeof Chart === 'undefined') { return; }
    var spec = JSON.parse(source.textContent);
    spec.labels = spec.labels.map(function (l) { return l === null ? '—' : l; });
    var bounds = spec.type === 'line' && spec.datasets.some(isBound);
    var line = 0;
    spec.datasets.forEach(function (ds, i) {
      var multi = spec.type === 'bar' && spec.datasets.length === 1;
      if (spec.type === 'line' && isBound(ds)) {
        var upper = /upper/i.test(ds.label);
        ds.borderColor = ds.borderColor || 'rgba(47, 126, 216, 0.45)';
        ds.backgroundColor = ds.backgroundColor || BAND;
        ds.borderWidth = 1;
        ds.borderDash = [];
        ds.pointRadius = 0;
        // the upper bound fills down to the dataset before it (the lower bound): the interval band
        ds.fill = upper && i > 0 && isBound(spec.datasets[i - 1]) ? '-1' : false;
        return;
      }
      ds.backgroundColor = ds.backgroundColor || (multi ? spec.labels.map(function (_, j) {
        return palette[j % palette.length]; }) : palette[i % palette.length]);
      ds.borderColor = ds.borderColor || palette[i % palette.length];
      if (spec.type === 'line') {
        ds.borderDash = patterns[line % patterns.length];
        ds.borderWidth = line === 0 ? 2 : 3;
        ds.pointRadius = 2;
        ds.fill = false;
        line += 1;
      }
    });
    var scales = spec.scales || {};
    if (bounds && scales.y) { scales.y.beginAtZero = false; }  // zoom in: the interval is narrow
    scales.y = scales.y || {};
    scales.y.ticks = {callback: function (v) { return fmt(v); }};
    new Chart(canvas, {type: spec.type, data: {labels: spec.labels, datasets: spec.datasets},
      options: {responsive: true, maintainAspectRatio: false, animation: false,
        plugins: {legend: {display: spec.datasets.length > 1},
          tooltip: {callbacks: {label: function (c) { return c.dataset.label + ': ' + fmt(c.parsed.y); }}}},
        scales: scales}});
  });
})();
