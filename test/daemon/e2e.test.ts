// End-to-end migrations through the real postcopy-daemon CLI: a destination process (src/dest/attach.ts)
// whose memory faults on every missing page, and a source process (src/source/migrate.ts). Each party is a
// child process with a hard timeout. The destination's memory digest must equal the source's.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { startDaemon, runDest, runSource, lastJson, CHILD } from './helpers.js';

const MiB = 1 << 20;

async function migration(t: any, o: { size: number; mode: 'missing' | 'minor'; order: 'seq' | 'random'; transport: 'tcp' | 'unix' | 'exec' }) {
  let sourceUri = '';
  const d = await startDaemon({
    listen: (dir) => {
      if (o.transport === 'unix') { sourceUri = `unix:${path.join(dir, 'mig.sock')}`; return sourceUri; }
      if (o.transport === 'exec') {
        const sock = path.join(dir, 'bridge.sock');
        sourceUri = `exec:${process.execPath} ${CHILD('bridge')} connect ${sock}`;
        return `exec:${process.execPath} ${CHILD('bridge')} listen ${sock}`;
      }
      return 'tcp:127.0.0.1:0';
    },
  });
  if (o.transport === 'tcp') sourceUri = `tcp:127.0.0.1:${d.port}`;
  const dest = runDest({ control: d.control, size: o.size, mode: o.mode, order: o.order });
  await new Promise((r) => setTimeout(r, 300)); // the process attaches first, as in real use
  const [src, dst, dex] = await Promise.all([runSource({ uri: sourceUri, size: o.size }), dest, d.exited]);
  t.true(src.ok, src.summary);
  t.true(dst.ok, dst.summary);
  t.false(dex.timedOut, 'daemon finished');
  t.is(dex.code, 0, d.stderr());
  const s = lastJson(src.stdout);
  const r = lastJson(dst.stdout);
  t.true(s.ok, s.error);
  t.true(r.ok, r.error);
  t.is(r.state, 'hello-state', 'state blob forwarded');
  t.is(r.digest, s.digest, 'destination memory equals the source memory');
  const stats = JSON.parse(fs.readFileSync(d.statsFile, 'utf8'));
  t.is(stats.ok, true);
  t.is(stats.pagesTotal, o.size / 4096);
  t.is(stats.pagesPresent, stats.pagesTotal);
  t.is(stats.mode, o.mode);
  t.true(stats.pagesZero > 0, 'zero pages came as ZERO records');
  t.true(stats.bytesOnWire > 0);
  t.true(stats.downtimeMs !== null && stats.downtimeMs >= 0);
  t.regex(d.stdout(), /migration complete: \d+\/\d+ pages/);
  t.log(`${o.transport}/${o.mode}/${o.order} ${o.size / MiB} MiB: total ${stats.totalTimeMs} ms, downtime ${stats.downtimeMs} ms, ` +
    `faults ${stats.faults}, on demand ${stats.pagesOnDemand}, p50 ${stats.faultLatencyUs.p50} µs, p99 ${stats.faultLatencyUs.p99} µs, ${stats.throughputMBps} MB/s`);
}

test.serial('tcp, missing mode (UFFDIO_COPY), random touches, 32 MiB', (t) => migration(t, { size: 32 * MiB, mode: 'missing', order: 'random', transport: 'tcp' }));
test.serial('tcp, minor mode (memfd + UFFDIO_CONTINUE), sequential touches, 32 MiB', (t) => migration(t, { size: 32 * MiB, mode: 'minor', order: 'seq', transport: 'tcp' }));
test.serial('unix transport, missing mode, 16 MiB', (t) => migration(t, { size: 16 * MiB, mode: 'missing', order: 'random', transport: 'unix' }));
test.serial('exec: transport (single channel: requests inline on the return path), 16 MiB', (t) => migration(t, { size: 16 * MiB, mode: 'missing', order: 'random', transport: 'exec' }));

test.serial('a Firecracker-style client (bare region array, uffd only, unnamed region) is served', async (t) => {
  const { runChild } = await import('../helpers/child.js');
  const size = 8 * MiB;
  const d = await startDaemon();
  const dest = runChild({ script: CHILD('dest-firecracker'), args: { control: d.control, size }, timeoutMs: 60_000 });
  await new Promise((r) => setTimeout(r, 300));
  const [src, dst, dex] = await Promise.all([runSource({ uri: `tcp:127.0.0.1:${d.port}`, size }), dest, d.exited]);
  t.true(src.ok && dst.ok, `${src.summary} / ${dst.summary}`);
  t.is(dex.code, 0, d.stderr());
  const r = lastJson(dst.stdout);
  t.true(r.ok, r.error);
  t.is(r.digest, lastJson(src.stdout).digest);
});

test.serial('without --once the daemon serves migrations one after another, then stops on SIGTERM', async (t) => {
  const size = 8 * MiB;
  const d = await startDaemon({ args: [] });
  for (let i = 0; i < 2; i++) {
    const dest = runDest({ control: d.control, size, mode: i ? 'minor' : 'missing', order: 'random' });
    await new Promise((r) => setTimeout(r, 300));
    const [src, dst] = await Promise.all([runSource({ uri: `tcp:127.0.0.1:${d.port}`, size }), dest]);
    t.true(src.ok && dst.ok, `${src.summary} / ${dst.summary}`);
    t.is(lastJson(dst.stdout).digest, lastJson(src.stdout).digest, `migration ${i + 1}`);
  }
  t.is((d.stdout().match(/migration complete/g) ?? []).length, 2);
  d.child.kill('SIGTERM');
  const x = await d.exited;
  t.false(x.timedOut);
  t.is(x.code, 0);
});

test.serial('a 4 MiB binary state blob reaches the process intact', async (t) => {
  const size = 8 * MiB;
  const d = await startDaemon();
  const dest = runDest({ control: d.control, size, mode: 'missing', order: 'random' });
  await new Promise((r) => setTimeout(r, 300));
  const [src, dst, dex] = await Promise.all([runSource({ uri: `tcp:127.0.0.1:${d.port}`, size, stateBytes: 4 * MiB }), dest, d.exited]);
  t.true(src.ok && dst.ok, `${src.summary} / ${dst.summary}`);
  t.is(dex.code, 0, d.stderr());
  const s = lastJson(src.stdout), r = lastJson(dst.stdout);
  t.is(r.state, `<${4 * MiB} bytes>`);
  t.is(r.stateSha, s.stateSha);
  t.is(r.digest, s.digest);
});
