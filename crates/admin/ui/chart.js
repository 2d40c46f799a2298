// A small time-series line chart on <canvas>: the last few minutes of one
// figure, redrawn on every new point and whenever the canvas changes size
// (sharp on high-density screens). Missing points (null) break the line.

import {h, fmtNum} from './dom.js';

/** Seconds of history a chart shows at most. */
export const WINDOW_SECS = 300;
/** Seconds the x axis spans at least (a page just opened fills it quickly). */
const MIN_SPAN_SECS = 30;

/**
 * A "nice" upper bound for the y axis: 1, 2, 4, 6, 8 or 10 times a power of
 * ten, so that its four steps read well (0.5, 1, 1.5, 2, 2.5).
 */
export function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 4, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/**
 * A chart card. options: {title, unit, format(v) -> string (the current
 * value), tick(v) -> string (axis labels), max (fixed y maximum, e.g. 1 for
 * ratios), integer (counts: the axis goes to 4 at least, so its four steps
 * are whole), test}. Returns {element, push(time, value), destroy()}.
 */
export function lineChart({title, unit = '', format = (v) => fmtNum(v, 1), tick = (v) => fmtNum(v, 2), max = null, integer = false, test = 'chart'}) {
  const points = [];
  const value = h('span', {class: 'chart-value', 'data-test': `${test}-value`}, '—');
  const canvas = h('canvas', {class: 'chart-canvas', role: 'img', 'aria-label': title});
  const element = h('section', {class: 'card chart', 'data-test': test},
    h('div', {class: 'chart-head'}, h('h2', {}, title), h('span', {}, value, unit ? h('span', {class: 'unit'}, ` ${unit}`) : null)),
    canvas);

  const observer = new ResizeObserver(() => draw());
  observer.observe(canvas);

  function draw() {
    const rect = canvas.getBoundingClientRect();
    if (rect.width === 0) return;
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(rect.width * dpr);
    canvas.height = Math.round(rect.height * dpr);
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const w = rect.width;
    const ht = rect.height;
    const styles = getComputedStyle(element);
    const line = styles.getPropertyValue('--chart-line').trim() || '#0f6f6b';
    const grid = styles.getPropertyValue('--chart-grid').trim() || '#e3e8ee';
    const text = styles.getPropertyValue('--chart-text').trim() || '#667085';
    ctx.clearRect(0, 0, w, ht);
    ctx.font = '11px system-ui, sans-serif';

    const left = 44;
    const right = 8;
    const top = 8;
    const bottom = 18;
    const plotW = Math.max(1, w - left - right);
    const plotH = Math.max(1, ht - top - bottom);
    const now = points.length ? points[points.length - 1].t : Date.now() / 1000;
    // The axis spans what has been collected, from 30 s to five minutes.
    const span = Math.min(WINDOW_SECS, Math.max(MIN_SPAN_SECS, points.length ? now - points[0].t : 0));
    const t0 = now - span;
    const seen = points.filter((p) => p.v !== null).map((p) => p.v);
    const yMax = max ?? (integer ? Math.max(4, niceMax(Math.max(0, ...seen))) : niceMax(Math.max(0, ...seen)));
    const x = (t) => left + ((t - t0) / span) * plotW;
    const y = (v) => top + plotH - (v / yMax) * plotH;

    ctx.strokeStyle = grid;
    ctx.fillStyle = text;
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (let i = 0; i <= 4; i++) {
      const v = (yMax * i) / 4;
      const yy = Math.round(y(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(left, yy);
      ctx.lineTo(w - right, yy);
      ctx.stroke();
      ctx.fillText(tick(v), left - 6, yy);
    }
    ctx.textAlign = 'left';
    ctx.textBaseline = 'alphabetic';
    ctx.fillText(span >= 120 ? `−${Math.round(span / 60)} min` : `−${Math.round(span)} s`, left, ht - 4);
    ctx.textAlign = 'right';
    ctx.fillText('now', w - right, ht - 4);

    // Each unbroken run of points: a light area under it, then the line.
    const runs = [];
    let run = [];
    for (const p of points) {
      if (p.v === null || p.t < t0) {
        if (run.length) runs.push(run);
        run = [];
      } else {
        run.push(p);
      }
    }
    if (run.length) runs.push(run);
    const base = y(0);
    for (const r of runs) {
      ctx.beginPath();
      ctx.moveTo(x(r[0].t), base);
      for (const p of r) ctx.lineTo(x(p.t), y(p.v));
      ctx.lineTo(x(r[r.length - 1].t), base);
      ctx.closePath();
      ctx.globalAlpha = 0.12;
      ctx.fillStyle = line;
      ctx.fill();
      ctx.globalAlpha = 1;
      ctx.beginPath();
      r.forEach((p, i) => (i ? ctx.lineTo(x(p.t), y(p.v)) : ctx.moveTo(x(p.t), y(p.v))));
      ctx.strokeStyle = line;
      ctx.lineWidth = 2;
      ctx.lineJoin = 'round';
      ctx.stroke();
    }
    const last = points.length ? points[points.length - 1] : null;
    if (last && last.v !== null) {
      ctx.fillStyle = line;
      ctx.beginPath();
      ctx.arc(x(last.t), y(last.v), 3, 0, Math.PI * 2);
      ctx.fill();
    }
  }

  return {
    element,
    push(t, v) {
      points.push({t, v});
      while (points.length && points[0].t < t - WINDOW_SECS - 5) points.shift();
      value.textContent = v === null ? '—' : format(v);
      // How many samples the chart holds (tests wait for enough of them).
      element.dataset.points = String(points.length);
      draw();
    },
    destroy() {
      observer.disconnect();
    },
  };
}
