// Deterministic memory contents for daemon tests: page i holds 32-bit words derived from i (every 5th page
// stays all zero, so ZERO records are exercised too).
import { createHash } from 'node:crypto';

export function fillPattern(view: Uint8Array, seed = 1): void {
  const ps = 4096;
  const pages = view.length / ps;
  const words = new Uint32Array(view.buffer, view.byteOffset, view.length / 4);
  for (let p = 0; p < pages; p++) {
    if (p % 5 === 0) continue;
    const base = p * 1024;
    let x = (Math.imul(p + 1, 2654435761) ^ seed) >>> 0;
    for (let w = 0; w < 1024; w++) {
      x = (Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + w) >>> 0;
      words[base + w] = x;
    }
  }
}

/** sha256 of the region, read page by page in `order` (touching pages of a registered region faults them in). */
export function digest(view: Uint8Array, order: 'seq' | 'random' = 'seq', seed = 7): string {
  const ps = 4096;
  const pages = view.length / ps;
  const idx = Array.from({ length: pages }, (_, i) => i);
  if (order === 'random') {
    let s = seed;
    for (let i = pages - 1; i > 0; i--) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      const j = s % (i + 1);
      [idx[i], idx[j]] = [idx[j], idx[i]];
    }
  }
  // Touch in the chosen order, then hash in address order (so both orders give the same digest).
  let sink = 0;
  for (const i of idx) sink ^= view[i * ps + 123];
  void sink;
  return createHash('sha256').update(view).digest('hex');
}
