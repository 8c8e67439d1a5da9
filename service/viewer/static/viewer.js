// MBC timeline viewer: draws what POST /viewer/api/picture returns. Every clinical fact, label
// and grouping comes from the service (mappings.timeline, cds_hooks.evaluate); this file only lays
// it out. Plain DOM and SVG, no library, no request but to this service.
'use strict';

(function () {
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const $ = (id) => document.getElementById(id);

  // --- small DOM helpers: text always goes in as text nodes, never as HTML -------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') node.className = v;
      else node.setAttribute(k, v === true ? '' : String(v));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) node.setAttribute(k, String(v));
    }
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function refs(list) {
    const items = (list || []).filter(Boolean);
    if (!items.length) return el('span', { class: 'meta' }, 'no reference');
    return el('span', { class: 'refs-inline' }, items.flatMap((r, i) => [i ? ', ' : '', el('code', {}, r)]));
  }

  const show = (id, visible = true) => { $(id).hidden = !visible; };

  function finish(state) {
    document.body.dataset.state = state;
    // performance.now() counts from the start of this page's navigation: request, API call, drawing.
    document.body.dataset.loadMs = String(Math.round(performance.now()));
  }

  function message(title, text, kind) {
    const box = $('status');
    box.replaceChildren(el('strong', {}, title), el('span', {}, text));
    box.className = kind || '';
    show('status');
  }

  // --- dates -------------------------------------------------------------------------------
  const DAY = 86400000;
  function ms(iso) {
    if (!iso) return null;
    const [y, m, d] = iso.slice(0, 10).split('-').map(Number);
    return Date.UTC(y, m - 1, d);
  }

  // --- the overview, gaps, sites, therapy and cards ------------------------------------------
  function renderOverview(data) {
    const p = data.picture;
    const t = data.timeline;
    const rows = [
      ['Subtype', p.subtype === 'unknown' ? 'unknown (a marker that decides it is unknown or equivocal)' : p.subtype],
      ['ER', `${p.er.status}${p.er.percent !== null && p.er.percent !== undefined ? ` ${p.er.percent}%` : ''}, ${p.er.date || 'undated'}, ${p.er.specimen} sample`],
      ['PR', `${p.pr.status}${p.pr.percent !== null && p.pr.percent !== undefined ? ` ${p.pr.percent}%` : ''}, ${p.pr.date || 'undated'}, ${p.pr.specimen} sample`],
      ['HER2', `${p.her2.status} (category ${p.her2.category}), ${p.her2.date || 'undated'}, ${p.her2.specimen} sample`],
      ['Metastatic', p.metastatic ? `yes, first recorded ${t.metastasisDate || 'undated'}` : 'no metastasis recorded'],
      ['Sites', p.sites.length ? p.sites.join(', ') + (p.visceral ? ' (visceral disease)' : '') : 'none recorded'],
    ];
    if (p.discordance && p.discordance.length) {
      rows.push(['Receptor change', p.discordance.map((d) => `${d.marker} ${d.from} to ${d.to}`).join('; ')]);
    }
    $('overview-list').replaceChildren(...rows.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
    show('overview');
  }

  function renderGaps(gaps) {
    if (!gaps.length) return;
    $('gap-list').replaceChildren(...gaps.map((g) => el('li', { 'data-key': g.key },
      el('code', {}, g.key), `: ${g.reason}. Not checked: ${g.feeds}.`)));
    show('gaps');
  }

  function renderSites(t) {
    const items = t.sites.map((s) => el('li', { 'data-site': s.site },
      el('span', { class: 'site-name' }, s.site),
      s.regional ? ' (regional lymph node, not distant metastasis)' : '',
      `, first recorded ${s.firstSeen || 'undated'}`,
      s.dates.length > 1 ? `, again ${s.dates.slice(1).join(', ')}` : '',
      el('br'), refs(s.evidence)));
    $('site-list').replaceChildren(...(items.length ? items : [el('li', {}, 'No metastatic site recorded.')]));
    show('sites-section');
  }

  function lineName(line) {
    if (line.setting === 'metastatic') return `Line ${line.line}`;
    return line.setting === 'early' ? 'Early (curative-intent) treatment' : 'Treatment (setting unknown)';
  }

  function renderTherapy(data) {
    const t = data.timeline;
    const cur = t.currentLine;
    const box = $('current-line');
    if (cur) {
      box.replaceChildren(el('p', { id: 'current-line-text' }, el('strong', {}, `${lineName(cur)}: ${cur.agents.join(' + ')}`),
        `, since ${cur.start || 'undated'} (ongoing). `, refs(cur.evidence)));
    } else {
      const past = t.lines.filter((l) => l.setting === 'metastatic');
      const last = past[past.length - 1];
      box.replaceChildren(el('p', { id: 'current-line-text' }, last
        ? `No line is ongoing. Last: ${lineName(last)}, ${last.agents.join(' + ')}, ${last.start} to ${last.end || 'unknown'}.`
        : 'No line of therapy for metastatic disease recorded.'));
    }
    const opts = data.therapyOptions;
    const target = $('options');
    if (opts && Array.isArray(opts.options)) {
      const head = el('tr', {}, ['Option', 'Requirements', 'Already given', 'Evidence'].map((h) => el('th', { scope: 'col' }, h)));
      const rows = opts.options.map((o) => el('tr', { 'data-option': o.id },
        el('td', {}, (data.optionNames && data.optionNames[o.id]) || o.agents.join(', ')),
        el('td', {}, (o.requires && o.requires.length ? o.requires.join('; ') : 'none'), ' ',
          el('span', { class: o.met === false ? 'unmet' : 'met' }, o.met === false ? 'not met' : 'met')),
        el('td', {}, o.given ? 'yes' : (o.givenAgents && o.givenAgents.length ? `partly: ${o.givenAgents.join(', ')}` : 'no')),
        el('td', {}, [o.evidence, o.source].filter(Boolean).join(', '))));
      target.replaceChildren(el('p', {}, `Options for line ${opts.line} (from the therapy-options card; in the order of the project's reference table, awaiting clinical review):`),
        el('div', { class: 'scroll-x' }, el('table', {}, el('thead', {}, head), el('tbody', {}, rows))));
    } else if (data.cards.some((c) => c.rule === 'therapy-options')) {
      target.replaceChildren(el('p', {}, 'The options, with their evidence, are in the ',
        el('a', { href: '#card-therapy-options' }, 'therapy-options card'), ' below.'));
    } else {
      target.replaceChildren(el('p', {}, 'No therapy-options card fired (it needs metastatic disease with a known subtype).'));
    }
    show('therapy-section');
  }

  const INDICATOR = { critical: ['\u25A0', 'Critical'], warning: ['\u25B2', 'Warning'], info: ['\u25CF', 'Info'] };

  function renderCards(cards) {
    const items = cards.map((c) => {
      const [icon, word] = INDICATOR[c.indicator] || ['', c.indicator];
      const detail = el('div', { class: 'detail' });
      detail.innerHTML = c.detailHtml; // rendered by the service with markdown-it, raw HTML disabled
      return el('li', { class: `card ${c.indicator}`, id: `card-${c.rule}`, 'data-rule': c.rule },
        el('h3', {}, el('span', { class: 'indicator' }, `${icon} ${word}`), c.summary),
        detail,
        el('p', { class: 'refs' }, 'Rests on: ', refs(c.evidence)),
        el('p', { class: 'source' }, 'Source: ', el('a', { href: c.source.url, rel: 'noopener noreferrer', target: '_blank' }, c.source.label),
          el('span', { class: 'meta' }, ` (rule ${c.rule})`)));
    });
    $('cards').replaceChildren(...(items.length ? items : [el('li', {}, 'No card fired.')]));
    show('cards-section');
  }

  function renderTable(events) {
    const rows = events.map((e) => el('tr', { 'data-lane': e.lane, 'data-date': e.date || '' },
      el('td', { class: 'when' }, e.date || 'undated'), el('td', {}, e.lane), el('td', {}, e.label), el('td', {}, refs(e.evidence))));
    $('timeline-table').tBodies[0].replaceChildren(...rows);
    show('table-section');
  }

  // --- the SVG timeline ----------------------------------------------------------------------
  function legend() {
    const sample = (shape, text) => {
      const s = svg('svg', { width: 14, height: 14, viewBox: '-7 -7 14 14', 'aria-hidden': 'true' });
      s.append(shape);
      return el('span', {}, s, text);
    };
    $('legend').replaceChildren(
      sample(svg('circle', { r: 5, fill: '#fff', stroke: '#0072B2', 'stroke-width': 2 }), 'primary-tumour sample'),
      sample(svg('path', { d: 'M0 -6 L6 0 L0 6 L-6 0 Z', fill: '#E69F00', stroke: '#1b1b1b' }), 'metastasis sample'),
      sample(svg('rect', { x: -5, y: -5, width: 10, height: 10, fill: '#fff', stroke: '#1b1b1b' }), 'sample of unknown origin'),
      el('span', {}, 'underlined* = changed since the previous sample'),
      sample(svg('path', { d: 'M0 -6 L6 5 L-6 5 Z', fill: '#D55E00' }), 'metastatic site first recorded'),
      el('span', {}, 'hatched bar = early (curative-intent) treatment; arrow = ongoing'),
      el('span', {}, 'dashed line PD = progression (disease status worsened); dotted line = first metastasis'));
  }

  function layoutRows(items, x0, x1, width) {
    // Greedy rows so labels do not overlap: an item goes on the first row whose last label ends before it.
    const ends = [];
    return items.map((item) => {
      const start = x0(item);
      const end = x1 ? x1(item) : start + width(item);
      let row = ends.findIndex((e) => e + 6 < start);
      if (row === -1) { row = ends.length; ends.push(end); } else ends[row] = end;
      return row;
    });
  }

  function drawTimeline(data) {
    const t = data.timeline;
    const root = $('timeline');
    show('timeline-section'); // measured visible: a hidden container has no width
    const W = Math.max(640, Math.round(root.parentElement.getBoundingClientRect().width || 1000));
    const LEFT = 96;
    const RIGHT = 24;
    const t0 = ms(t.start);
    const t1 = ms(t.end);
    const span = Math.max(t1 - t0, 30 * DAY);
    const pad = span * 0.03;
    const x = (iso) => LEFT + ((ms(iso) - (t0 - pad)) / (span + 2 * pad)) * (W - LEFT - RIGHT);
    const charW = 6.8; // average width of a 12px character, for label layout
    // A label that would run past the right edge goes to the left of its mark instead.
    const label = (cx, cy, text, attrs) => {
      const right = cx + 10 + text.length * charW > W - 4;
      return svg('text', { x: right ? cx - 10 : cx + 10, y: cy, 'text-anchor': right ? 'end' : null, ...(attrs || {}) }, text);
    };
    const parts = [];
    let y = 28;

    const defs = svg('defs');
    const hatch = svg('pattern', { id: 'hatch', width: 6, height: 6, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' });
    hatch.append(svg('rect', { width: 6, height: 6, fill: '#fff' }), svg('line', { x1: 0, y1: 0, x2: 0, y2: 6, stroke: '#009E73', 'stroke-width': 3 }));
    const arrow = svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 8, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto' });
    arrow.append(svg('path', { d: 'M0 0 L10 5 L0 10 Z', fill: '#1b1b1b' }));
    defs.append(hatch, arrow);
    parts.push(defs);

    const summary = `From ${t.start} to ${t.end}: ${t.receptors.length} receptor test sample(s), ${t.sites.length} metastatic site(s), `
      + `${t.lines.length} treatment period(s), ${t.progressions.length} progression(s), ${t.lvef.length} LVEF value(s). The same facts are in the table below.`;
    parts.push(svg('title', { id: 'timeline-title' }, 'Disease course timeline'), svg('desc', { id: 'timeline-desc' }, summary));

    // Axis: years, or months when the course is short.
    const axis = svg('g', { class: 'axis' });
    const startYear = new Date(t0 - pad).getUTCFullYear();
    const endYear = new Date(t1 + pad).getUTCFullYear();
    const monthly = span < 2 * 365 * DAY;
    for (let yr = startYear; yr <= endYear; yr++) {
      for (let m = 0; m < 12; m += monthly ? 3 : 12) {
        const iso = `${yr}-${String(m + 1).padStart(2, '0')}-01`;
        if (ms(iso) < t0 - pad || ms(iso) > t1 + pad) continue;
        const xx = x(iso);
        const tick = monthly ? iso.slice(0, 7) : String(yr);
        axis.append(svg('line', { x1: xx, x2: xx, y1: 14, y2: 20 }));
        if (xx + 4 + tick.length * charW < W) axis.append(svg('text', { x: xx + 2, y: 12 }, tick));
      }
    }
    axis.append(svg('line', { x1: LEFT, x2: W - RIGHT, y1: 20, y2: 20 }));
    parts.push(axis);

    const lanes = [];
    function lane(name, height, draw) {
      const g = svg('g', { class: 'lane', 'data-lane': name });
      g.append(svg('text', { class: 'lane-label', x: 6, y: y + 14 }, name));
      const used = draw(g, y) || height;
      y += used;
      g.append(svg('line', { class: 'lane-sep', x1: 0, x2: W, y1: y, y2: y }));
      lanes.push(g);
      y += 4;
    }

    // Receptor samples: shape = specimen, label = each marker's status in words.
    lane('Receptors', 62, (g, top) => {
      if (!t.receptors.length) { g.append(svg('text', { class: 'empty', x: LEFT, y: top + 16 }, 'no receptor result recorded')); return 28; }
      const dated = t.receptors.filter((s) => s.date);
      const rows = layoutRows(dated, (s) => x(s.date) - 6, null, () => 12 + 8 * charW);
      dated.forEach((s, i) => {
        const cx = x(s.date);
        const cy = top + 12 + rows[i] * 60;
        const mark = svg('g', { class: `receptor-mark specimen-${s.specimen}`, 'data-date': s.date, 'data-key': s.key });
        if (s.specimen === 'metastasis') mark.append(svg('path', { d: `M${cx} ${cy - 7} L${cx + 7} ${cy} L${cx} ${cy + 7} L${cx - 7} ${cy} Z`, fill: '#E69F00', stroke: '#1b1b1b' }));
        else if (s.specimen === 'primary') mark.append(svg('circle', { cx, cy, r: 6, fill: '#fff', stroke: '#0072B2', 'stroke-width': 2.5 }));
        else mark.append(svg('rect', { x: cx - 5.5, y: cy - 5.5, width: 11, height: 11, fill: '#fff', stroke: '#1b1b1b' }));
        const where = `${s.specimen} sample${s.site ? `, ${s.site}` : ''}`;
        const head = `${s.date} ${s.site || s.specimen}`;
        const right = cx + 10 + Math.max(head.length, 14) * charW > W - 4;
        mark.append(svg('text', { x: right ? cx - 10 : cx + 10, y: cy + 4, 'text-anchor': right ? 'end' : null }, head));
        Object.values(s.markers).forEach((m, j) => {
          mark.append(svg('text', { x: right ? cx - 10 : cx + 10, y: cy + 17 + j * 13, 'text-anchor': right ? 'end' : null,
            class: m.changedFrom ? 'changed' : null }, m.short + (m.changedFrom ? '*' : '')));
        });
        const lines = Object.values(s.markers).map((m) => m.label + (m.changedFrom ? `, changed from ${m.changedFrom}` : ''));
        mark.append(svg('title', {}, `${s.date}, ${where}: ${lines.join('; ')}. ${s.evidence.join(', ')}`));
        g.append(mark);
      });
      return 62 + Math.max(0, ...rows) * 60;
    });

    // Metastatic sites at their first date.
    lane('Sites', 34, (g, top) => {
      const sites = t.sites.filter((s) => s.firstSeen);
      if (!sites.length) { g.append(svg('text', { class: 'empty', x: LEFT, y: top + 16 }, 'no metastatic site recorded')); return 28; }
      const rows = layoutRows(sites, (s) => x(s.firstSeen) - 6, null, (s) => 14 + (s.site.length + 11) * charW);
      sites.forEach((s, i) => {
        const cx = x(s.firstSeen);
        const cy = top + 14 + rows[i] * 18;
        const mark = svg('g', { class: 'site-mark', 'data-site': s.site, 'data-date': s.firstSeen });
        mark.append(s.regional
          ? svg('path', { d: `M${cx} ${cy - 6} L${cx + 6} ${cy + 5} L${cx - 6} ${cy + 5} Z`, fill: '#fff', stroke: '#D55E00', 'stroke-width': 2 })
          : svg('path', { d: `M${cx} ${cy - 6} L${cx + 6} ${cy + 5} L${cx - 6} ${cy + 5} Z`, fill: '#D55E00' }));
        mark.append(label(cx, cy + 4, `${s.site}${s.regional ? ' (regional)' : ''} ${s.firstSeen}`));
        mark.append(svg('title', {}, `${s.site}${s.regional ? ', regional lymph node (not distant)' : ''}, first recorded ${s.firstSeen}. ${s.evidence.join(', ')}`));
        g.append(mark);
      });
      return 26 + Math.max(0, ...rows) * 18;
    });

    // Treatment bars: early treatment hatched, lines of therapy solid, ongoing with an arrow.
    lane('Therapy', 34, (g, top) => {
      const lines = t.lines.filter((l) => l.start);
      if (!lines.length) { g.append(svg('text', { class: 'empty', x: LEFT, y: top + 16 }, 'no anticancer treatment recorded')); return 28; }
      const name = (l) => `${l.setting === 'metastatic' ? `L${l.line}` : l.setting === 'early' ? 'early' : '?'}: ${l.agents.join(' + ')}`;
      const span = (l) => [x(l.start), Math.max(x(l.ongoing ? t.end : (l.end || l.start)), x(l.start) + 4)];
      // The label starts under the bar, or ends at the right edge when it would run past it.
      const labelStart = (l) => Math.min(span(l)[0], W - 4 - name(l).length * charW);
      const rows = layoutRows(lines, (l) => Math.min(span(l)[0], labelStart(l)),
        (l) => Math.max(span(l)[1] + 12, labelStart(l) + name(l).length * charW), null);
      lines.forEach((l, i) => {
        const [x0, x1] = span(l);
        const cy = top + 6 + rows[i] * 30;
        const mark = svg('g', { class: `line-bar setting-${l.setting}`, 'data-line': l.line, 'data-start': l.start });
        const fill = l.setting === 'metastatic' ? (l.line % 2 ? '#56B4E9' : '#E69F00') : null;
        mark.append(svg('rect', { x: x0, y: cy, width: x1 - x0, height: 10, rx: 2, class: l.setting === 'metastatic' ? 'bar-metastatic' : 'bar-early', fill }));
        if (l.ongoing) mark.append(svg('line', { x1: x1 - 2, x2: x1 + 10, y1: cy + 5, y2: cy + 5, stroke: '#1b1b1b', 'stroke-width': 1.5, 'marker-end': 'url(#arrow)' }));
        mark.append(svg('text', { x: labelStart(l), y: cy + 21 }, name(l)));
        const until = l.ongoing ? 'ongoing' : `until ${l.end || 'unknown'}`;
        mark.append(svg('title', {}, `${lineName(l)}: ${l.agents.join(' + ')}, from ${l.start} ${until}${l.stopReason ? `, stopped: ${l.stopReason}` : ''}. ${l.evidence.join(', ')}`));
        g.append(mark);
      });
      return 32 + Math.max(0, ...rows) * 30;
    });

    // LVEF series with the 50% value the cardiac-monitoring rule uses.
    lane('LVEF', 84, (g, top) => {
      const pts = t.lvef.filter((p) => p.date && typeof p.value === 'number');
      if (!pts.length) { g.append(svg('text', { class: 'empty', x: LEFT, y: top + 16 }, 'no LVEF recorded')); return 28; }
      const lo = Math.min(35, ...pts.map((p) => p.value - 5));
      const hi = Math.max(70, ...pts.map((p) => p.value + 5));
      const yv = (v) => top + 8 + (1 - (v - lo) / (hi - lo)) * 64;
      g.append(svg('line', { class: 'lvef-ref', x1: LEFT, x2: W - RIGHT, y1: yv(50), y2: yv(50) }),
        svg('text', { x: LEFT - 30, y: yv(50) + 4 }, '50%'));
      if (pts.length > 1) g.append(svg('polyline', { class: 'lvef-path', points: pts.map((p) => `${x(p.date)},${yv(p.value)}`).join(' ') }));
      pts.forEach((p) => {
        const mark = svg('g', { class: 'lvef-point', 'data-date': p.date, 'data-value': p.value });
        mark.append(svg('circle', { cx: x(p.date), cy: yv(p.value), r: 4, fill: '#0072B2', stroke: '#fff' }),
          label(x(p.date) - 4, yv(p.value) - 5, `${p.value}${p.unit}`),
          svg('title', {}, `LVEF ${p.value}${p.unit} on ${p.date}. ${p.evidence}`));
        g.append(mark);
      });
      return 84;
    });

    if (t.biomarkers.length) {
      lane('Biomarkers', 30, (g, top) => {
        const items = t.biomarkers.filter((b) => b.date);
        const rows = layoutRows(items, (b) => x(b.date) - 5, null, (b) => 12 + (b.marker.length + b.result.length + 2) * charW);
        items.forEach((b, i) => {
          const cx = x(b.date);
          const cy = top + 12 + rows[i] * 16;
          const mark = svg('g', { class: 'biomarker-mark', 'data-marker': b.marker });
          mark.append(svg('rect', { x: cx - 4, y: cy - 4, width: 8, height: 8, fill: '#CC79A7', stroke: '#1b1b1b' }),
            label(cx - 3, cy + 4, `${b.marker} ${b.result}`),
            svg('title', {}, `${b.marker} ${b.result}${b.germline === true ? ' (germline)' : b.germline === false ? ' (somatic)' : ''} on ${b.date}. ${b.evidence.join(', ')}`));
          g.append(mark);
        });
        return 24 + Math.max(0, ...rows) * 16;
      });
    }

    // Vertical markers: first metastasis, progressions, today.
    const marks = svg('g', { class: 'markers' });
    const bottom = y;
    if (t.metastasisDate) {
      const xx = x(t.metastasisDate);
      marks.append(svg('line', { class: 'met-line', x1: xx, x2: xx, y1: 20, y2: bottom }));
    }
    t.progressions.filter((p) => p.date).forEach((p) => {
      const xx = x(p.date);
      const g = svg('g', { class: 'progression-mark', 'data-date': p.date });
      g.append(svg('line', { class: 'marker-line', x1: xx, x2: xx, y1: 20, y2: bottom }),
        svg('text', { x: xx + 2, y: bottom + 12 }, 'PD'),
        svg('title', {}, `Disease status worsened on ${p.date}. ${p.evidence}`));
      marks.append(g);
    });
    const xt = x(t.today);
    marks.append(svg('line', { class: 'today-line', x1: xt, x2: xt, y1: 20, y2: bottom }),
      svg('text', { x: xt - 3, y: bottom + 24, 'text-anchor': 'end' }, `today ${t.today}`));
    parts.push(...lanes, marks);

    const height = bottom + 30;
    root.setAttribute('viewBox', `0 0 ${W} ${height}`);
    root.setAttribute('width', W);
    root.setAttribute('height', height);
    root.replaceChildren(...parts);
    legend();
    show('timeline-section');
  }

  // --- load ----------------------------------------------------------------------------------
  function render(data) {
    if (data.mode === 'demo') show('demo-banner');
    $('patient-line').textContent = `Patient/${data.patient} · ${data.fhirServer || 'local file'} · as of ${data.today}`;
    $('footer').textContent = `${data.resourcesRead} FHIR resources read in ${data.fetchMs} ms. Every fact names the FHIR resources it rests on (Type/id). `
      + 'Cards and timeline come from the same mapping as the CDS Hooks service.';
    document.body.dataset.fetchMs = String(data.fetchMs);
    renderGaps(data.gaps);
    if (!data.picture.breastCancer) {
      message('No breast cancer recorded', data.gaps.some((g) => g.key === 'conditions')
        ? 'The diagnoses could not be read (see above), so the viewer cannot tell whether this patient has breast cancer.'
        : 'The data read for this patient holds no breast cancer diagnosis; the timeline shows breast cancer only, and no card fired.');
      finish('no-breast-cancer');
      return;
    }
    renderOverview(data);
    drawTimeline(data);
    renderSites(data.timeline);
    renderTherapy(data);
    renderCards(data.cards);
    renderTable(data.timeline.events);
    finish('ready');
  }

  async function load() {
    let response;
    try {
      response = await fetch('api/picture', {
        method: 'POST', credentials: 'same-origin', cache: 'no-store',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' }, body: '{}',
      });
    } catch (err) {
      message('The service could not be reached', String(err), 'error');
      finish('error');
      return;
    }
    let body = null;
    try { body = await response.json(); } catch (err) { body = null; }
    if (!response.ok || !body) {
      const text = (body && (body.message || (body.issue && body.issue[0] && body.issue[0].diagnostics))) || `HTTP ${response.status}`;
      const title = response.status === 401 ? 'Not authorized' : response.status === 403 ? 'Access refused' : 'The data could not be shown';
      $('patient-line').textContent = '';
      message(title, text, 'error');
      const coding = body && body.issue && body.issue[0] && body.issue[0].details && body.issue[0].details.coding;
      document.body.dataset.error = (coding && coding[0] && coding[0].code) || String(response.status);
      finish('error');
      return;
    }
    render(body);
  }

  document.addEventListener('DOMContentLoaded', load);
}());
