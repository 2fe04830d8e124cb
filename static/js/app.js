// Loyalist: progress bars that update without reloading (polls the job's JSON status endpoint).
(function () {
  function poll(el) {
    var url = el.getAttribute('data-status-url');
    fetch(url, {credentials: 'same-origin', headers: {'Accept': 'application/json'}})
      .then(function (r) { return r.json(); })
      .then(function (job) {
        var pct = Math.round((job.progress || 0) * 100);
        var bar = el.querySelector('.progress-bar');
        bar.style.width = pct + '%';
        el.querySelector('.progress').setAttribute('aria-valuenow', pct);
        el.querySelector('.job-status').textContent = job.status;
        el.querySelector('.job-message').textContent = job.message || '';
        if (job.status === 'done' || job.status === 'failed') {
          bar.classList.add(job.status === 'done' ? 'bg-success' : 'bg-danger');
          if (el.getAttribute('data-reload') !== 'no') { setTimeout(function () { window.location.reload(); }, 600); }
          return;
        }
        setTimeout(function () { poll(el); }, 1000);
      })
      .catch(function () { setTimeout(function () { poll(el); }, 3000); });
  }
  // CSP forbids inline style attributes: bars take their width from aria-valuenow.
  document.querySelectorAll('.progress[aria-valuenow]').forEach(function (el) {
    var bar = el.querySelector('.progress-bar');
    if (bar) { bar.style.width = el.getAttribute('aria-valuenow') + '%'; }
  });
  document.querySelectorAll('.job-progress').forEach(function (el) {
    var status = el.querySelector('.job-status').textContent.trim();
    if (status !== 'done' && status !== 'failed') { poll(el); }
  });
  document.querySelectorAll('[data-confirm]').forEach(function (el) {
    el.addEventListener('submit', function (e) {
      if (!window.confirm(el.getAttribute('data-confirm'))) { e.preventDefault(); }
    });
  });
})();
