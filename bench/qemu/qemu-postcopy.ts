// QEMU 7.2's own post-copy of a 1 GiB guest between two QEMUs on this host (TCP over loopback), the peer
// figure for bench/migration (e). Same setup as ../shared/tools/qemu/postcopy-bench.sh (postcopy mode):
// `-accel tcg`, pc-i440fx-7.2, guest-touch (bench/qemu/guest-touch.s, assembled here with as/ld) summing all
// RAM above 16 MiB each pass, (RAM − 24 MiB) of /dev/urandom loaded at 16 MiB on the source; postcopy-ram on
// both sides (+ postcopy-blocktime on the destination), max-bandwidth 10 GiB/s, `migrate` then
// `migrate-start-postcopy` at once; figures from query-migrate. QMP through test/helpers/qemu.ts.
// QEMU runs unpinned, as in ../shared/reference/qemu-criu.md §1b.
import { spawn, spawnSync, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { QmpClient, findQemu } from '../../test/helpers/qemu.js';

const here = path.dirname(fileURLToPath(import.meta.url)); // dist/bench/qemu
const root = path.resolve(here, '../../..');
const guestSource = path.join(root, 'bench/qemu/guest-touch.s');
export const qemuWork = path.join(root, 'bench/build/qemu');

export interface QemuRun {
  rep: number;
  status: string;
  totalTimeMs: number;
  downtimeMs: number | null;
  setupTimeMs: number | null;
  transferredBytes: number | null;
  mbps: number | null;
  postcopyRequests: number | null;
  dstBlocktimeMs: number | null;
  wallMs: number;
  guestSumsMatch: boolean | null;
}

/** Why QEMU cannot run here, or null. */
export function qemuUnavailable(): string | null {
  if (!findQemu()) return 'qemu-system-x86_64 not found on PATH (apt-get install qemu-system-x86)';
  for (const tool of ['as', 'ld']) {
    if (spawnSync(tool, ['--version'], { stdio: 'ignore' }).status !== 0) return `${tool} (GNU binutils) not found: cannot assemble the guest`;
  }
  return null;
}

/** Assemble + link the guest into bench/build/qemu/guest-touch.elf (as make-fixtures.sh does). */
export function buildGuest(): string {
  fs.mkdirSync(qemuWork, { recursive: true });
  const obj = path.join(qemuWork, 'guest-touch.o');
  const elf = path.join(qemuWork, 'guest-touch.elf');
  execFileSync('as', ['--32', '-o', obj, guestSource]);
  execFileSync('ld', ['-m', 'elf_i386', '-N', '-Ttext=0x100000', '-e', '_start', '-o', elf, obj], { stdio: ['ignore', 'ignore', 'ignore'] });
  return elf;
}

function randomImage(fillMiB: number): string {
  const file = path.join(qemuWork, `rand-${fillMiB}m.bin`);
  if (!fs.existsSync(file) || fs.statSync(file).size !== fillMiB * 1048576) {
    execFileSync('sh', ['-c', `head -c ${fillMiB * 1048576} /dev/urandom > '${file}'`]);
  }
  return file;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as net.AddressInfo).port; s.close(() => resolve(p)); });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function passes(file: string): { pass: number; sum: string }[] {
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.startsWith('pass'))
    .map((l) => { const p = l.split(/\s+/); return { pass: parseInt(p[1], 16), sum: p[3] }; });
}

async function waitFor<T>(what: string, timeoutMs: number, f: () => T | undefined | false): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** Run QEMU post-copy `reps` times with a `memMiB` guest; one result per run. */
export async function runQemuPostcopy(opts: { memMiB?: number; reps?: number; log?: (s: string) => void } = {}): Promise<QemuRun[]> {
  const memMiB = opts.memMiB ?? 1024;
  const reps = opts.reps ?? 3;
  const log = opts.log ?? ((s: string) => process.stderr.write(s + '\n'));
  const qemu = findQemu()!;
  buildGuest();
  const rnd = path.basename(randomImage(memMiB - 24));
  const common = ['-nodefaults', '-display', 'none', '-machine', 'pc-i440fx-7.2,accel=tcg', '-m', `${memMiB}M`, '-kernel', 'guest-touch.elf'];
  const results: QemuRun[] = [];
  for (let rep = 1; rep <= reps; rep++) {
    const run = `m${memMiB}-r${rep}`;
    const port = await freePort();
    const children: ChildProcess[] = [];
    const clients: QmpClient[] = [];
    const vm = (role: string, extra: string[]): ChildProcess => {
      const sock = `${run}.${role}.qmp`;
      fs.rmSync(path.join(qemuWork, sock), { force: true });
      fs.rmSync(path.join(qemuWork, `${run}.${role}.dc`), { force: true });
      const c = spawn(qemu, [...common, '-debugcon', `file:${run}.${role}.dc`, ...extra, '-qmp', `unix:${sock},server=on,wait=off`],
        { cwd: qemuWork, stdio: ['ignore', 'ignore', 'pipe'] });
      children.push(c);
      return c;
    };
    try {
      vm('dst', ['-incoming', `tcp:127.0.0.1:${port}`]);
      const dst = await QmpClient.connect(path.join(qemuWork, `${run}.dst.qmp`), 30_000);
      clients.push(dst);
      await dst.execute('migrate-set-capabilities', { capabilities: [{ capability: 'postcopy-ram', state: true }, { capability: 'postcopy-blocktime', state: true }] });
      vm('src', ['-device', `loader,file=${rnd},addr=0x1000000,force-raw=on`]);
      const src = await QmpClient.connect(path.join(qemuWork, `${run}.src.qmp`), 30_000);
      clients.push(src);
      const srcDc = path.join(qemuWork, `${run}.src.dc`);
      await waitFor('3 guest passes on the source', 300_000, () => passes(srcDc).length >= 3);
      await src.execute('migrate-set-parameters', { 'max-bandwidth': 10737418240 });
      await src.execute('migrate-set-capabilities', { capabilities: [{ capability: 'postcopy-ram', state: true }] });
      const t0 = performance.now();
      await src.execute('migrate', { uri: `tcp:127.0.0.1:${port}` });
      await src.execute('migrate-start-postcopy');
      let info: any;
      for (;;) {
        info = await src.execute('query-migrate');
        if (info.status === 'completed' || info.status === 'failed' || info.status === 'cancelled') break;
        if (performance.now() - t0 > 600_000) throw new Error(`QEMU migration still ${info.status} after 600 s`);
        await sleep(20);
      }
      const wallMs = performance.now() - t0;
      let dinfo: any = {};
      for (let i = 0; i < 500; i++) {
        dinfo = await dst.execute('query-migrate');
        if (dinfo.status === 'completed' || dinfo.status === 'failed') break;
        await sleep(20);
      }
      // integrity: the destination guest's next pass sums the same data as the source did
      const lastSrc = passes(srcDc).at(-1);
      const dstDc = path.join(qemuWork, `${run}.dst.dc`);
      let sumsMatch: boolean | null = null;
      try {
        const d = await waitFor('a guest pass on the destination', 60_000, () => passes(dstDc).find((p) => !lastSrc || p.pass > lastSrc.pass));
        sumsMatch = lastSrc ? d.sum === lastSrc.sum : null;
      } catch { sumsMatch = null; }
      const ram = info.ram ?? {};
      const r: QemuRun = {
        // QEMU 7.2 sometimes reports the host uptime as the downtime of an immediate postcopy (qemu-criu.md §1b),
        // and now and then a total-time of 0 for a completed run: such a run's total is not counted (NaN).
        rep, status: info.status, totalTimeMs: info['total-time'] > 0 ? info['total-time'] : NaN,
        downtimeMs: typeof info.downtime === 'number' && info.downtime <= info['total-time'] ? info.downtime : null, setupTimeMs: info['setup-time'] ?? null,
        transferredBytes: ram.transferred ?? null, mbps: ram.mbps ?? null, postcopyRequests: ram['postcopy-requests'] ?? null,
        dstBlocktimeMs: dinfo['postcopy-blocktime'] ?? null, wallMs, guestSumsMatch: sumsMatch,
      };
      results.push(r);
      log(`  QEMU ${run}: ${r.status}, total-time ${r.totalTimeMs} ms, downtime ${r.downtimeMs} ms, requests ${r.postcopyRequests}, blocktime ${r.dstBlocktimeMs} ms, sums ${sumsMatch ? 'match' : sumsMatch === false ? 'DIFFER' : 'n/a'}`);
      for (const c of clients) await c.execute('quit').catch(() => undefined);
    } finally {
      for (const c of clients) c.close();
      await sleep(200);
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      for (const f of fs.readdirSync(qemuWork)) if (f.startsWith(`${run}.`)) fs.rmSync(path.join(qemuWork, f), { force: true });
    }
  }
  return results;
}
