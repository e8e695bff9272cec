// Failure handling of postcopy-daemon (issue 4 "Bad input and failure"): a hostile or broken source is cut
// off with a clear error, the destination process is told and killed (never left hanging on a fault, never
// run with zero-filled pages), a control client without fds is refused, a dying destination process ends
// the migration, and a silent source times out. Every party is a child process with a hard timeout.
import test from 'ava';
import net from 'node:net';
import fs from 'node:fs';
import { startDaemon, runDest, runHostile, runSource, lastJson, waitFor } from './helpers.js';
import { runChild } from '../helpers/child.js';
import { CHILD } from './helpers.js';

const SIZE = 8 << 20;

async function hostile(t: any, scenario: string, expect: RegExp, daemonArgs?: string[]) {
  const d = await startDaemon({ args: daemonArgs ?? ['--once'] });
  const dest = runDest({ control: d.control, size: SIZE, mode: 'missing', order: 'seq' }, 40_000);
  await waitFor(() => false, 300);
  const src = runHostile({ port: d.port, size: SIZE, scenario });
  const [dx, dr, sr] = await Promise.all([d.exited, dest, src]);
  t.false(dx.timedOut, 'daemon ended by itself');
  t.is(dx.code, 1, `daemon exit code; stderr: ${d.stderr()}`);
  t.regex(d.stderr(), expect);
  t.regex(d.stderr(), /migration failed/);
  // The destination process either got the error line or was SIGKILLed before it could print.
  t.false(dr.timedOut, 'destination did not hang');
  if (dr.signal) t.is(dr.signal, 'SIGKILL');
  else {
    const r = lastJson(dr.stdout);
    t.false(r.ok);
    t.regex(r.error, /postcopy-daemon|closed/);
  }
  const stats = JSON.parse(fs.readFileSync(d.statsFile, 'utf8'));
  t.false(stats.ok);
  t.true(stats.pagesPresent < stats.pagesTotal);
  t.false(sr.timedOut, 'source was cut off');
  return { d, dr, sr };
}

test('a page offset one past the end of the region is refused (ProtocolError BAD_OFFSET), process killed', async (t) => {
  const { sr } = await hostile(t, 'out-of-range', /offset 0x800000 beyond block "toy\.ram"|outside block "toy\.ram"/);
  // The daemon told the source SHUT(1) on the return path: be16 1, be16 4, be32 1.
  t.regex(lastJson(sr.stdout).returnPathHex, /0001000400000001/);
});

test('an unaligned page offset is refused (its low bits read as bad flags)', (t) => hostile(t, 'unaligned', /bad migration stream from the source: .*(flags 0x2|not page aligned)/));
test('a page for a block that is not registered is refused', (t) => hostile(t, 'unknown-block', /not\.mine/));
test('garbage after the prelude is refused with the decoder\'s error', (t) => hostile(t, 'garbage', /bad migration stream from the source/));
test('a block list whose size differs from the region is refused', (t) => hostile(t, 'bad-size', /is \d+ bytes, the destination region is \d+/));
test('a source that disconnects before every page arrived: error to the process, no zero-fill', (t) => hostile(t, 'disconnect', /source disconnected .* before all pages arrived/));
test('a source that never answers a page request times out (--timeout)', (t) => hostile(t, 'stall', /has not answered a page request/, ['--once', '--timeout', '2']));

test('a control client that sends no fd gets a clear error line; the daemon keeps serving', async (t) => {
  const d = await startDaemon({ args: [] });
  const reply = await new Promise<string>((resolve, reject) => {
    const c = net.connect(d.control);
    let buf = '';
    c.on('connect', () => c.write(JSON.stringify({ version: 1, mode: 'missing', regions: [{ base_host_virt_addr: 0x10000000, size: 4096, offset: 0, page_size: 4096 }] }) + '\n'));
    c.on('data', (b) => { buf += b; });
    c.on('close', () => resolve(buf));
    c.on('error', reject);
    setTimeout(() => { c.destroy(); resolve(buf); }, 10_000);
  });
  const msg = JSON.parse(reply.trim());
  t.is(msg.type, 'error');
  t.regex(msg.message, /sent no file descriptor/);
  t.true(await waitFor(() => /control client rejected: .*no file descriptor/.test(d.stderr()), 3000), d.stderr());
  t.is(d.child.exitCode, null, 'daemon still running');
  d.child.kill('SIGTERM');
  const x = await d.exited;
  t.false(x.timedOut);
});

test('a destination process that dies mid-migration ends it with PROCESS_DIED; the source is told', async (t) => {
  const d = await startDaemon();
  // The victim attaches, receives the state, then SIGKILLs itself without touching its memory.
  const victim = runChild({ script: CHILD('dest-dies'), args: { control: d.control, size: SIZE }, timeoutMs: 30_000 });
  await waitFor(() => false, 300);
  // On-demand only: nothing completes the migration unless the process asks for pages.
  const src = runSource({ uri: `tcp:127.0.0.1:${d.port}`, size: SIZE, background: false }, 30_000);
  const [dx, vr, sr] = await Promise.all([d.exited, victim, src]);
  t.is(vr.signal, 'SIGKILL');
  t.false(dx.timedOut);
  t.is(dx.code, 1);
  t.regex(d.stderr(), /destination process \d+ closed the control connection .*mid-migration/);
  t.false(sr.timedOut, 'source was released');
  const s = lastJson(sr.stdout);
  t.false(s.ok, 'the source learned the migration failed');
});

test('SIGTERM mid-migration fails it safely: the process is told and stopped, the daemon exits', async (t) => {
  const d = await startDaemon();
  // 'after': the process waits for completion, which never comes with an on-demand-only source and no faults.
  const dest = runDest({ control: d.control, size: SIZE, mode: 'missing', order: 'after' }, 30_000);
  await waitFor(() => false, 300);
  const src = runSource({ uri: `tcp:127.0.0.1:${d.port}`, size: SIZE, background: false }, 30_000);
  t.true(await waitFor(() => /migration: process/.test(d.stdout()), 10_000), d.stdout());
  await waitFor(() => false, 500);
  d.child.kill('SIGTERM');
  const [dx, dr, sr] = await Promise.all([d.exited, dest, src]);
  t.false(dx.timedOut);
  t.is(dx.code, 1);
  t.regex(d.stderr(), /stopped \(signal\) mid-migration/);
  t.false(dr.timedOut, 'destination did not hang');
  if (dr.signal) t.is(dr.signal, 'SIGKILL');
  else t.regex(lastJson(dr.stdout).error ?? '', /postcopy-daemon/);
  t.false(sr.timedOut, 'source released');
});

test('a control client that connects and says nothing does not delay a good one', async (t) => {
  const d = await startDaemon();
  const silent = net.connect(d.control);
  await new Promise((r) => silent.once('connect', r));
  const t0 = Date.now();
  const dest = runDest({ control: d.control, size: SIZE, mode: 'missing', order: 'random' }, 30_000);
  await waitFor(() => false, 300);
  const [src, dst, dx] = await Promise.all([runSource({ uri: `tcp:127.0.0.1:${d.port}`, size: SIZE }, 30_000), dest, d.exited]);
  t.true(src.ok && dst.ok, `${src.summary} / ${dst.summary}`);
  t.is(dx.code, 0, d.stderr());
  t.is(lastJson(dst.stdout).digest, lastJson(src.stdout).digest);
  t.true(Date.now() - t0 < 8000, 'not held up by the 10 s handshake timeout of the silent client');
  silent.destroy();
});
