// switchyard status page: polls status/data and renders it. Every value from the gateway
// goes into the page as text (textContent), never as HTML.
'use strict';

(function () {
  const POLL_MS = 5000;
  const KEY_STORE = 'switchyard.status.key';
  const DATA_URL = 'status/data';
  const keyRequired = document.body.dataset.auth === 'required';
  let timer = null;
  let lastOk = null;

  const $ = (id) => document.getElementById(id);

  // --- formatting ----------------------------------------------------------------------
  const int = (n) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–');
  const pct = (x, digits) =>
    x === null || x === undefined || !Number.isFinite(x) ? '–' : (x * 100).toFixed(digits === undefined ? 1 : digits) + '%';
  function ms(x) {
    if (!Number.isFinite(x) || x <= 0) return '–';
    if (x < 10) return x.toFixed(1) + ' ms';
    if (x < 1000) return Math.round(x) + ' ms';
    return (x / 1000).toFixed(2) + ' s';
  }
  function usd(x) {
    if (!Number.isFinite(x)) return '–';
    if (x === 0) return '$0.00';
    if (x < 0.01) return '$' + x.toFixed(6);
    if (x < 100) return '$' + x.toFixed(4);
    return '$' + x.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }
  function duration(s) {
    if (!Number.isFinite(s)) return '';
    if (s < 60) return Math.floor(s) + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min';
    if (s < 86400) return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
    return Math.floor(s / 86400) + ' d ' + Math.floor((s % 86400) / 3600) + ' h';
  }
  function clock(unix) {
    if (!Number.isFinite(unix)) return '–';
    return new Date(unix * 1000).toLocaleTimeString('en-GB', { hour12: false });
  }
  function ago(unix, now) {
    if (!Number.isFinite(unix) || !Number.isFinite(now)) return '';
    const d = Math.max(0, now - unix);
    return d < 5 ? 'just now' : duration(d) + ' ago';
  }

  // --- DOM helpers ---------------------------------------------------------------------
  function el(tag, props, children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === undefined || v === null) continue;
        if (k === 'text') node.textContent = String(v);
        else if (k === 'cls') node.className = v;
        else if (k === 'title') node.title = String(v);
        else node.setAttribute(k, String(v));
      }
    }
    for (const c of children || []) {
      if (c !== null && c !== undefined) node.append(c);
    }
    return node;
  }
  const td = (text, cls, extra) => el('td', Object.assign({ text: text, cls: cls }, extra || {}));
  function fill(tableId, rows, columns, emptyText) {
    const body = $(tableId).tBodies[0];
    const next = rows.length ? rows : [el('tr', null, [td(emptyText, 'empty', { colspan: columns })])];
    body.replaceChildren(...next);
  }
  function pill(text, kind) {
    return el('span', { cls: 'pill pill-' + kind, text: text });
  }
  const rateClass = (r) => (r >= 0.5 ? 'v-bad' : r >= 0.05 ? 'v-warn' : '');

  // --- rendering -----------------------------------------------------------------------
  const CIRCUIT = {
    closed: ['Closed', 'ok'],
    half_open: ['Half-open', 'warn'],
    open: ['Open', 'bad'],
  };

  function renderDeployments(list) {
    const rows = list.map((d) => {
      const [label, kind] = CIRCUIT[d.circuit] || [String(d.circuit), 'neutral'];
      let circuitText = label;
      if (d.circuit === 'open' && Number.isFinite(d.open_for_ms)) {
        const s = Math.ceil(d.open_for_ms / 1000);
        circuitText += ' · ' + (s < 120 ? s + ' s' : Math.ceil(s / 60) + ' min');
      } else if (d.circuit === 'closed' && d.ramp < 1) {
        circuitText += ' · ramp ' + pct(d.ramp, 0);
      }
      const id = el('td', { cls: 'id' }, [
        document.createTextNode(d.id),
        el('div', { cls: 'sub', text: d.kind }),
      ]);
      const serves = el('td', null, [
        el('div', { cls: 'tags' }, (d.serves || []).map((m) => el('span', { cls: 'tag', text: m }))),
      ]);
      return el('tr', { cls: d.circuit === 'open' ? 'row-open' : '', 'data-deployment': d.id, 'data-circuit': d.circuit }, [
        id,
        serves,
        el('td', null, [pill(circuitText, kind)]),
        td(ms(d.p50_ms), 'num'),
        td(ms(d.p95_ms), 'num'),
        td(pct(d.error_rate), 'num ' + rateClass(d.error_rate)),
        td(int(d.samples), 'num'),
        td(int(d.in_flight), 'num'),
      ]);
    });
    fill('deployments', rows, 8, 'No deployments configured.');
  }

  function usageRows(list, nameOf) {
    return list.map((r) => {
      const name = nameOf(r);
      return el('tr', { 'data-name': name, 'data-cost': r.cost_usd }, [
        td(name, 'id'),
        td(int(r.requests), 'num'),
        td(int(r.errors), 'num ' + (r.errors > 0 ? 'v-bad' : '')),
        td(int(r.input_tokens), 'num'),
        td(int(r.output_tokens), 'num'),
        td(usd(r.cost_usd), 'num', r.unpriced > 0 ? { title: r.unpriced + ' request(s) without a known cost' } : null),
      ]);
    });
  }

  function renderUsage(usage) {
    const since = Number.isFinite(usage.from)
      ? 'since ' + new Date(usage.from * 1000).toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit', hour12: false })
      : '';
    $('window-model').textContent = since;
    $('window-key').textContent = since;
    fill('models', usageRows(usage.models || [], (r) => r.model), 6, 'No requests in the last hour.');
    fill('keys', usageRows(usage.keys || [], (r) => (r.key === null ? '(anonymous)' : r.key)), 6, 'No requests in the last hour.');
    const note = $('usage-note');
    note.hidden = usage.available;
    note.textContent = usage.available ? '' : usage.error || 'Usage figures are unavailable.';
  }

  function renderErrors(list, now) {
    const rows = list.map((e) =>
      el('tr', { 'data-request-id': e.request_id }, [
        td(clock(e.at), 'time', { title: ago(e.at, now) }),
        el('td', null, [pill(String(e.status), e.status >= 500 ? 'bad' : 'warn')]),
        td(e.model, 'id'),
        td(e.key === null ? '–' : e.key),
        el('td', { cls: 'msg' }, [
          document.createTextNode(e.message),
          el('div', { cls: 'sub', text: e.type + ' · ' + e.request_id }),
        ]),
        el('td', { cls: 'msg' }, [el('code', { text: e.attempts || '–' })]),
      ])
    );
    fill('errors', rows, 6, 'No errors since the gateway started.');
  }

  function renderAlerts(list, now) {
    const rows = list.map((a) =>
      el('tr', null, [
        td(clock(a.at), 'time', { title: ago(a.at, now) }),
        el('td', null, [pill(a.kind, a.kind === 'breaker_open' || a.kind === 'chain_exhausted' ? 'bad' : 'warn')]),
        td(a.subject, 'id'),
        td(a.message, 'msg'),
        td(int(a.count), 'num'),
      ])
    );
    fill('alerts', rows, 5, 'No alerts since the gateway started.');
  }

  function renderReloads(list, now) {
    const rows = list.map((r) =>
      el('tr', null, [
        td(clock(r.at), 'time', { title: ago(r.at, now) }),
        td(r.trigger),
        el('td', { cls: 'result' }, [
          pill(r.result, r.result === 'ok' ? 'ok' : 'bad'),
          r.error ? el('div', { cls: 'sub', text: r.error }) : null,
        ]),
        td(r.models === null ? '–' : int(r.models), 'num'),
        td(ms(r.took_ms), 'num'),
      ])
    );
    fill('reloads', rows, 5, 'No reloads since the gateway started.');
  }

  function renderTiles(d) {
    const deployments = d.deployments || [];
    const open = deployments.filter((x) => x.circuit === 'open').length;
    const half = deployments.filter((x) => x.circuit === 'half_open').length;
    $('t-deployments').textContent = int(deployments.length);
    const sub = $('t-deployments-sub');
    sub.textContent = open ? open + ' open circuit' + (open > 1 ? 's' : '') : half ? half + ' half-open' : 'all circuits closed';
    sub.className = 'tile-sub' + (open ? ' bad' : '');
    const t = d.usage.totals;
    $('t-requests').textContent = int(t.requests);
    $('t-requests-sub').textContent = t.requests ? pct(t.errors / t.requests) + ' errors' : 'no traffic';
    $('t-spend').textContent = usd(t.cost_usd);
    $('t-spend-sub').textContent = int(t.input_tokens + t.output_tokens) + ' tokens';
    $('t-cache').textContent = !d.cache.enabled ? 'off' : d.cache.hit_rate === null ? '–' : pct(d.cache.hit_rate);
    $('t-cache-sub').textContent = d.cache.enabled
      ? int(d.cache.hits) + ' of ' + int(d.cache.requests) + ' requests'
      : 'cache disabled';
    $('t-inflight').textContent = int(d.in_flight);
    $('t-uptime').textContent = 'up ' + duration(d.uptime_s);
  }

  function render(d) {
    renderTiles(d);
    renderDeployments(d.deployments || []);
    renderUsage(d.usage);
    renderErrors(d.errors || [], d.generated_at);
    renderAlerts(d.alerts || [], d.generated_at);
    renderReloads(d.reloads || [], d.generated_at);
    $('content').hidden = false;
  }

  // --- connection and key ----------------------------------------------------------------
  function setConn(state, text) {
    const c = $('conn');
    c.className = 'conn conn-' + state;
    c.textContent = text;
  }

  function showAuth(message) {
    stop();
    $('auth').hidden = false;
    $('content').hidden = true;
    $('signout').hidden = true;
    $('auth-error').textContent = message || '';
    setConn('wait', 'Waiting for the admin key');
    $('auth-key').focus();
  }

  function storedKey() {
    try {
      return sessionStorage.getItem(KEY_STORE);
    } catch (e) {
      return null;
    }
  }

  function stop() {
    if (timer !== null) clearTimeout(timer);
    timer = null;
  }

  function schedule() {
    stop();
    timer = setTimeout(poll, POLL_MS);
  }

  async function poll() {
    const key = storedKey();
    if (keyRequired && !key) {
      showAuth('');
      return;
    }
    const headers = { Accept: 'application/json' };
    if (key) headers.Authorization = 'Bearer ' + key;
    let resp;
    try {
      resp = await fetch(DATA_URL, { headers: headers, cache: 'no-store', credentials: 'omit' });
    } catch (e) {
      setConn('offline', 'Gateway unreachable' + (lastOk ? ' · last update ' + lastOk : ''));
      schedule();
      return;
    }
    if (resp.status === 401) {
      try {
        sessionStorage.removeItem(KEY_STORE);
      } catch (e) {
        /* storage unavailable: nothing to forget */
      }
      showAuth(key ? 'That key was not accepted.' : '');
      return;
    }
    if (!resp.ok) {
      setConn('offline', 'HTTP ' + resp.status + (lastOk ? ' · last update ' + lastOk : ''));
      schedule();
      return;
    }
    let data;
    try {
      data = await resp.json();
    } catch (e) {
      setConn('offline', 'Unreadable answer from the gateway');
      schedule();
      return;
    }
    try {
      render(data);
    } catch (e) {
      // A page bug, not the gateway's: said on the console, where the browser test looks.
      console.error('status page: cannot render the data', e);
      setConn('offline', 'Cannot show this data (see the browser console)');
      schedule();
      return;
    }
    $('auth').hidden = true;
    $('signout').hidden = !key;
    lastOk = clock(data.generated_at);
    setConn('live', 'Live · updated ' + lastOk);
    schedule();
  }

  $('auth-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const key = $('auth-key').value.trim();
    if (!key) {
      $('auth-error').textContent = 'Enter the admin key.';
      return;
    }
    try {
      sessionStorage.setItem(KEY_STORE, key);
    } catch (e) {
      $('auth-error').textContent = 'This browser does not allow session storage.';
      return;
    }
    $('auth-key').value = '';
    $('auth-error').textContent = '';
    setConn('wait', 'Connecting…');
    poll();
  });

  $('signout').addEventListener('click', () => {
    try {
      sessionStorage.removeItem(KEY_STORE);
    } catch (e) {
      /* nothing stored */
    }
    showAuth('');
  });

  poll();
})();
