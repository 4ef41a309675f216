// The fleet page: everything it shows comes from the edge's API with the bearer token, which
// the page takes once from ?token= (then removes it from the address bar) and keeps in this
// tab's sessionStorage. Live updates: a streaming fetch of /api/events (server-sent events
// format), because EventSource cannot send an Authorization header.
'use strict';

const state = { token: null, devices: new Map(), selected: null, detail: null };

function takeToken() {
  const url = new URL(location.href);
  const t = url.searchParams.get('token');
  if (t) {
    sessionStorage.setItem('vigil-token', t);
    url.searchParams.delete('token');
    history.replaceState(null, '', url.pathname + url.search + url.hash);
  }
  return sessionStorage.getItem('vigil-token');
}

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: 'Bearer ' + state.token }, options.headers || {});
  const r = await fetch(path, Object.assign({}, options, { headers }));
  if (r.status === 401) { showLogin('The token was refused.'); throw new Error('unauthorized'); }
  return r;
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v; else if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c ?? ''));
  return e;
}

function worstAlarm(alarms) {
  const order = ['active_unacknowledged', 'cleared_unacknowledged', 'active_acknowledged', 'snoozed', 'disabled', 'normal'];
  const states = Object.values(alarms || {});
  for (const s of order) if (states.includes(s)) return s;
  return 'normal';
}

function ago(ms) {
  if (!ms) return '—';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 60 ? s + ' s ago' : s < 3600 ? Math.round(s / 60) + ' min ago' : new Date(ms).toLocaleString();
}

function renderFleet() {
  const body = document.querySelector('#fleet tbody');
  body.replaceChildren();
  for (const d of [...state.devices.values()].sort((a, b) => a.device.localeCompare(b.device))) {
    const alarm = worstAlarm(d.alarms);
    const tr = el('tr', { 'data-device': d.device, 'data-window': String(d.window ?? ''), class: d.device === state.selected ? 'selected' : '', onclick: () => select(d.device) },
      el('td', {}, d.device), el('td', {}, d.profile || ''),
      el('td', { class: 'verdict' }, d.label ?? '—'),
      el('td', {}, d.probability == null ? (d.anomaly_score == null ? '—' : 'score ' + Number(d.anomaly_score).toFixed(2)) : Number(d.probability).toFixed(2)),
      el('td', {}, el('span', { class: 'badge alarm-state ' + alarm }, alarm.replace(/_/g, ' '))),
      el('td', { class: 'seen' }, ago(d.last_seen_ms)),
      el('td', {}, String(d.rejects ?? 0)));
    body.append(tr);
  }
}

async function loadFleet() {
  const r = await api('/api/fleet');
  const doc = await r.json();
  state.devices = new Map(doc.devices.map(d => [d.device, d]));
  renderFleet();
}

async function select(device) {
  state.selected = device;
  renderFleet();
  const r = await api('/api/devices/' + encodeURIComponent(device));
  if (!r.ok) return;
  state.detail = await r.json();
  renderDevice();
}

function renderDevice() {
  const d = state.detail;
  if (!d) return;
  document.getElementById('device').hidden = false;
  document.getElementById('device-name').textContent = d.device + ' — ' + d.profile;
  // Timeline: one column per window, height = probability (or score), colour = healthy or not.
  const svg = document.getElementById('timeline');
  svg.replaceChildren();
  const vs = d.verdicts || [];
  const unhealthy = new Set(d.conditions || []);
  const w = 600 / Math.max(vs.length, 1);
  vs.forEach((v, i) => {
    const p = v.probability ?? Math.min(1, (v.anomaly_score ?? 0) / 6);
    const h = Math.max(4, p * 110);
    const r = document.createElementNS('http://www.w3.org/2000/svg', 'rect');
    r.setAttribute('x', i * w); r.setAttribute('width', Math.max(1, w - 1));
    r.setAttribute('y', 120 - h); r.setAttribute('height', h);
    r.setAttribute('fill', unhealthy.has(v.label) ? '#f85149' : '#3fb950');
    const t = document.createElementNS('http://www.w3.org/2000/svg', 'title');
    t.textContent = 'window ' + v.window + ': ' + v.label;
    r.append(t); svg.append(r);
  });
  const last = vs[vs.length - 1];
  document.getElementById('timeline-legend').textContent = vs.length + ' windows; latest ' + (last ? 'window ' + last.window + ': ' + last.label : '—') + ' (red: unhealthy)';
  // Contributions of the latest window.
  const box = document.getElementById('contributions');
  box.replaceChildren();
  const contrib = last && Array.isArray(last.contributions) ? last.contributions : [];
  if (!contrib.length) box.append(el('p', { class: 'muted' }, 'No per-channel contributions: the scorer gives none, or no single channel changes the verdict when replaced by its window mean.'));
  for (const c of contrib) {
    const fill = el('div', { class: 'fill' });
    fill.style.width = Math.round(c.share * 160) + 'px'; // CSSOM: allowed by the page's CSP
    box.append(el('div', { class: 'bar' }, el('span', {}, c.channel), fill, el('span', {}, (c.share * 100).toFixed(0) + ' %')));
  }
  // Alarms: one per condition, with actions and history.
  const alarms = document.getElementById('alarms');
  alarms.replaceChildren();
  for (const condition of d.conditions || []) {
    const a = (d.alarms || {})[condition];
    const s = a ? a.state.state : 'normal';
    const card = el('div', { class: 'alarm', 'data-condition': condition },
      el('strong', {}, 'Condition ' + condition + ' '),
      el('span', { class: 'badge alarm-state ' + s }, s.replace(/_/g, ' ')),
      a && a.state.until_ms ? el('span', { class: 'muted' }, ' until ' + new Date(a.state.until_ms).toLocaleTimeString()) : '',
      a && a.acknowledged ? el('span', { class: 'muted' }, ' — acknowledged by ' + a.acknowledged.by + (a.acknowledged.note ? ': ' + a.acknowledged.note : '')) : '',
      el('div', {},
        el('button', { class: 'ack', onclick: () => act(condition, { action: 'acknowledge', note: 'from the fleet page' }) }, 'Acknowledge'),
        el('button', { class: 'snooze', onclick: () => act(condition, { action: 'snooze', for_s: 3600 }) }, 'Snooze 1 h'),
        el('button', { class: 'reset', onclick: () => act(condition, { action: 'reset' }) }, 'Reset')),
      el('p', { class: 'error' }));
    const hist = el('ul', { class: 'history' });
    for (const h of (a ? a.history : []).slice(-8).reverse()) {
      hist.append(el('li', {}, new Date(h.at_ms).toLocaleTimeString() + ' ' + h.cause + ' → ' + h.state.state.replace(/_/g, ' ') + (h.by ? ' (' + h.by + ')' : '')));
    }
    card.append(hist);
    alarms.append(card);
  }
}

async function act(condition, command) {
  const id = (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random()).replace(/[^A-Za-z0-9-]/g, '');
  const body = Object.assign({ device: state.selected, condition, by: 'fleet-page', id }, command);
  const r = await api('/api/alarm', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  const answer = await r.json().catch(() => ({}));
  if (!r.ok) {
    const card = document.querySelector('.alarm[data-condition="' + CSS.escape(condition) + '"] .error');
    if (card) card.textContent = answer.error || ('refused: ' + r.status);
    return;
  }
  await Promise.all([select(state.selected), loadFleet()]);
}

function onEvent(kind, data) {
  if (kind === 'verdict') {
    const d = state.devices.get(data.device) || { device: data.device, alarms: {}, rejects: 0 };
    Object.assign(d, { profile: data.profile, label: data.label, probability: data.probability, anomaly_score: data.anomaly_score, last_seen_ms: data.scored_at_ms, window: data.window });
    state.devices.set(data.device, d);
    renderFleet();
    if (data.device === state.selected && state.detail) {
      state.detail.verdicts.push(data);
      if (state.detail.verdicts.length > 120) state.detail.verdicts.shift();
      renderDevice();
    }
  } else if (kind === 'alarm') {
    const d = state.devices.get(data.device);
    if (d) { d.alarms = Object.assign({}, d.alarms, { [data.condition]: data.state }); renderFleet(); }
    if (data.device === state.selected) select(state.selected);
  } else if (kind === 'reject') {
    const d = state.devices.get(data.device) || { device: data.device, alarms: {} };
    d.rejects = data.rejects; state.devices.set(data.device, d); renderFleet();
  } else if (kind === 'resync') {
    loadFleet();
  }
}

async function follow() {
  const live = document.getElementById('live');
  for (;;) {
    try {
      const r = await api('/api/events');
      if (!r.ok || !r.body) throw new Error('events: ' + r.status);
      live.textContent = 'live'; live.className = 'live on';
      // A reconnect may have missed events: reload once connected.
      loadFleet();
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const frame = buf.slice(0, i); buf = buf.slice(i + 2);
          let kind = 'message', data = '';
          for (const line of frame.split('\n')) {
            if (line.startsWith('event: ')) kind = line.slice(7);
            else if (line.startsWith('data: ')) data += line.slice(6);
          }
          if (data) { try { onEvent(kind, JSON.parse(data)); } catch (e) { console.warn(e); } }
        }
      }
    } catch (e) {
      if (e.message === 'unauthorized') return;
    }
    live.textContent = 'reconnecting'; live.className = 'live off';
    await new Promise(r => setTimeout(r, 2000));
  }
}

function showLogin(message) {
  document.getElementById('app').hidden = true;
  document.getElementById('login').hidden = false;
  document.getElementById('login-error').textContent = message || '';
}

async function start() {
  state.token = takeToken();
  document.getElementById('login-form').addEventListener('submit', e => {
    e.preventDefault();
    sessionStorage.setItem('vigil-token', document.getElementById('token-input').value.trim());
    location.reload();
  });
  if (!state.token) { showLogin(); return; }
  document.getElementById('login').hidden = true;
  document.getElementById('app').hidden = false;
  await loadFleet();
  follow();
  setInterval(renderFleet, 10000);
}

start();
