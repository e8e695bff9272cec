// Source process for daemon integration tests: fills a migratable region with the test pattern and
// migrates it with src/source's migrate(); prints one JSON line (digest, stats or error).
import { createMigratableRegion } from '../../../src/source/region.js';
import { migrate } from '../../../src/source/migrate.js';
import { fillPattern, digest } from './pattern.js';
import { createHash, randomBytes } from 'node:crypto';

interface Args { uri: string; size: number; background?: boolean; name?: string; state?: string; stateBytes?: number }

async function main(): Promise<void> {
  const a = JSON.parse(process.argv[2]) as Args;
  const region = createMigratableRegion(a.size, a.name ?? 'toy.ram');
  fillPattern(region.view());
  const out: Record<string, unknown> = { digest: digest(region.view()) };
  // A large binary state (random bytes) exercises the state section's framing.
  const state = a.stateBytes ? randomBytes(a.stateBytes) : Buffer.from(a.state ?? 'hello-state');
  out.stateSha = createHash('sha256').update(state).digest('hex');
  try {
    out.stats = await migrate(a.uri, {
      regions: [region], state, background: a.background ?? true, shutTimeoutMs: 20_000,
    });
    out.ok = true;
  } catch (e) {
    out.ok = false;
    out.error = (e as Error).message;
  }
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exit(0);
}
void main();
