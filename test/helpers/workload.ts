// Reference runs of the toy workload (examples/toy/workload.ts) in plain JS memory: what a migrated run
// must reproduce. Shared by the example, C-toy and workload tests.
import { createWorkload, windowsFromView, type AccessPattern } from '../../examples/toy/workload.js';

/** The workload's memory windows over a plain Uint8Array. */
export function windowsOf(mem: Uint8Array): Uint32Array[] {
  return windowsFromView(mem.length, (o, l) => mem.subarray(o, o + l));
}

/** A run never migrated: init + `steps` steps over fresh zeroed memory. */
export function referenceRun(size: number, pattern: AccessPattern, seed: number, steps: number): { digest: string; state: Buffer; mem: Uint8Array } {
  const mem = new Uint8Array(size);
  const w = createWorkload({ size, pattern, seed });
  w.init(windowsOf(mem));
  w.step(steps);
  return { digest: w.digest(), state: w.snapshotState(), mem };
}
