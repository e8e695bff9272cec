// End to end with the real destination: postcopy-daemon (src/cli/daemon.ts) + the toy in "dest" mode (a
// separate process that touches registered memory) + the toy in "source" mode (which calls migrate()).
// The destination's digest must equal a never-migrated run's. Every process has a hard timeout.
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const daemonCli = path.join(root, 'dist/src/cli/daemon.js');
const toy = path.join(root, 'dist/examples/toy/main.js');
const missing = [daemonCli, toy].filter((f) => !fs.existsSync(f));

interface Proc { child: ChildProcess; out: string; err: string; exit: Promise<number | null> }

function run(args: string[], timeoutMs: number): Proc {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const p: Proc = { child, out: '', err: '', exit: Promise.resolve(null) };
  child.stdout!.on('data', (d) => { p.out += d; });
  child.stderr!.on('data', (d) => { p.err += d; });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  p.exit = new Promise((r) => child.on('close', (code) => { clearTimeout(timer); r(code); })); // 'close': stdout read to the end ('exit' can come first)
  return p;
}

async function waitFor(p: Proc, re: RegExp, ms: number, stream: 'out' | 'err' = 'out'): Promise<RegExpMatchArray> {
  const t0 = Date.now();
  for (;;) {
    const m = re.exec(p[stream]);
    if (m) return m;
    if (Date.now() - t0 > ms || p.child.exitCode !== null) throw new Error(`no ${re} in output: ${p.out} ${p.err}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const cases: { title: string; listen: (dir: string) => string; source: string[] }[] = [
  { title: 'tcp, background', listen: () => 'tcp:127.0.0.1:0', source: [] },
  { title: 'unix, -m with forward 4', listen: (d) => `unix:${d}/mig.sock`, source: ['-m', '--forward', '4'] },
  { title: 'tcp, -n (on demand only) with forward 16 backward 2', listen: () => 'tcp:127.0.0.1:0', source: ['-n', '--forward', '16', '--backward', '2'] },
];

for (const c of cases) {
  const t0 = missing.length ? test.skip : test.serial;
  t0(`daemon e2e (${c.title}): the destination's digest equals a never-migrated run`, async (t) => {
    t.timeout(60000);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pc-e2e-'));
    const size = '16M';
    const steps = ['--steps', '3000', '--size', size, '--pattern', 'hotset'];
    const procs: Proc[] = [];
    try {
      const daemon = run([daemonCli, '--listen', c.listen(dir), '--control', `${dir}/ctl`, '--once', '--no-progress', '--timeout', '20'], 40000);
      procs.push(daemon);
      const addr = (await waitFor(daemon, /listening ((?:tcp|unix):\S+)/, 10000))[1];
      await waitFor(daemon, /control /, 10000);
      const dest = run([toy, 'dest', '--control', `${dir}/ctl`, ...steps], 40000);
      procs.push(dest);
      await waitFor(dest, /waiting for the state/, 10000, 'err');
      const src = run([toy, 'source', '--migrate-at', '1500', '--to', addr, '--size', size, '--pattern', 'hotset', ...c.source], 40000);
      procs.push(src);
      const ref = run([toy, 'reference', ...steps], 40000);
      procs.push(ref);
      const [srcCode, destCode, refCode, daemonCode] = await Promise.all([src.exit, dest.exit, ref.exit, daemon.exit]);
      t.is(srcCode, 0, `source: ${src.err}`);
      t.is(destCode, 0, `dest: ${dest.err}`);
      t.is(refCode, 0, `reference: ${ref.err}`);
      t.is(daemonCode, 0, `daemon: ${daemon.err}`);
      const digest = (s: string): string | undefined => /digest=([0-9a-f]+)/.exec(s)?.[1];
      t.truthy(digest(ref.out));
      t.is(digest(dest.out), digest(ref.out));
      const stats = JSON.parse(/stats=(\{.*\})/.exec(src.out)?.[1] ?? '{}');
      t.is(stats.shutStatus, 0);
      t.is(stats.pagesTotal, 4096);
      if (c.source.includes('-n')) t.is(stats.pagesBackground, 0);
      t.log(`source: ${stats.pagesBackground} background, ${stats.pagesUrgent} urgent, ${stats.pagesPrefault} prefault, ${stats.pagesZero} zero, handover ${stats.handoverMs?.toFixed(2)} ms, ${stats.completionMs?.toFixed(0)} ms to SHUT`);
    } finally {
      for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}

if (missing.length) test('daemon e2e prerequisites', (t) => { t.log(`skipped: not built: ${missing.join(', ')}`); t.pass(); });
