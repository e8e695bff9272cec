// Failure paths of a migration, end to end through the CLIs (issue 4 "Bad input and failure"): a source
// killed mid-migration, a destination process killed mid-migration, control clients that send no fd, and
// hostile sources (out-of-range offsets, unknown blocks, a wrong block size, garbage after the header).
// Each must end with a clear message within a bounded time, nothing hangs, no page is zero-filled (the
// destination is stopped, never run on with missing pages) and no byte outside the region is ever written.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import net from 'node:net';
import {
  Scope, startDaemon, runMigration, checkMigration, readStats, deadline, digestOf, TOY, GUARD_DEST, HOSTILE_SOURCE, MiB,
  type Proc, type DaemonRun,
} from './harness.js';

const SIZE = 64 * MiB;
const M = 100_000;
// Long enough that the destination still has most pages missing when we kill someone right after it runs.
const K = M + 3_000_000;

/** Daemon + TS destination + on-demand-only source (-n: pages stay missing until asked for); resolves once the destination runs. */
async function startSlowMigration(scope: Scope): Promise<{ daemon: DaemonRun; dest: Proc; source: Proc }> {
  const daemon = await startDaemon(scope, 'tcp:127.0.0.1:0', { timeoutSec: 20 });
  const dest = scope.node('dest', TOY, ['dest', '--control', daemon.control, '--size', String(SIZE), '--steps', String(K), '--mode', 'missing']);
  const source = scope.node('source', TOY, ['source', '--size', String(SIZE), '--pattern', 'hotset', '--migrate-at', String(M), '--to', daemon.address, '-n']);
  await dest.waitFor(/running from step/, 20_000, 'stderr');
  return { daemon, dest, source };
}

const exitedBadly = (p: Proc): boolean => !!p.exit && (p.exit.code !== 0 || p.exit.signal !== null);

test.serial('source killed mid-migration: daemon reports it, the destination is stopped (not hung, not zero-filled)', async (t) => {
  t.timeout(60_000);
  const scope = new Scope(t);
  const { daemon, dest, source } = await startSlowMigration(scope);
  const t0 = performance.now();
  source.child.kill('SIGKILL');
  await deadline(Promise.all([daemon.proc.exited, dest.exited]), 20_000, 'daemon and destination to end after the source died')
    .catch((e: Error) => { scope.dump(); throw e; });
  const secs = (performance.now() - t0) / 1000;
  t.log(`daemon ended ${((daemon.proc.exitAt - t0) / 1000).toFixed(2)} s, destination ${((dest.exitAt - t0) / 1000).toFixed(2)} s after the source was killed`);
  t.log(`ended ${secs.toFixed(1)} s after the source was killed; dest exit ${JSON.stringify(dest.exit)}`);
  t.is(daemon.proc.exit?.code, 1, `daemon --once exits 1 on a failed migration\n${daemon.proc.tail()}`);
  t.regex(daemon.proc.stderr, /migration failed: .*source/i, 'daemon names the source as the cause');
  t.true(exitedBadly(dest), `destination must not exit 0: ${JSON.stringify(dest.exit)}\n${dest.tail()}`);
  t.is(digestOf(dest.stdout), undefined, 'the destination never finished its run (no digest from a zero-filled memory)');
  t.true(dest.exit?.signal === 'SIGKILL' || /daemon|source|migration/i.test(dest.stderr),
    `destination either killed by the daemon or reporting its message: ${JSON.stringify(dest.exit)} ${dest.stderr.slice(-300)}`);
  const s = readStats(daemon.statsFile);
  t.is(s?.ok, false, 'stats.ok false');
  t.true((s?.pagesPresent ?? 0) < (s?.pagesTotal ?? 0), `pages were still missing (${s?.pagesPresent}/${s?.pagesTotal}): the test exercised the failure`);
  t.true(secs < 15, `bounded: ${secs.toFixed(1)} s`);
});

test.serial('destination process killed mid-migration: daemon and source end with clear messages', async (t) => {
  t.timeout(60_000);
  const scope = new Scope(t);
  const { daemon, dest, source } = await startSlowMigration(scope);
  const t0 = performance.now();
  dest.child.kill('SIGKILL');
  await deadline(Promise.all([daemon.proc.exited, source.exited]), 20_000, 'daemon and source to end after the destination died')
    .catch((e: Error) => { scope.dump(); throw e; });
  const secs = (performance.now() - t0) / 1000;
  t.log(`ended ${secs.toFixed(1)} s after the destination was killed`);
  t.is(daemon.proc.exit?.code, 1, `daemon --once exits 1\n${daemon.proc.tail()}`);
  t.regex(daemon.proc.stderr, /migration failed: .*(process|destination)/i, 'daemon names the destination process');
  t.true(exitedBadly(source), `source must fail, not report success\n${source.tail()}`);
  t.regex(source.stderr, /toy: .*(fail|shut|closed|reset|destination|EPIPE|lost)/i, `source says why\n${source.tail()}`);
  t.true(secs < 15, `bounded: ${secs.toFixed(1)} s`);
});

/** Connect to the control socket, optionally write bytes (no SCM_RIGHTS), collect what comes back until closed. */
function badControlClient(path: string, send: string | null, holdMs = 0): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    const s = net.connect({ path }, () => {
      if (send !== null) s.write(send);
      else if (holdMs === 0) s.end();
    });
    s.setEncoding('utf8');
    s.on('data', (d: string) => { got += d; });
    s.on('error', () => {});
    s.on('close', () => resolve(got));
    if (holdMs > 0) setTimeout(() => s.destroy(), holdMs).unref();
  });
}

test.serial('control clients that send no fd get a clear message and the daemon keeps serving', async (t) => {
  t.timeout(60_000);
  const scope = new Scope(t);
  const daemon = await startDaemon(scope, 'tcp:127.0.0.1:0');
  const hello = JSON.stringify({ version: 1, pid: process.pid, mode: 'missing', regions: [{ base_host_virt_addr: 0x7f0000000000, size: SIZE, offset: 0, page_size: 4096, page_size_kib: 4096, name: 'toy.ram' }] }) + '\n';
  const reply1 = await deadline(badControlClient(daemon.control, hello), 15_000, 'reply to a hello without fds');
  await daemon.proc.waitFor(/control client rejected: .*no file descriptor/i, 5_000, 'stderr');
  t.log(`reply to a hello without fds: ${reply1.trim()}`);
  t.regex(reply1, /error/i, 'the client is told (an error line) before the daemon closes');
  await deadline(badControlClient(daemon.control, null), 15_000, 'a client that closes at once');
  await daemon.proc.waitFor(/control client rejected: .*(without sending anything|closed)/i, 5_000, 'stderr');
  // A client that connects and stays silent: its handshake waits without blocking the daemon's event loop
  // (it used to freeze it for the 10 s handshake timeout); it is rejected when the daemon stops (or times out).
  const silent = badControlClient(daemon.control, null, 30_000);
  const t0 = performance.now();
  const r = await runMigration(scope, { size: SIZE, pattern: 'uniform', steps: 200_000, migrateAt: 100_000, mode: 'missing', transport: 'tcp' }, daemon);
  const secs = (performance.now() - t0) / 1000;
  t.log(`migration after the bad clients took ${secs.toFixed(1)} s`);
  t.true(secs < 8, `a silent control client must not stall the daemon (10 s handshake timeout): the migration took ${secs.toFixed(1)} s`);
  t.true(daemon.proc.exit !== null, 'daemon --once ended');
  t.regex(daemon.proc.stderr, /control client rejected: .*no complete handshake/i, 'the silent client is rejected with a clear message');
  checkMigration(t, r, SIZE, 'missing');
  await deadline(silent, 5_000, 'the silent client to be disconnected').catch(() => t.fail('the silent client was never disconnected'));
});

// ---------------------------------------------------------------------------------------------------------
// Hostile sources against a destination with guard pages (see children/guard-dest.ts).

const HSIZE = 16 * MiB;
const GUARD = 1 * MiB;

async function hostile(t: ExecutionContext, variant: string, mode: 'missing' | 'minor', why: RegExp): Promise<void> {
  t.timeout(60_000);
  const scope = new Scope(t);
  const daemon = await startDaemon(scope, 'tcp:127.0.0.1:0', { timeoutSec: 10 });
  const dest = scope.node('guard-dest', GUARD_DEST, ['--control', daemon.control, '--size', String(HSIZE), '--guard', String(GUARD), '--mode', mode]);
  const ready = await dest.waitFor(/ready pid=(\d+) memfd=(\d+)/, 15_000, 'stdout');
  // Our own reference to the destination's memfd: readable after the daemon killed the process.
  const memfd = fs.openSync(`/proc/${ready[1]}/fd/${ready[2]}`, 'r');
  scope.onClose(() => fs.closeSync(memfd));
  const src = scope.node('hostile-source', HOSTILE_SOURCE, ['--to', daemon.address, '--size', String(HSIZE), '--variant', variant]);
  const t0 = performance.now();
  await deadline(Promise.all([daemon.proc.exited, dest.exited, src.exited]), 25_000, `daemon, destination and hostile source (${variant}) to end`)
    .catch((e: Error) => { scope.dump(); throw e; });
  const secs = (performance.now() - t0) / 1000;
  t.log(`exits after the hostile source started: daemon ${((daemon.proc.exitAt - t0) / 1000).toFixed(2)} s, dest ${((dest.exitAt - t0) / 1000).toFixed(2)} s, source ${((src.exitAt - t0) / 1000).toFixed(2)} s`);
  const msg = /migration failed: (.*)/.exec(daemon.proc.stderr)?.[1] ?? '';
  t.log(`${variant} (${mode}): ${secs.toFixed(1)} s; daemon: ${msg || daemon.proc.stderr.trim().slice(-300)}; dest: ${dest.stdout.trim().split('\n').pop()} ${JSON.stringify(dest.exit)}; source: ${src.stdout.trim().split('\n').pop()}`);
  t.is(daemon.proc.exit?.code, 1, `daemon --once exits 1 on a hostile stream\n${daemon.proc.tail()}`);
  t.regex(msg, why, 'the daemon names what was wrong');
  t.true(exitedBadly(dest), `the destination must not complete: ${JSON.stringify(dest.exit)}`);
  t.true(secs < 20, `bounded: ${secs.toFixed(1)} s`);
  // Memory: the guards still hold 0xA5 and the hostile 0xEE page landed nowhere.
  const all = Buffer.alloc(GUARD + HSIZE + GUARD);
  t.is(fs.readSync(memfd, all, 0, all.length, 0), all.length, 'read the whole memfd');
  const bad = (b: Buffer, v: number): number => { for (let i = 0; i < b.length; i++) if (b[i] !== v) return i; return -1; };
  t.is(bad(all.subarray(0, GUARD), 0xa5), -1, 'guard before the region untouched');
  t.is(bad(all.subarray(GUARD + HSIZE), 0xa5), -1, 'guard after the region untouched');
  t.is(all.subarray(GUARD, GUARD + HSIZE).indexOf(0xee), -1, 'the hostile page was written nowhere in the region');
}

const OUT_OF_RANGE = /offset|outside|beyond|range|exceed/i;
test.serial('hostile source: page one past the end of the block (minor mode) → cut off, no byte outside written', hostile, 'out-of-range', 'minor', OUT_OF_RANGE);
test.serial('hostile source: page one past the end of the block (missing mode)', hostile, 'out-of-range', 'missing', OUT_OF_RANGE);
test.serial('hostile source: page at offset 2^52 (minor mode)', hostile, 'huge-offset', 'minor', OUT_OF_RANGE);
test.serial('hostile source: page out of range on the urgent channel (minor mode)', hostile, 'urgent-out-of-range', 'minor', OUT_OF_RANGE);
test.serial('hostile source: page for a block never announced (minor mode)', hostile, 'unknown-block', 'minor', /evil\.ram|unknown|not announced|block/i);
test.serial('hostile source: block list with a wrong size (minor mode)', hostile, 'size-mismatch', 'minor', /size|length|bytes|toy\.ram/i);
test.serial('hostile source: garbage after the header (minor mode)', hostile, 'garbage', 'minor', /bad migration stream|section|record|unexpected|unknown|type/i);
