// Plain in-heap regions for tests (the source only needs name, size, view()); patterned so every page is
// distinguishable, with chosen all-zero pages.
import type { SourceRegion } from '../../../src/source/page-map.js';

export const PAGE = 4096;

export function heapRegion(name: string, pages: number, zeroPages: Iterable<number> = []): SourceRegion & { bytes: Buffer } {
  const bytes = Buffer.alloc(pages * PAGE);
  for (let p = 0; p < pages; p++) {
    // First word non-zero for most pages; some pages start with zeros but are not all zero (memcmp path).
    const base = p * PAGE;
    if (p % 7 === 3) bytes.writeUInt32LE((0xdeadbeef ^ p) >>> 0, base + PAGE - 4);
    else for (let i = 0; i < PAGE; i += 64) bytes.writeUInt32LE((p * 2654435761 + i + 1) >>> 0, base + i);
    bytes.write(name, base + 8);
  }
  for (const z of zeroPages) bytes.fill(0, z * PAGE, (z + 1) * PAGE);
  return {
    name,
    size: bytes.length,
    bytes,
    view: (offset = 0, len?: number) => new Uint8Array(bytes.buffer, bytes.byteOffset + offset, len ?? bytes.length - offset),
  };
}
