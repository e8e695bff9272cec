// End-to-end migration across two network namespaces (issue 4): the source toy in one, postcopy-daemon and
// the destination toy in the other, joined by a veth pair (10.231.N.1/24 ↔ 10.231.N.2/24). The destination's
// digest must equal the never-migrated reference. Namespaces (and the veth with them) are deleted at
// teardown, after every child is killed. Skipped with a reason when not root or `ip` is missing.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { Scope, runMigration, checkMigration, MiB } from './harness.js';

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
}

function missingPrerequisite(): string | null {
  if (process.getuid?.() !== 0) return 'not root (ip netns needs CAP_SYS_ADMIN)';
  try { ip('-V'); } catch { return '`ip` (iproute2) not found'; }
  return null;
}

test.serial('migration across two network namespaces over a veth pair (tcp, missing mode, hotset)', async (t) => {
  t.timeout(60_000);
  const why = missingPrerequisite();
  if (why) { t.log(`skipped: ${why}`); t.pass(); return; }
  const scope = new Scope(t);
  const tag = `${process.pid % 100000}${Math.floor(Math.random() * 100)}`;
  const nsSrc = `pcuffd-src-${tag}`, nsDst = `pcuffd-dst-${tag}`;
  const vSrc = `pcs${tag}`.slice(0, 15), vDst = `pcd${tag}`.slice(0, 15);
  const net = 10 + (process.pid % 240);
  const srcAddr = `10.231.${net}.1`, dstAddr = `10.231.${net}.2`;
  scope.onClose(() => {
    for (const ns of [nsSrc, nsDst]) { try { ip('netns', 'del', ns); } catch { /* not created */ } }
    const left = ip('netns', 'list');
    if (left.includes(nsSrc) || left.includes(nsDst)) t.log(`namespaces left behind: ${left}`);
  });
  ip('netns', 'add', nsSrc);
  ip('netns', 'add', nsDst);
  ip('link', 'add', vSrc, 'netns', nsSrc, 'type', 'veth', 'peer', 'name', vDst, 'netns', nsDst);
  ip('-n', nsSrc, 'addr', 'add', `${srcAddr}/24`, 'dev', vSrc);
  ip('-n', nsDst, 'addr', 'add', `${dstAddr}/24`, 'dev', vDst);
  for (const [ns, dev] of [[nsSrc, vSrc], [nsDst, vDst]]) {
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    ip('-n', ns, 'link', 'set', dev, 'up');
  }

  const size = 64 * MiB;
  const r = await runMigration(scope, {
    size, pattern: 'hotset', steps: 200_000, migrateAt: 100_000, mode: 'missing', transport: 'tcp',
    netns: { daemonWrap: ['ip', 'netns', 'exec', nsDst], sourceWrap: ['ip', 'netns', 'exec', nsSrc], host: dstAddr },
  });
  checkMigration(t, r, size, 'missing');
  t.regex(r.daemon.stdout, new RegExp(`listening tcp:${dstAddr.replace(/\./g, '\\.')}:\\d+`), 'daemon listened on the veth address');
  t.true(r.stats?.transport.includes(srcAddr) ?? false, `the source connected from the other namespace (${srcAddr}): ${r.stats?.transport}`);
});

test.serial('namespaces of this file are gone after the run', (t) => {
  // Runs after the migration test (serial): its teardown already deleted them.
  if (missingPrerequisite()) { t.pass(); return; }
  t.notRegex(ip('netns', 'list'), new RegExp(`pcuffd-(src|dst)-${process.pid % 100000}`));
});
