// Loyalist: live sizes of saved segments and of the export a list page would produce.
// Reads JSON from /segments/<id>/count or /segments/count?list=...&<filters> (no inline scripts: CSP).
(function () {
  if (window.loyalistSegments) { return; }
  window.loyalistSegments = true;
  function show(el, url) {
    el.textContent = '…';
    fetch(url, {credentials: 'same-origin', headers: {'Accept': 'application/json'}})
      .then(function (r) { return r.json(); })
      .then(function (data) {
        el.textContent = data.error ? '?' : Number(data.count).toLocaleString();
        if (data.error) { el.title = data.error; }
        var note = el.parentElement && el.parentElement.querySelector('.count-note');
        if (note) { note.textContent = data.error ? '' : (data.note || ''); }
      })
      .catch(function () { el.textContent = '?'; });
  }
  document.querySelectorAll('[data-count-url]:not([data-count-url=""])').forEach(function (el) {
    show(el, el.getAttribute('data-count-url'));
  });
  document.querySelectorAll('.export-panel').forEach(function (form) {
    var target = form.querySelector('.export-count');
    var toggle = form.querySelector('input[name="include_opted_out"]');
    function refresh() {
      var url = new URL(form.getAttribute('data-count-base'), window.location.href);
      url.searchParams.delete('include_opted_out');
      if (toggle && toggle.checked) { url.searchParams.set('include_opted_out', '1'); }
      show(target, url.toString());
    }
    if (toggle) { toggle.addEventListener('change', refresh); }
    refresh();
  });
})();
