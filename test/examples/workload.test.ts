// The toy workload is deterministic, and a run interrupted at step M (state blob + memory copied into a
// fresh instance, which is what a migration does) ends with the same digest as a straight run.
import test from 'ava';
import {
  createWorkload, windowsFromView, parsePattern, parseSize, describeState, isInitiallyZeroPage,
  PATTERNS, STATE_SIZE, PAGE_SIZE, WorkloadError, type AccessPattern,
} from '../../examples/toy/workload.js';
import { referenceRun, windowsOf } from '../helpers/workload.js';

const SIZE = 2 * 1024 * 1024; // 512 pages

function memory(size = SIZE): Uint8Array {
  return new Uint8Array(size);
}
const windows = windowsOf;
const straightRun = (pattern: AccessPattern, seed: number, steps: number, size = SIZE): { digest: string; mem: Uint8Array } =>
  referenceRun(size, pattern, seed, steps);

for (const pattern of PATTERNS) {
  test(`${pattern}: two reference runs give the same digest`, (t) => {
    const a = straightRun(pattern, 42, 200_000);
    const b = straightRun(pattern, 42, 200_000);
    t.regex(a.digest, /^[0-9a-f]{32}$/);
    t.is(a.digest, b.digest);
    t.true(Buffer.from(a.mem).equals(Buffer.from(b.mem)), 'memory contents identical');
  });

  test(`${pattern}: snapshot at step M + restore in a fresh instance = straight run`, (t) => {
    const K = 150_000;
    const straight = straightRun(pattern, 7, K).digest;
    for (const M of [0, 1, 12_345, K]) {
      const mem = memory();
      const src = createWorkload({ size: SIZE, pattern, seed: 7 });
      src.init(windows(mem));
      src.step(M);
      const state = src.snapshotState();
      t.is(state.length, STATE_SIZE);
      // "migrate": copy the memory, new instance, only the blob carries execution state
      const destMem = new Uint8Array(mem);
      mem.fill(0xee); // the source's memory is gone
      const info = describeState(state);
      t.deepEqual(info, { pattern, seed: 7, size: SIZE, steps: M });
      const dst = createWorkload({ size: info.size, pattern: info.pattern, seed: info.seed });
      dst.attach(windows(destMem));
      dst.restoreState(state);
      t.is(dst.steps, M);
      dst.step(K - M);
      t.is(dst.digest(), straight, `migration at step ${M}`);
    }
  });

  test(`${pattern}: step(a)+step(b) = step(a+b)`, (t) => {
    const mem = memory();
    const w = createWorkload({ size: SIZE, pattern, seed: 3 });
    w.init(windows(mem));
    w.step(1000); w.step(0); w.step(49_000);
    t.is(w.digest(), straightRun(pattern, 3, 50_000).digest);
  });
}

test('the digest depends on pattern, seed and step count', (t) => {
  const ds = new Set<string>();
  for (const pattern of PATTERNS) for (const seed of [1, 2]) for (const steps of [1000, 1001]) ds.add(straightRun(pattern, seed, steps).digest);
  t.is(ds.size, PATTERNS.length * 2 * 2);
});

test('one wrong word anywhere (or a page zeroed) changes the digest', (t) => {
  const mem = memory();
  const w = createWorkload({ size: SIZE, pattern: 'uniform', seed: 9 });
  w.init(windows(mem));
  w.step(10_000);
  const good = w.digest();
  const words = new Uint32Array(mem.buffer);
  for (const i of [0, 1, 777, words.length / 2 + 3, words.length - 1]) {
    const old = words[i];
    words[i] ^= 1 << (i % 32);
    t.not(w.digest(), good, `flip in word ${i}`);
    words[i] = old;
  }
  t.is(w.digest(), good);
  // a non-zero page delivered as zeros
  let page = 0;
  while (isInitiallyZeroPage(9, page)) page++;
  const saved = mem.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE);
  mem.fill(0, page * PAGE_SIZE, (page + 1) * PAGE_SIZE);
  t.not(w.digest(), good);
  mem.set(saved, page * PAGE_SIZE);
  // two pages swapped (a placement at the wrong offset)
  const a = mem.slice(0, PAGE_SIZE), b = mem.slice(PAGE_SIZE * 5, PAGE_SIZE * 6);
  mem.set(b, 0); mem.set(a, PAGE_SIZE * 5);
  t.not(w.digest(), good);
});

test('the initial fill leaves zero pages (for ZERO records) and fills the rest', (t) => {
  const size = 16 * 1024 * 1024;
  const mem = memory(size);
  const w = createWorkload({ size, pattern: 'sequential', seed: 5 });
  w.init(windows(mem));
  const pages = size / PAGE_SIZE;
  let zero = 0;
  for (let p = 0; p < pages; p++) {
    const words = new Uint32Array(mem.buffer, p * PAGE_SIZE, PAGE_SIZE / 4);
    const isZero = words.every((x) => x === 0);
    t.is(isZero, isInitiallyZeroPage(5, p), `page ${p}`);
    if (isZero) zero++;
  }
  t.true(zero > pages / 16 && zero < pages / 3, `${zero} of ${pages} pages zero`);
  // the whole 16th MiB is zero
  t.true(mem.subarray(15 * 1024 * 1024, 16 * 1024 * 1024).every((x) => x === 0));
});

test('restoreState rejects blobs from another workload or garbage', (t) => {
  const mem = memory();
  const a = createWorkload({ size: SIZE, pattern: 'hotset', seed: 1 });
  a.init(windows(mem));
  a.step(10);
  const blob = a.snapshotState();
  const check = (w: ReturnType<typeof createWorkload>, b: Uint8Array, re: RegExp): void => {
    const e = t.throws(() => w.restoreState(b), { instanceOf: WorkloadError });
    t.regex(e!.message, re);
    t.is(e!.code, 'ESTATE');
  };
  check(createWorkload({ size: SIZE, pattern: 'hotset', seed: 2 }), blob, /seed/);
  check(createWorkload({ size: SIZE, pattern: 'uniform', seed: 1 }), blob, /pattern/);
  check(createWorkload({ size: SIZE * 2, pattern: 'hotset', seed: 1 }), blob, /pages/);
  check(createWorkload({ size: SIZE, pattern: 'hotset', seed: 1 }), blob.subarray(0, 40), /40 bytes/);
  const bad = Buffer.from(blob); bad[0] ^= 0xff;
  check(createWorkload({ size: SIZE, pattern: 'hotset', seed: 1 }), bad, /magic/);
  const badCursor = Buffer.from(blob); badCursor.writeUInt32LE(0xffffffff, 32);
  check(createWorkload({ size: SIZE, pattern: 'hotset', seed: 1 }), badCursor, /cursor/);
  t.throws(() => describeState(Buffer.alloc(3)), { instanceOf: WorkloadError });
});

test('options are validated', (t) => {
  for (const size of [0, 4096, SIZE + 1, 9 * 1024 ** 3, NaN]) {
    t.throws(() => createWorkload({ size, pattern: 'uniform', seed: 1 }), { instanceOf: WorkloadError, code: 'ESIZE' } as never, `size ${size}`);
  }
  t.throws(() => createWorkload({ size: SIZE, pattern: 'zigzag' as AccessPattern, seed: 1 }), { instanceOf: WorkloadError });
  t.throws(() => createWorkload({ size: SIZE, pattern: 'uniform', seed: -1 }), { instanceOf: WorkloadError });
  const w = createWorkload({ size: SIZE, pattern: 'uniform', seed: 1 });
  t.throws(() => w.step(1), { instanceOf: WorkloadError }, 'step before init');
  t.throws(() => w.attach([new Uint32Array(SIZE / 8)]), { instanceOf: WorkloadError }, 'windows too small');
  t.is(parseSize('64M'), 64 * 1024 * 1024);
  t.is(parseSize('1GiB'), 1024 ** 3);
  t.is(parseSize('8g'), 8 * 1024 ** 3);
  t.is(parseSize('4096'), 4096);
  t.throws(() => parseSize('lots'));
  t.is(parsePattern('random'), 'uniform');
  t.is(parsePattern('HOT'), 'hotset');
  t.throws(() => parsePattern('nope'));
});

test('windowsFromView splits at 1 GiB', (t) => {
  const calls: Array<[number, number]> = [];
  const size = 2.5 * 1024 ** 3;
  const fake = new Uint8Array(16);
  const ws = windowsFromView(size, (o, l) => { calls.push([o, l]); return fake; });
  t.is(ws.length, 3);
  t.deepEqual(calls, [[0, 1024 ** 3], [1024 ** 3, 1024 ** 3], [2 * 1024 ** 3, 0.5 * 1024 ** 3]]);
});
