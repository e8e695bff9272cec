// postcopy-inspect, spawned as a real process on the QEMU fixtures and on corrupted copies.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { StreamEncoder } from '../../src/protocol/index.js';
import { fixturePath, fixturesMissing, readFixture, readPmem, FIXTURES } from '../helpers/fixtures.js';

const CLI = fileURLToPath(new URL('../../src/cli/inspect.js', import.meta.url));

function run(args: string[], env: Record<string, string | undefined> = {}) {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, DEBUG: undefined, ...env },
    maxBuffer: 64 * 1024 * 1024,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, signal: r.signal };
}

function tempDir(t: import('ava').ExecutionContext): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'postcopy-inspect-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('usage errors exit 2; --help exits 0', (t) => {
  const none = run([]);
  t.is(none.status, 2);
  t.regex(none.stderr, /no input file/);
  t.is(run(['--bogus', 'x']).status, 2);
  const help = run(['--help']);
  t.is(help.status, 0);
  t.regex(help.stdout, /--extract DIR/);
});

test('a missing file is one line on stderr and exit 1', (t) => {
  const r = run(['/nonexistent/stream.mig']);
  t.is(r.status, 1);
  t.is(r.stderr.trim().split('\n').length, 1);
  t.regex(r.stderr, /ENOENT|no such file/i);
});

test('--extract refuses a block larger than --max-block-bytes (a MEM_SIZE claiming 1 TiB)', (t) => {
  const dir = tempDir(t);
  const enc = new StreamEncoder();
  const stream = Buffer.concat([
    enc.header(), enc.configuration('pc-i440fx-7.2'), enc.section('start', 2, 'ram', 0, 4),
    enc.ram.memSize([{ idstr: 'small', usedLength: 8192 }, { idstr: 'huge', usedLength: 2 ** 40 }]),
    enc.ram.eos(), enc.footer(2), enc.section('end', 2), ...enc.ram.page('small', 4096, new Uint8Array(4096).fill(7)),
    enc.ram.eos(), enc.footer(2), enc.eof(),
  ]);
  const file = path.join(dir, 'huge.mig');
  writeFileSync(file, stream);
  const summary = run(['--json', file]);
  t.is(summary.status, 0, summary.stderr);
  const r = run(['--extract', path.join(dir, 'out'), file]);
  t.is(r.status, 1);
  t.regex(r.stderr, /claims 1099511627776 bytes, over --max-block-bytes/);
  t.is(r.stderr.trim().split('\n').length, 1);
  // Refused at MEM_SIZE, before any file was created.
  t.false(existsSync(path.join(dir, 'out', 'huge.bin')));
  t.false(existsSync(path.join(dir, 'out', 'small.bin')));
});

test('--extract streams pages to sparse files: ZERO over a written page, XBZRLE on top, discards, name collisions', (t) => {
  const dir = tempDir(t);
  const enc = new StreamEncoder();
  const blocks = [{ idstr: 'a/b', usedLength: 4 * 4096 }, { idstr: 'rom', usedLength: 4096 }];
  const p1 = new Uint8Array(4096).fill(1);
  const p2 = new Uint8Array(4096).fill(2);
  const p3 = Buffer.from(p2);
  p3.fill(9, 100, 200);
  const stream = Buffer.concat([
    enc.header(), enc.section('start', 2, 'ram', 0, 4), enc.ram.memSize(blocks), enc.ram.eos(), enc.footer(2),
    enc.section('part', 2), ...enc.ram.page('a/b', 0, p1), ...enc.ram.page('a/b', 4096, p2), ...enc.ram.page('a/b', 8192, p2),
    enc.ram.zero('a/b', 0), ...enc.ram.xbzrlePage('a/b', 4096, p2, p3), enc.ram.zero('rom', 0, 0x33), enc.ram.eos(), enc.footer(2),
    enc.command({ command: 'POSTCOPY_RAM_DISCARD', version: 0, idstr: 'a/b', ranges: [{ start: 8192, length: 8192 }] }),
    enc.section('end', 2), enc.ram.eos(), enc.footer(2), enc.eof(),
  ]);
  const file = path.join(dir, 's.mig');
  writeFileSync(file, stream);
  const r = run(['--extract', path.join(dir, 'out'), file]);
  t.is(r.status, 0, r.stderr);
  const ab = readFileSync(path.join(dir, 'out', 'a_b.bin'));
  t.is(ab.length, 4 * 4096);
  t.true(ab.subarray(0, 4096).every((b) => b === 0), 'ZERO after PAGE zeroes the page');
  t.true(ab.subarray(4096, 8192).equals(p3), 'XBZRLE applied to the page read back');
  t.true(ab.subarray(8192).every((b) => b === 0), 'discarded and never-sent pages read as zero');
  t.true(readFileSync(path.join(dir, 'out', 'rom.bin')).equals(Buffer.alloc(4096, 0x33)));
  // Two idstrs that map to the same file name are refused rather than silently merged.
  const clash = Buffer.concat([enc.header(), enc.section('start', 2, 'ram', 0, 4), new StreamEncoder().ram.memSize([{ idstr: 'x/y', usedLength: 4096 }, { idstr: 'x_y', usedLength: 4096 }]), enc.ram.eos(), enc.footer(2), enc.eof()]);
  writeFileSync(file, clash);
  const c = run(['--extract', path.join(dir, 'clash'), file]);
  t.is(c.status, 1);
  t.regex(c.stderr, /would both be extracted to x_y\.bin/);
});

const missing = fixturesMissing();
if (missing) {
  test('postcopy-inspect on QEMU fixtures', (t) => { t.log(`skipped: ${missing}`); t.pass(); });
} else {
  test('text summary of precopy-paused', (t) => {
    const r = run([fixturePath('precopy-paused.mig')]);
    t.is(r.status, 0, r.stderr);
    t.regex(r.stdout, /machine pc-i440fx-7\.2/);
    t.regex(r.stdout, /pc\.ram\s+64 MiB: zero 15872, page 512|pc\.ram\s+64 MiB: page 512, zero 15872/);
    t.regex(r.stdout, /\/rom@etc\/acpi\/tables\s+128 KiB/);
    t.regex(r.stdout, /ram\s+inst 0 v4\s+start part end/);
    t.regex(r.stdout, /Bytes: page payload \d+/);
  });

  test('--json summary: blocks, counts, commands and a byte breakdown that adds up', (t) => {
    const file = fixturePath('postcopy-hugetlb.src2dst.bin');
    const r = run(['--json', file]);
    t.is(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { stream: { bytes: number; machine: string; ramBlocks: Array<{ idstr: string; usedLength: number; pageSize?: number }>; pagesPerBlock: Record<string, Record<string, number>>; commands: Array<{ command: string }>; byteBreakdown: Record<string, number>; sections: unknown[] } };
    const s = j.stream;
    t.is(s.bytes, statSync(file).size);
    t.is(s.machine, 'pc-i440fx-7.2');
    t.deepEqual(s.ramBlocks[0], { idstr: 'pc.ram', usedLength: 64 * 1024 * 1024, pageSize: 0x200000 });
    t.is(s.ramBlocks.length, 6);
    t.deepEqual(s.pagesPerBlock['pc.ram'], { page: 741, zero: 16667 });
    t.is(s.commands.filter((c) => c.command === 'POSTCOPY_RAM_DISCARD').length, 5);
    t.is(s.commands.filter((c) => c.command === 'PING').length, 4);
    const b = s.byteBreakdown;
    t.is(b.pagePayload + b.deviceState + b.vmDescription + b.headers, s.bytes);
    const pages = Object.values(s.pagesPerBlock).reduce((n, c) => n + (c.page ?? 0), 0);
    t.is(b.pagePayload, pages * 4096, 'only PAGE records carry payload in this fixture');
  });

  test('--extract writes every block; pc.ram.bin equals QEMU\'s pmemsave', (t) => {
    const dir = tempDir(t);
    const fx = FIXTURES.find((f) => f.name === 'precopy-xbzrle-running')!;
    const r = run(['--extract', dir, fixturePath(fx.stream)]);
    t.is(r.status, 0, r.stderr);
    t.deepEqual(readdirSync(dir).sort(), [
      '_rom@etc_acpi_rsdp.bin', '_rom@etc_acpi_tables.bin', '_rom@etc_table-loader.bin', 'pc.bios.bin', 'pc.ram.bin', 'pc.rom.bin',
    ]);
    t.is(statSync(path.join(dir, '_rom@etc_acpi_tables.bin')).size, 128 * 1024);
    t.true(readFileSync(path.join(dir, 'pc.ram.bin')).equals(readPmem(fx)));
  });

  test('--extract on a postcopy stream (discards of pages sent in precopy): pc.ram.bin equals pmemsave', (t) => {
    const dir = tempDir(t);
    const fx = FIXTURES.find((f) => f.name === 'postcopy-after-precopy')!;
    const r = run(['--extract', dir, fixturePath(fx.stream)]);
    t.is(r.status, 0, r.stderr);
    t.true(readFileSync(path.join(dir, 'pc.ram.bin')).equals(readPmem(fx)));
  });

  test('--return-path decodes a captured destination→source stream', (t) => {
    const r = run(['--json', '--return-path', fixturePath('postcopy-throttled.dst2src.bin')]);
    t.is(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { returnPath: { bytes: number; messages: Record<string, number>; requests: Array<{ block: string; start: number; length: number }>; pongs: number[]; shut: number } };
    t.is(j.returnPath.bytes, 911);
    t.deepEqual(j.returnPath.messages, { PONG: 4, REQ_PAGES_ID: 1, REQ_PAGES: 53, SHUT: 1 });
    t.deepEqual([...j.returnPath.pongs].sort(), [1, 2, 3, 4]);
    t.is(j.returnPath.shut, 0);
    t.deepEqual(j.returnPath.requests[0], { block: 'pc.ram', start: 0xc0000, length: 4096, named: true });
    const text = run([fixturePath('postcopy-throttled.src2dst.bin'), '--return-path', fixturePath('postcopy-throttled.dst2src.bin')]);
    t.is(text.status, 0);
    t.regex(text.stdout, /REQ_PAGES×53/);
    t.regex(text.stdout, /pc\.ram 0xc0000 \+4096 \(named\)/);
  });

  test('corrupted streams: exit 1, one line naming the error, stack only with DEBUG', (t) => {
    const dir = tempDir(t);
    const data = readFixture('precopy-paused.mig');
    const badMagic = Buffer.from(data);
    badMagic[0] ^= 0xff;
    const truncated = data.subarray(0, 1_000_000);
    const flipped = Buffer.from(data);
    flipped[100_000] ^= 0x10; // inside pc.ram records: a flipped flag or offset bit
    const cases: Array<[string, Buffer, RegExp]> = [
      ['bad-magic.mig', badMagic, /BAD_MAGIC/],
      ['truncated.mig', truncated, /TRUNCATED/],
    ];
    for (const [name, bytes, re] of cases) {
      const file = path.join(dir, name);
      writeFileSync(file, bytes);
      const r = run([file]);
      t.is(r.status, 1, name);
      t.is(r.stdout, '');
      const lines = r.stderr.trim().split('\n');
      t.is(lines.length, 1, `${name}: ${r.stderr}`);
      t.regex(lines[0], re);
      t.regex(lines[0], /at byte \d+/);
      const dbg = run([file], { DEBUG: 'postcopy:*' });
      t.is(dbg.status, 1);
      t.regex(dbg.stderr, /\n\s+at /, 'stack trace with DEBUG');
    }
    // A flipped bit may or may not still decode; either way no crash and no stack trace.
    const file = path.join(dir, 'flipped.mig');
    writeFileSync(file, flipped);
    const r = run([file]);
    t.true(r.status === 0 || (r.status === 1 && r.stderr.trim().split('\n').length === 1), r.stderr);
    t.notRegex(r.stderr, /\n\s+at /);
  });
}
