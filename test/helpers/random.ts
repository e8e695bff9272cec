// Small seeded PRNG (mulberry32) so chunkings and mutations are reproducible from a logged seed.
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Integer in [lo, hi]. */
export const randInt = (r: () => number, lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));

/**
 * Split `data` into consecutive views of random sizes. Sizes are drawn from a mix of tiny (1-16 B,
 * to split headers), medium and large chunks, so records straddle boundaries in every way.
 */
export function randomChunks(data: Uint8Array, seed: number, maxChunk = 256 * 1024): Uint8Array[] {
  const r = rng(seed);
  const out: Uint8Array[] = [];
  for (let p = 0; p < data.length; ) {
    const pick = r();
    const size = pick < 0.3 ? randInt(r, 1, 16) : pick < 0.7 ? randInt(r, 17, 8192) : randInt(r, 8193, maxChunk);
    const end = Math.min(data.length, p + size);
    out.push(data.subarray(p, end));
    p = end;
  }
  return out;
}
