// Build examples/c-toy/toy.c with gcc -O2 (tests and the demo call this; no Makefile needed).
// The binary goes next to this module in dist/ and is rebuilt only when toy.c is newer.
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
/** Project root: this file is examples/c-toy/build.ts, compiled to dist/examples/c-toy/build.js. */
const root = path.resolve(here, here.includes(`${path.sep}dist${path.sep}`) ? '../../..' : '../..');
export const C_TOY_SOURCE = path.join(root, 'examples', 'c-toy', 'toy.c');

export class CToyBuildError extends Error {
  override name = 'CToyBuildError';
  constructor(readonly code: 'NO_COMPILER' | 'COMPILE_FAILED', message: string) { super(message); }
}

/** Whether a C compiler is on PATH (tests skip the C toy without one). */
export function haveCompiler(cc = process.env.CC ?? 'gcc'): boolean {
  try {
    execFileSync(cc, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Compile toy.c if needed; returns the binary's path. */
export function buildCToy(opts: { outDir?: string; cc?: string } = {}): string {
  const cc = opts.cc ?? process.env.CC ?? 'gcc';
  const outDir = opts.outDir ?? here;
  const out = path.join(outDir, 'toy');
  const srcTime = fs.statSync(C_TOY_SOURCE).mtimeMs;
  if (fs.existsSync(out) && fs.statSync(out).mtimeMs >= srcTime) return out;
  if (!haveCompiler(cc)) throw new CToyBuildError('NO_COMPILER', `${cc} not found: install gcc to build ${C_TOY_SOURCE}`);
  fs.mkdirSync(outDir, { recursive: true });
  // Build to a temporary name and rename: parallel test processes never see a half-written binary.
  const tmp = `${out}.${process.pid}.tmp`;
  try {
    execFileSync(cc, ['-O2', '-Wall', '-Wextra', '-o', tmp, C_TOY_SOURCE], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: Buffer };
    throw new CToyBuildError('COMPILE_FAILED', `${cc} failed on ${C_TOY_SOURCE}: ${err.stderr?.toString() ?? String(e)}`);
  }
  fs.renameSync(tmp, out);
  return out;
}
