// Destination process for daemon integration tests: creates its memfd region, registers it with a
// userfaultfd, attaches to the daemon's control socket, waits for the state, touches its memory (each
// missing page faults and is served by the daemon), and prints one JSON line with what it saw.
import { prepareDestRegion, attachToDaemon } from '../../../src/dest/attach.js';
import { digest } from './pattern.js';
import { createHash } from 'node:crypto';

interface Args { control: string; size: number; mode: 'missing' | 'minor'; order: 'seq' | 'random' | 'after'; name?: string }

async function main(): Promise<void> {
  const a = JSON.parse(process.argv[2]) as Args;
  const dest = prepareDestRegion({ size: a.size, mode: a.mode, name: a.name ?? 'toy.ram' });
  const att = attachToDaemon(a.control, {
    uffd: dest.uffd, memfdFd: dest.region.fd, regions: [dest.spec], mode: a.mode,
  });
  const out: Record<string, unknown> = { pid: process.pid };
  try {
    const state = await att.state;
    out.state = state.length <= 64 ? state.toString('utf8') : `<${state.length} bytes>`;
    out.stateSha = createHash('sha256').update(state).digest('hex');
    // 'after': touch nothing until the daemon reports completion (pure background transfer).
    if (a.order === 'after') out.stats = await att.done;
    const t0 = performance.now();
    out.digest = digest(dest.region.view(), a.order === 'after' ? 'seq' : a.order);
    out.touchMs = performance.now() - t0;
    if (a.order !== 'after') out.stats = await att.done;
    out.ok = true;
  } catch (e) {
    out.ok = false;
    out.error = (e as Error).message;
  }
  process.stdout.write(JSON.stringify(out) + '\n');
  att.close();
  process.exit(0);
}
void main();
