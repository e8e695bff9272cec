// Monitor for the non-cooperative events test: runs (in a harness child) against test/uffd/c/events-target.c,
// takes the target's uffd with pidfd_getfd, and follows FORK (serve the child's fd), REMAP (rebase), REMOVE
// (zero-fill later faults there) and UNMAP (stop), resolving every fault from this process.
import { spawn, execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import {
  Userfaultfd, UffdEventReader, Poller, setNonBlocking, pidfdOpen, pidfdGetfd, closeFd, addressOf,
  UFFD_EVENT_PAGEFAULT, UFFD_EVENT_FORK, UFFD_EVENT_REMAP, UFFD_EVENT_REMOVE, UFFD_EVENT_UNMAP, type UffdEvent,
} from '../../../src/uffd/index.js';

/** Build a C file from test/uffd/c/ with gcc into a temp dir; null when gcc is missing. */
export function buildC(name: string): string | null {
  // dist/test/uffd/children → test/uffd/c (sources are not copied to dist)
  const here = path.dirname(fileURLToPath(import.meta.url));
  const src = path.resolve(here, '../../../../test/uffd/c', `${name}.c`);
  const out = path.join(os.tmpdir(), `postcopy-uffd-${name}-${process.pid}`);
  try { execFileSync('gcc', ['-O1', '-Wall', '-o', out, src], { stdio: 'pipe' }); } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new Error(`gcc failed on ${src}: ${(e as { stderr?: Buffer }).stderr?.toString()}`);
  }
  return out;
}

export async function nonCooperativeEvents() {
  const bin = buildC('events-target');
  if (!bin) return { skipped: 'gcc not available' };
  const target = spawn(bin, [], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  target.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
  target.stderr.setEncoding('utf8').on('data', (d: string) => { err += d; });
  const exited = new Promise<number | null>((r) => target.on('close', (code) => r(code)));
  const deadline = Date.now() + 8000;
  while (!/READY/.test(out)) {
    if (Date.now() > deadline) throw new Error(`target never got ready: ${out} ${err}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  const [, fdStr, addrStr, pagesStr, psStr] = /READY (\d+) (\d+) (\d+) (\d+)/.exec(out)!;
  const ps = Number(psStr);
  let base = Number(addrStr);
  const pages = Number(pagesStr);
  const dbg = process.env.MON_DEBUG ? (...a: unknown[]) => console.error(...a) : () => {};
  dbg("ready", out);
  const pidfd = pidfdOpen(target.pid!);
  const parentFd = pidfdGetfd(pidfd, Number(fdStr));
  closeFd(pidfd);
  // The target made a blocking uffd; poll() answers POLLERR on those, so switch the shared description.
  setNonBlocking(parentFd);
  const uffds = new Map<number, Userfaultfd>([[parentFd, Userfaultfd.fromFd(parentFd)]]);
  const reader = new Map<number, UffdEventReader>([[parentFd, new UffdEventReader(parentFd)]]);
  const removed = new Set<number>();
  const events: { fd: 'parent' | 'child'; ev: UffdEvent }[] = [];
  const src = Buffer.alloc(ps);
  const srcU32 = new Uint32Array(src.buffer, src.byteOffset, ps / 4);
  dbg("got fd", parentFd);
  target.stdin.write("g");

  let done = false;
  let poller = new Poller([...uffds.keys()]);
  while (!done) {
    if (Date.now() > deadline) throw new Error(`timeout; events so far ${JSON.stringify(events)}; target said ${out}`);
    const nready = poller.wait(20);
    if (nready) dbg("poll", nready, [...uffds.keys()].map((f, k) => `${f}:${poller.revents(k)}`).join(" "));
    if (nready === 0) continue;
    for (const [k, fd] of [...uffds.keys()].entries()) {
      if (!poller.ready(k)) continue;
      const rd = reader.get(fd)!;
      const u = uffds.get(fd)!;
      const n = rd.read();
      for (let i = 0; i < n; i++) {
        const ev = rd.event(i);
        dbg(fd, JSON.stringify(ev));
        events.push({ fd: fd === parentFd ? 'parent' : 'child', ev });
        switch (rd.kind(i)) {
          case UFFD_EVENT_PAGEFAULT: {
            const page = Math.floor((rd.address(i) - base) / ps);
            if (removed.has(page)) { u.zeropage(base + page * ps, ps); break; }
            srcU32.fill(page + 1);
            const r = u.copyRaw(base + page * ps, addressOf(src), ps, 0);
            if (r === -17) u.wake(base + page * ps, ps); else if (r !== ps) throw new Error(`copy returned ${r}`);
            break;
          }
          case UFFD_EVENT_FORK: {
            const cfd = rd.forkUfd(i);
            setNonBlocking(cfd); // inherits the parent's creation flags (blocking)
            uffds.set(cfd, Userfaultfd.fromFd(cfd));
            reader.set(cfd, new UffdEventReader(cfd));
            break;
          }
          case UFFD_EVENT_REMAP: if (fd === parentFd) base = rd.arg1(i); break;
          case UFFD_EVENT_REMOVE:
            for (let a = rd.arg0(i); a < rd.arg1(i); a += ps) removed.add((a - base) / ps);
            break;
          // mremap also reports UNMAP of the range it moved away from; stop only when the live range goes.
          case UFFD_EVENT_UNMAP: if (fd === parentFd && rd.arg0(i) === base) done = true; break;
        }
      }
    }
    poller = new Poller([...uffds.keys()]);
  }
  const code = await Promise.race([exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 5000))]);
  for (const u of uffds.values()) u.close();
  fs.rmSync(bin, { force: true });
  return { code, out, err, events, pages };
}
