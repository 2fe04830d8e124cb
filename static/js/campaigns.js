// Loyalist campaign builder: live audience counts, exclusions, phone preview, segments and cost.
// The server computes everything (the same build_audience and render_body as creating a campaign);
// this script only asks it again as the form changes. No inline scripts or styles (CSP).
(function () {
  'use strict';
  var form = document.getElementById('campaign-builder');
  if (!form || !window.fetch) { return; }
  var audienceUrl = form.getAttribute('data-audience-url');
  var previewUrl = form.getAttribute('data-preview-url');
  var currency = form.getAttribute('data-currency') || 'USD';
  var FILTERS = ['band', 'lifecycle', 'tier', 'store', 'min_recency', 'max_recency', 'days_since_sms', 'q', 'consent',
    'include_lost', 'customer'];
  var AUDIENCE = FILTERS.concat(['segment', 'control']);
  var PREVIEW = ['template', 'expires', 'when', 'send_at'];
  var messages = null;
  var audienceSeq = 0;
  var previewSeq = 0;

  function $(id) { return document.getElementById(id); }
  // Numbers as the server writes them (formatting.py): 3,081 and $0.0083, never a bare 3081.
  function num(n) { return Number(n).toLocaleString('en-US'); }
  function counted(n, word) { return num(n) + ' ' + word + (Number(n) === 1 ? '' : 's'); }
  function price(n) {
    try {
      return Number(n).toLocaleString('en-US', {style: 'currency', currency: currency, maximumFractionDigits: 4});
    } catch (e) { return currency + ' ' + n; }
  }
  function el(name) { return form.elements[name]; }
  function value(name) {
    var field = el(name);
    if (!field) { return ''; }
    if (field.length !== undefined && field.tagName !== 'SELECT') {  // a radio group
      for (var i = 0; i < field.length; i++) { if (field[i].checked) { return field[i].value; } }
      return '';
    }
    if (field.type === 'checkbox') { return field.checked && !field.disabled ? '1' : ''; }
    return field.disabled ? '' : (field.value || '');
  }
  function debounce(fn, ms) {
    var timer = null;
    return function () { clearTimeout(timer); timer = setTimeout(fn, ms); };
  }
  function show(node, text) {
    node.textContent = text || '';
    node.classList.toggle('d-none', !text);
  }
  function json(response) {
    return response.json().then(function (data) { return {ok: response.ok, data: data}; });
  }

  // --- audience ---------------------------------------------------------------------------
  function renderAudience(d) {
    ['messages', 'eligible', 'control', 'total', 'excluded'].forEach(function (key) {
      form.querySelectorAll('[data-audience="' + key + '"]').forEach(function (node) {
        node.textContent = num(d[key]);
      });
    });
    var list = $('exclusion-list');
    list.textContent = '';
    d.exclusions.forEach(function (e) {
      var li = document.createElement('li');
      li.setAttribute('data-exclusion', e.key);
      li.appendChild(document.createTextNode(e.label + ': '));
      var strong = document.createElement('strong');
      strong.textContent = num(e.count);
      li.appendChild(strong);
      list.appendChild(li);
    });
    messages = d.messages;
  }

  function refreshAudience() {
    var params = new URLSearchParams();
    AUDIENCE.forEach(function (name) { var v = value(name); if (v) { params.append(name, v); } });
    var seq = ++audienceSeq;
    fetch(audienceUrl + '?' + params.toString(), {credentials: 'same-origin', headers: {'Accept': 'application/json'}})
      .then(json)
      .then(function (r) {
        if (seq !== audienceSeq) { return; }
        show($('audience-error'), r.ok ? r.data.problem : r.data.error);
        if (r.ok) { renderAudience(r.data); }
        refreshPreview();
      })
      .catch(function () { show($('audience-error'), 'Could not count the audience; press “Check audience and preview”.'); });
  }

  // --- preview ----------------------------------------------------------------------------
  function bubble(p) {
    var box = document.createElement('div');
    box.className = 'phone-preview mb-2';
    var head = document.createElement('div');
    head.className = 'small text-body-secondary mb-1';
    head.textContent = (p.phone || 'Example') + (p.first_name ? ' · ' + p.first_name : '') + ' · ' +
      counted(p.segments, 'segment');
    var text = document.createElement('div');
    text.className = 'bubble';
    text.textContent = p.body;  // textContent: a customer's name can never become markup
    box.appendChild(head);
    box.appendChild(text);
    return box;
  }

  function renderPreview(d) {
    var holder = $('phone-previews');
    holder.textContent = '';
    d.previews.forEach(function (p) { holder.appendChild(bubble(p)); });
    $('preview-caption').textContent = d.example
      ? '(nobody in this audience can be messaged: an example recipient)'
      : '(the first customers of this audience; coupon codes are examples)';
    $('message-stats').textContent = d.encoding + ' · ' + counted(d.characters, 'character') + ' · ' +
      counted(d.segments, 'segment') + ' per message (' + d.per_segment_limit + ' per segment)';
    show($('ucs2-warning'), d.warning);
    if (d.cost_text !== null && d.cost_text !== undefined) {
      $('cost-estimate').textContent = d.cost_text;
      $('cost-detail').textContent = '(' + num(d.messages) + ' × ' + counted(d.segments, 'segment') +
        ' × ' + price(d.price_per_segment) + ' per segment)';
    }
    $('quiet-note').textContent = d.quiet_note || '';
  }

  function refreshPreview() {
    if (!value('template').trim()) { return; }
    var data = new FormData(form);
    data.delete('action');
    if (messages !== null) { data.set('messages', String(messages)); }
    var seq = ++previewSeq;
    fetch(previewUrl, {method: 'POST', body: data, credentials: 'same-origin', headers: {'Accept': 'application/json'}})
      .then(json)
      .then(function (r) {
        if (seq !== previewSeq) { return; }
        show($('template-error'), r.ok ? '' : r.data.error);
        if (r.ok) { renderPreview(r.data); }
      })
      .catch(function () { show($('template-error'), 'Could not render the preview; press “Check audience and preview”.'); });
  }

  // --- form behaviour ---------------------------------------------------------------------
  function syncSegment() {
    var chosen = !!value('segment');
    FILTERS.forEach(function (name) {
      var field = el(name);
      if (field && field.type !== 'hidden') { field.disabled = chosen; }
    });
    $('audience-filters').classList.toggle('opacity-50', chosen);
  }
  function syncWhen() {
    $('send-at-group').classList.toggle('d-none', value('when') !== 'later');
  }

  var audienceLater = debounce(refreshAudience, 350);
  var previewLater = debounce(refreshPreview, 300);
  function changed(event) {
    var name = event.target.name;
    if (name === 'segment') { syncSegment(); }
    if (name === 'when') { syncWhen(); }
    if (AUDIENCE.indexOf(name) >= 0) { audienceLater(); } else if (PREVIEW.indexOf(name) >= 0) { previewLater(); }
  }
  form.addEventListener('input', changed);
  form.addEventListener('change', changed);
  syncSegment();
  syncWhen();
  refreshAudience();
})();
