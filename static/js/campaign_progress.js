// Loyalist campaign page: live sending progress. While a campaign is queued, sending or waiting, ask the
// server every few seconds how many of its messages are finished (counted from the outbox, so the numbers
// move as each message is claimed and sent) and update the bar and the counts. No inline scripts (CSP).
(function () {
  'use strict';
  var box = document.getElementById('live-progress');
  if (!box || !window.fetch) { return; }
  var url = box.getAttribute('data-progress-url');
  var EVERY = 2000;
  var failures = 0;

  function render(d) {
    var bar = box.querySelector('.progress');
    bar.setAttribute('aria-valuenow', String(d.percent));
    var inner = bar.querySelector('.progress-bar');
    inner.style.width = d.percent + '%';  // a style property, not an inline style attribute (CSP)
    inner.classList.toggle('bg-success', d.messages > 0 && d.done === d.messages);
    document.getElementById('campaign-progress').textContent = d.text;
    document.getElementById('campaign-progress-detail').textContent = d.detail;
    box.setAttribute('data-moving', d.moving ? 'yes' : 'no');
  }

  function poll() {
    fetch(url, {credentials: 'same-origin', headers: {'Accept': 'application/json'}, cache: 'no-store'})
      .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.json(); })
      .then(function (d) {
        failures = 0;
        render(d);
        // A campaign waiting for quiet hours to end moves rarely: ask less often.
        if (d.moving) { setTimeout(poll, d.status === 'waiting' ? EVERY * 5 : EVERY); }
      })
      .catch(function () { failures += 1; if (failures < 20) { setTimeout(poll, EVERY * 2); } });
  }

  if (box.getAttribute('data-moving') === 'yes') { setTimeout(poll, EVERY); }
})();
