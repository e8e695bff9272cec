// Child side of the fdpass round trip (run by test/uffd/fdpass.test.ts through runInChild): connect to the
// parent's control socket, receive its uffd + memfd + region description (Firecracker layout), check the
// memfd bytes, resolve the parent's missing pages with UFFDIO_COPY through the received uffd, send both fds back.
import fs from 'node:fs';
import { FdChannel } from '../../../src/uffd/fdpass.js';
import { Userfaultfd } from '../../../src/uffd/userfaultfd.js';
import { mapFd, addressOf } from '../../../src/uffd/memory.js';

export interface RegionDesc { base_host_virt_addr: number; size: number; offset: number; page_size: number }
export interface Handover { regions: RegionDesc[]; prefilledPages: number; prefilledSum: number }

/** Deterministic page content shared by parent and child. */
export function pageByte(page: number, i: number): number {
  return (page * 131 + i * 7 + 3) & 0xff;
}
export function sum(bytes: Uint8Array): number {
  let s = 0;
  for (let i = 0; i < bytes.length; i++) s = (s * 31 + bytes[i]) >>> 0;
  return s;
}

export async function exchange(args: { path: string }): Promise<unknown> {
  const chan = FdChannel.connect(args.path);
  const { fds, payload } = await chan.recv({ timeoutMs: 10_000 });
  const [uffdFd, memfd] = fds;
  const h = payload as Handover;
  const region = h.regions[0];
  const uffdKind = fs.readlinkSync(`/proc/self/fd/${uffdFd}`);

  // Same bytes through our own mapping of the memfd.
  const mine = mapFd(memfd, region.size);
  const seenSum = sum(mine.view(0, h.prefilledPages * region.page_size));

  // Fill the parent's missing pages: the uffd acts on the mm that created it, whoever holds the fd.
  const uffd = Userfaultfd.fromFd(uffdFd);
  const page = Buffer.alloc(region.page_size);
  let copied = 0;
  for (let p = h.prefilledPages; p < region.size / region.page_size; p++) {
    for (let i = 0; i < page.length; i++) page[i] = pageByte(p, i);
    copied += uffd.copy(region.base_host_virt_addr + p * region.page_size, addressOf(page), page.length);
  }
  mine.unmap();
  await chan.send([memfd, uffdFd], { seenSum, copied, uffdKind, features: uffd.features.toString(16) });
  chan.close();
  return { seenSum, copied, uffdKind };
}
