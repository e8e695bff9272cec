// Child side of runInChild (test/helpers/child.ts): import a module, await one named export with the JSON
// args, post the result (or the error) back, exit. The module must NOT import ava (ava exits any process
// that imports it outside its CLI), so child code lives in plain modules, e.g. test/uffd/children/*.ts.
import { pathToFileURL } from 'node:url';

function send(msg: unknown): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send) { resolve(); return; }
    process.send(msg, () => resolve());
  });
}

async function main(): Promise<void> {
  const [modulePath, exportName, argsJson] = process.argv.slice(2);
  process.env.POSTCOPY_TEST_CHILD = '1';
  try {
    const mod = await import(pathToFileURL(modulePath).href);
    const fn = mod[exportName];
    if (typeof fn !== 'function') throw new Error(`${modulePath} has no exported function ${exportName}`);
    const result = await fn(JSON.parse(argsJson));
    await send({ kind: 'result', result });
    process.exit(0);
  } catch (e) {
    const err = e as Error & { code?: string };
    await send({ kind: 'error', error: { name: err?.name ?? 'Error', message: err?.message ?? String(e), stack: err?.stack, code: err?.code } });
    process.exit(1);
  }
}
void main();
