// A small dependency-free SVG writer for the benchmarks: line charts (pages present over time) and
// step histograms (fault latency). Plain strings, no DOM; the output opens in any browser.

export interface Series {
  name: string;
  points: [number, number][];
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  width?: number;
  height?: number;
  /** Logarithmic y axis (histograms with long tails). */
  logY?: boolean;
  xMax?: number;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];
const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const num = (x: number): string => (Math.round(x * 10) / 10).toString();

/** Round axis ticks: about `count` steps of 1, 2 or 5 × 10^k. */
function ticks(max: number, count = 5): number[] {
  if (!(max > 0)) return [0];
  const raw = max / count;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = 0; v <= max * 1.0001; v += step) out.push(v);
  return out;
}

const label = (v: number): string => (Math.abs(v) >= 1e6 ? `${v / 1e6}M` : Math.abs(v) >= 1e4 ? `${v / 1e3}k` : `${Number(v.toPrecision(6))}`);

/** Line chart of one or more series sharing axes. */
export function lineChart(series: Series[], o: ChartOptions): string {
  const W = o.width ?? 720, H = o.height ?? 420;
  const L = 70, R = 20, T = 40, B = 50;
  const pw = W - L - R, ph = H - T - B;
  const all = series.flatMap((s) => s.points);
  const xMax = o.xMax ?? Math.max(1e-9, ...all.map((p) => p[0]));
  const yMaxRaw = Math.max(1e-9, ...all.map((p) => p[1]));
  const logY = !!o.logY;
  const yMax = logY ? 10 ** Math.ceil(Math.log10(yMaxRaw)) : yMaxRaw;
  const sx = (x: number): number => L + (Math.min(x, xMax) / xMax) * pw;
  const sy = (y: number): number => logY
    ? T + ph - (Math.log10(Math.max(y, 1)) / Math.log10(Math.max(yMax, 10))) * ph
    : T + ph - (y / yMax) * ph;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${esc(o.title)}</text>`);
  // axes + grid
  for (const t of ticks(xMax)) {
    parts.push(`<line x1="${num(sx(t))}" y1="${T}" x2="${num(sx(t))}" y2="${T + ph}" stroke="#eee"/>`);
    parts.push(`<text x="${num(sx(t))}" y="${T + ph + 16}" text-anchor="middle">${label(t)}</text>`);
  }
  const yt = logY ? Array.from({ length: Math.log10(Math.max(yMax, 10)) + 1 }, (_, i) => 10 ** i) : ticks(yMax);
  for (const t of yt) {
    parts.push(`<line x1="${L}" y1="${num(sy(t))}" x2="${L + pw}" y2="${num(sy(t))}" stroke="#eee"/>`);
    parts.push(`<text x="${L - 6}" y="${num(sy(t) + 4)}" text-anchor="end">${label(t)}</text>`);
  }
  parts.push(`<rect x="${L}" y="${T}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  parts.push(`<text x="${L + pw / 2}" y="${H - 12}" text-anchor="middle">${esc(o.xLabel)}</text>`);
  parts.push(`<text transform="translate(16 ${T + ph / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`);
  series.forEach((s, i) => {
    const pts = s.points.filter((p) => p[0] <= xMax);
    if (pts.length > 0) {
      parts.push(`<polyline fill="none" stroke="${COLORS[i % COLORS.length]}" stroke-width="1.6" points="${pts.map((p) => `${num(sx(p[0]))},${num(sy(p[1]))}`).join(' ')}"/>`);
    }
  });
  // legend on a translucent box, drawn last so it stays readable over the lines
  const legendW = 30 + 6.8 * Math.max(0, ...series.map((s) => s.name.length));
  parts.push(`<rect x="${L + 4}" y="${T + 3}" width="${num(legendW)}" height="${series.length * 18 + 6}" fill="white" fill-opacity="0.8"/>`);
  series.forEach((s, i) => {
    parts.push(`<rect x="${L + 10}" y="${T + 8 + i * 18}" width="12" height="3" fill="${COLORS[i % COLORS.length]}"/>`);
    parts.push(`<text x="${L + 28}" y="${T + 13 + i * 18}">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}

/**
 * Step histogram: counts[i] is the number of samples in [i·binWidth, (i+1)·binWidth). Several histograms
 * overlay as outlines so they stay readable; bins above xMax are folded into the last one.
 */
export function histogram(hists: { name: string; counts: number[]; binWidth: number }[], o: ChartOptions): string {
  const series: Series[] = hists.map((h) => {
    const pts: [number, number][] = [];
    const xMax = o.xMax ?? h.counts.length * h.binWidth;
    const nb = Math.ceil(xMax / h.binWidth);
    for (let i = 0; i < nb; i++) {
      let c = h.counts[i] ?? 0;
      if (i === nb - 1) for (let j = nb; j < h.counts.length; j++) c += h.counts[j];
      pts.push([i * h.binWidth, c], [(i + 1) * h.binWidth, c]);
    }
    return { name: h.name, points: pts };
  });
  return lineChart(series, o);
}
