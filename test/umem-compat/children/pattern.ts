// Page contents the servers write and the touchers check: first u32 = page ^ SIG, every other byte = page & 0xff.
export const SIG = 0x5a000000;

export function fillPage(view: Uint8Array, page: number): void {
  view.fill(page & 0xff);
  new DataView(view.buffer, view.byteOffset, 4).setUint32(0, (page + SIG) >>> 0, true);
}

export function expectedFirst(page: number): number {
  return (page + SIG) | 0;
}

export function expectedLast(page: number): number {
  return page & 0xff;
}

export function check(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(`check failed: ${msg}`);
}
