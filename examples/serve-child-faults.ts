// The interim main job: serve the page faults of another process with the binding.
//
//   node dist/examples/serve-child-faults.js [--pages 16384]
//
// 1. We listen on a Unix socket and start a child process (this same file, role "child").
// 2. The child maps an anonymous region, registers it MISSING on a new userfaultfd, and hands the uffd plus a
//    Firecracker-style region description to us over the socket (SCM_RIGHTS).
// 3. The child reads every page; each first touch faults. Our fault server (a worker thread) answers each
//    fault with UFFDIO_COPY of a page made by a deterministic generator (fillPatternPage).
// 4. The child sends back a checksum of what it read; we compare it with the generator's and print stats.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';
import {
  Userfaultfd, mapAnonymous, pageSize, FdServer, FdChannel, FaultServer, fillPatternPage, type FaultServerStats,
} from '../src/uffd/index.js';

interface Region { base_host_virt_addr: number; size: number; offset: number; page_size: number }

/** Order-sensitive checksum of a page, folded into `acc`. */
function checksum(acc: number, page: Uint8Array): number {
  const words = new Uint32Array(page.buffer, page.byteOffset, page.byteLength >>> 2);
  for (let i = 0; i < words.length; i++) acc = (Math.imul(acc, 31) + words[i]) >>> 0;
  return acc;
}

async function child(socketPath: string, pages: number): Promise<void> {
  const region = mapAnonymous(pages * pageSize);
  const uffd = Userfaultfd.open();
  uffd.register(region.addr, region.length, { missing: true });
  const chan = FdChannel.connect(socketPath);
  const desc: Region = { base_host_virt_addr: region.addr, size: region.length, offset: 0, page_size: pageSize };
  await chan.send([uffd.fd], [desc]);
  uffd.close(); // the server holds its own copy now

  const started = performance.now();
  let sum = 0;
  for (let p = 0; p < pages; p++) sum = checksum(sum, region.view(p * pageSize, pageSize)); // faults here
  await chan.send([], { sum, ms: performance.now() - started });
  chan.close();
}

async function server(pages: number): Promise<void> {
  const socketPath = path.join(os.tmpdir(), `serve-child-faults-${process.pid}.sock`);
  const listener = FdServer.listen(socketPath, { replace: true });
  const self = fileURLToPath(import.meta.url);
  const kid = spawn(process.execPath, [self, '--child', socketPath, '--pages', String(pages)], { stdio: 'inherit' });
  const exited = new Promise<number | null>((resolve) => kid.once('exit', (code) => resolve(code)));
  // A child that never finishes is killed; its socket then closes and recv() below fails with EOF.
  const killer = setTimeout(() => { console.error('child did not finish in 60 s: killing it'); kid.kill('SIGKILL'); }, 60_000);

  const chan = await listener.accept({ timeoutMs: 10_000 });
  const { fds: [uffdFd], payload } = await chan.recv({ timeoutMs: 10_000 });
  const [region] = payload as Region[];
  console.log(`child ${kid.pid}: uffd received, region 0x${region.base_host_virt_addr.toString(16)} + ${region.size >> 20} MiB, page ${region.page_size}`);

  // Serve its faults from a worker (src/uffd/fault-server.ts): the main thread stays free (it only waits on the socket).
  const faults = await FaultServer.start({ uffdFd, base: region.base_host_virt_addr, pageSize: region.page_size, source: { kind: 'pattern' } });

  let report: { sum: number; ms: number };
  let stopped: Promise<FaultServerStats>;
  try {
    report = (await chan.recv()).payload as { sum: number; ms: number };
  } finally {
    // Always stop the worker (a thread left in poll() would keep the process from exiting); the child has
    // read everything (or died) by now, so no fault can come after the loop leaves.
    stopped = faults.stop();
    clearTimeout(killer);
  }
  const s = await stopped;

  let expected = 0;
  const page = new Uint8Array(region.page_size);
  for (let p = 0; p < region.size / region.page_size; p++) { fillPatternPage(page, p); expected = checksum(expected, page); }
  const ok = report.sum === expected && s.errors === 0;
  console.log(`served ${s.served} faults in ${s.reads} reads (${s.eexist} EEXIST, ${s.errors} errors); ` +
    `child read ${region.size >> 20} MiB in ${report.ms.toFixed(1)} ms = ${(s.served / report.ms * 1000).toFixed(0)} faults/s`);
  console.log(`checksum child 0x${report.sum.toString(16)} expected 0x${expected.toString(16)}: ${ok ? 'OK' : 'MISMATCH'}`);
  chan.close(); listener.close();
  const code = await exited;
  process.exitCode = ok && code === 0 ? 0 : 1;
}

const argv = process.argv.slice(2);
const pagesArg = argv.indexOf('--pages');
const pages = pagesArg >= 0 ? Number(argv[pagesArg + 1]) : 16384;
const childArg = argv.indexOf('--child');
if (childArg >= 0) await child(argv[childArg + 1], pages);
else await server(pages);
