// postcopy-daemon's command line: wrong options give ONE clear line and exit code 2; --help documents the
// transports and the --flags bit 0 note; a tcp port 0 is reported as a parseable "listening" line.
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import os from 'node:os';
import fs from 'node:fs';

const cli = fileURLToPath(new URL('../../src/cli/daemon.js', import.meta.url));
const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 15_000 });
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'pcd-cli-'));

test('--help documents transports, port 0 and the --flags bit 0 note', (t) => {
  const r = run(['--help']);
  t.is(r.status, 0);
  t.regex(r.stdout, /--listen URI/);
  t.regex(r.stdout, /exec:CMD/);
  t.regex(r.stdout, /port 0/);
  t.regex(r.stdout, /Bit 0 \(1\): touch arrived pages\. Moot with userfaultfd/);
});

const bad: [string, string[], RegExp][] = [
  ['no options', [], /--listen is required/],
  ['no --control', ['--listen', 'tcp:127.0.0.1:0'], /--control PATH is required/],
  ['unknown option', ['--listen', 'tcp:127.0.0.1:0', '--control', '/tmp/x', '--bogus'], /Unknown option '--bogus'/],
  ['positional', ['tcp:127.0.0.1:0'], /positional|Unexpected argument/i],
  ['bad listen scheme', ['--listen', 'udp:1.2.3.4:5', '--control', '/tmp/x'], /unknown transport "udp"/],
  ['bad port', ['--listen', 'tcp:127.0.0.1:70000', '--control', '/tmp/x'], /port 70000/],
  ['bad flags', ['--listen', 'tcp:127.0.0.1:0', '--control', '/tmp/x', '--flags', 'abc'], /--flags expects a non-negative integer/],
  ['bad timeout', ['--listen', 'tcp:127.0.0.1:0', '--control', '/tmp/x', '--timeout', '0'], /--timeout must be at least 1/],
];
for (const [name, args, re] of bad) {
  test(`option error (${name}): one clear line, exit 2`, (t) => {
    const r = run(args);
    t.is(r.status, 2, r.stderr);
    const lines = r.stderr.trim().split('\n');
    t.is(lines.length, 1, r.stderr);
    t.regex(lines[0], /^postcopy-daemon: /);
    t.regex(lines[0], re);
  });
}

test('--control on a path that is not a socket is refused before listening', (t) => {
  const d = tmp();
  const f = path.join(d, 'file');
  fs.writeFileSync(f, 'x');
  const r = run(['--listen', 'tcp:127.0.0.1:0', '--control', f]);
  t.is(r.status, 2);
  t.regex(r.stderr, /exists and is not a socket/);
});

test('tcp port 0: the chosen port is printed as "listening tcp:127.0.0.1:PORT" and SIGTERM stops the daemon', async (t) => {
  const d = tmp();
  const child = spawn(process.execPath, [cli, '--listen', 'tcp:127.0.0.1:0', '--control', path.join(d, 'c.sock'), '--no-progress'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.on('data', (b: Buffer) => {
      out += b;
      const m = /listening tcp:127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', () => reject(new Error(`daemon exited early: ${out}`)));
  });
  t.true(port > 0 && port < 65536);
  t.true(fs.existsSync(path.join(d, 'c.sock')));
  child.kill('SIGTERM');
  const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  clearTimeout(killer);
  t.not(code, null, 'exited by itself after SIGTERM (not SIGKILLed by the test)');
  t.false(fs.existsSync(path.join(d, 'c.sock')), 'control socket removed');
});
