// Size arguments of the benchmarks: 256M, 1G, 64K or plain bytes; rounded down to whole 4 KiB pages.
export function parseBytes(s: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMG]?)$/i.exec(s);
  if (!m) throw new Error(`bad size "${s}" (e.g. 256M, 1G)`);
  const mult = { '': 1, K: 1024, M: 1 << 20, G: 1 << 30 }[m[2].toUpperCase() as '' | 'K' | 'M' | 'G'];
  return Math.floor((Number(m[1]) * mult) / 4096) * 4096;
}
