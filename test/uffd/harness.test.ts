// The child-process harness (test/helpers/child.ts) must report results, errors, exits and hangs clearly.
import test from 'ava';
import path from 'node:path';
import fs from 'node:fs';
import os from 'node:os';
import { runInChild, runChild, startInChild } from '../helpers/child.js';

const cases = new URL('./children/harness-cases.js', import.meta.url).href;

test('runInChild returns the export\'s value and the messages it sent', async (t) => {
  const r = await runInChild(cases, 'returns', { x: 21 });
  t.true(r.ok, r.summary);
  t.deepEqual(r.result, { doubled: 42 });
  t.deepEqual(r.messages, [{ hello: 21 }]);
});

test('a thrown error comes back with name, message and code', async (t) => {
  const r = await runInChild(cases, 'throws');
  t.false(r.ok);
  t.is(r.error?.message, 'boom');
  t.is(r.error?.code, 'EBOOM');
  t.regex(r.summary, /child threw Error: boom/);
});

test('a hung child is SIGKILLed at the timeout and reported as such', async (t) => {
  const r = await runInChild(cases, 'hangs', undefined, { timeoutMs: 500 });
  t.true(r.timedOut);
  t.is(r.signal, 'SIGKILL');
  t.false(r.ok);
  t.regex(r.summary, /timed out after 500 ms/);
});

test('exit codes and a missing export are reported', async (t) => {
  const r = await runInChild(cases, 'exits3');
  t.is(r.code, 3);
  t.false(r.ok);
  const m = await runInChild(cases, 'nope');
  t.regex(m.error!.message, /no exported function nope/);
});

test('runChild runs a plain script with JSON args', async (t) => {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'harness-')), 's.cjs');
  fs.writeFileSync(file, 'const a = JSON.parse(process.argv[2]); console.log(a.n + 1); process.send({ got: a.n });');
  const r = await runChild({ script: file, args: { n: 4 } });
  t.true(r.ok, r.summary);
  t.is(r.stdout.trim(), '5');
  t.deepEqual(r.messages, [{ got: 4 }]);
  fs.rmSync(path.dirname(file), { recursive: true });
});

test('startInChild: messages arrive while the child runs; kill ends it; nextMessage after the end rejects', async (t) => {
  const c = startInChild(cases, 'talksThenWaits');
  t.deepEqual(await c.nextMessage(), { n: 1 });
  t.deepEqual(await c.nextMessage(), { n: 2 });
  c.kill();
  const r = await c.done;
  t.is(r.signal, 'SIGKILL');
  await t.throwsAsync(c.nextMessage(1000), { message: /ended before sending|no message/ });
});
