// Cases for test/uffd/harness.test.ts (the child-process harness itself).
import { sendToParent } from '../../helpers/child.js';

export function returns(a: { x: number }) { sendToParent({ hello: a.x }); return { doubled: a.x * 2 }; }
export async function throws() { const e = new Error('boom') as Error & { code: string }; e.code = 'EBOOM'; throw e; }
export function hangs() { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); }
export function exits3() { process.exit(3); }
export function talksThenWaits() { sendToParent({ n: 1 }); sendToParent({ n: 2 }); return new Promise(() => { setInterval(() => {}, 1000); }); }
