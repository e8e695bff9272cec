// Smoke test of the interim main job (`npm run demo`): a child process's page faults served over a passed
// uffd, checksum verified. Run as a separate process with a hard timeout.
import test from 'ava';
import { spawnWithTimeout } from '../helpers/child.js';
import { fileURLToPath } from 'node:url';

const script = fileURLToPath(new URL('../../examples/serve-child-faults.js', import.meta.url));

test('serve-child-faults: the child reads 2 MiB of served pages and the checksum matches', async (t) => {
  const out = await spawnWithTimeout(process.execPath, [script, '--pages', '512'], { timeoutMs: 60_000 }).done;
  t.is(out.code, 0, out.summary);
  t.regex(out.stdout, /served 512 faults/);
  t.regex(out.stdout, /checksum child 0x[0-9a-f]+ expected 0x[0-9a-f]+: OK/);
});
