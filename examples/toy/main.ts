#!/usr/bin/env node
// The toy process (issue 4). Three roles, one workload (workload.ts):
//
//   node dist/examples/toy/main.js reference --steps K [--size 1G] [--pattern hotset] [--seed 1]
//       never migrated: init, K steps, print "digest=<hex> steps=K"
//   node dist/examples/toy/main.js source --migrate-at M --to tcp:HOST:PORT [--size ...] [-n] [-m] [--forward N] [--backward N]
//       init, M steps, then migrate(): stop, hand over the state blob, serve pages until the destination has all
//   node dist/examples/toy/main.js dest --control PATH --steps K [--size 1G] [--mode missing|minor]
//       create region + userfaultfd, attach to postcopy-daemon, receive the state, run to step K, hash every
//       page (so a wrong or missing page anywhere changes the digest), print "digest=<hex> steps=K"
//
// The digest of `dest` after a migration at step M equals the digest of `reference` with the same K.
import { parseArgs } from 'node:util';
import { createMigratableRegion } from '../../src/source/region.js';
import { migrate, type MigrationProgress } from '../../src/source/migrate.js';
import { serveMigrationAgent, agentSocketPath } from '../../src/source/agent.js';
import { prepareDestRegion, attachToDaemon, type DestMode, type DestMemory } from '../../src/dest/attach.js';
import { createWorkload, windowsFromView, parsePattern, parseSize, describeState, MAX_SIZE } from './workload.js';

const USAGE = `usage:
  toy reference --steps K [--size 1G] [--pattern sequential|uniform|hotset] [--seed N]
  toy source --migrate-at M --to URI [--size 1G] [--pattern P] [--seed N] [-n] [-m] [--forward N] [--backward N]
  toy source --agent PATH [--migrate-at M] ...   run until postcopy-migrate asks (--agent= : per-pid default path)
  toy dest --control PATH --steps K [--size 1G] [--mode missing|minor] [--memory anonymous|memfd] [--state-timeout SEC]
      (missing mode: anonymous memory by default; minor mode needs memfd)

URI: tcp:HOST:PORT | unix:PATH | exec:CMD   (the postcopy-daemon's --listen address)
Sizes: 64M .. 8G (smaller sizes down to 64K are accepted for tests).
-n: no background pages (on demand only); -m: background restarts after the last requested page.`;

/** A one-line progress report on stderr, at most twice a second. */
function progressPrinter(): (p: MigrationProgress) => void {
  let last = 0;
  return (p) => {
    const now = performance.now();
    if (now - last < 500 && p.pagesSent < p.pagesTotal) return;
    last = now;
    console.error(`toy: sent ${p.pagesSent}/${p.pagesTotal} pages (${p.pagesUrgent} on request), ${(p.bytes / 1048576).toFixed(0)} MiB, ${(p.elapsedMs / 1000).toFixed(1)} s`);
  };
}

function ms(t0: number): string {
  return `${(performance.now() - t0).toFixed(0)} ms`;
}

function intArg(v: string | undefined, name: string, def?: number): number {
  if (v === undefined) {
    if (def === undefined) throw new Error(`--${name} is required`);
    return def;
  }
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, got "${v}"`);
  return n;
}

async function main(argv: string[]): Promise<number> {
  const [mode, ...rest] = argv;
  const { values } = parseArgs({
    args: rest,
    options: {
      size: { type: 'string', default: '1G' },
      pattern: { type: 'string', default: 'hotset' },
      seed: { type: 'string', default: '1' },
      steps: { type: 'string' },
      'migrate-at': { type: 'string' },
      to: { type: 'string' },
      control: { type: 'string' },
      mode: { type: 'string', default: 'missing' },
      memory: { type: 'string' },
      'state-timeout': { type: 'string' },
      'no-background': { type: 'boolean', short: 'n', default: false },
      'restart-after-request': { type: 'boolean', short: 'm', default: false },
      postcopy: { type: 'boolean', short: 'p', default: true },
      forward: { type: 'string', default: '0' },
      backward: { type: 'string', default: '0' },
      agent: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help || !mode || mode === 'help' || mode === '--help') {
    console.log(USAGE);
    return mode ? 0 : 2;
  }
  const size = parseSize(values.size!);
  if (size > MAX_SIZE) throw new Error(`--size ${values.size} is above 8 GiB`);
  const seed = intArg(values.seed, 'seed');
  const pattern = parsePattern(values.pattern!);

  if (mode === 'reference') {
    const steps = intArg(values.steps, 'steps');
    const region = createMigratableRegion(size, 'toy.ram');
    const w = createWorkload({ size, pattern, seed });
    let t0 = performance.now();
    w.init(windowsFromView(size, (o, l) => region.view(o, l)));
    console.error(`toy: init ${size} bytes (${pattern}, seed ${seed}) in ${ms(t0)}`);
    t0 = performance.now();
    w.step(steps);
    console.error(`toy: ${steps} steps in ${ms(t0)}`);
    t0 = performance.now();
    const digest = w.digest();
    console.error(`toy: digest in ${ms(t0)}`);
    console.log(`digest=${digest} steps=${w.steps}`);
    region.close();
    return 0;
  }

  if (mode === 'source') {
    const migrateOpts = {
      postcopy: values.postcopy ?? true,
      background: !values['no-background'],
      restartAfterRequest: !!values['restart-after-request'],
      forward: intArg(values.forward, 'forward'),
      backward: intArg(values.backward, 'backward'),
      onProgress: progressPrinter(),
    };
    const region = createMigratableRegion(size, 'toy.ram');
    const w = createWorkload({ size, pattern, seed });
    let t0 = performance.now();
    w.init(windowsFromView(size, (o, l) => region.view(o, l)));

    if (values.agent !== undefined) {
      // Run until `postcopy-migrate --agent PATH ...` (or --pid) asks for a migration, or until --migrate-at.
      const limit = values['migrate-at'] !== undefined ? intArg(values['migrate-at'], 'migrate-at') : Infinity;
      let stopped = false;
      const socketPath = values.agent || agentSocketPath();
      const finished = new Promise<number>((resolve) => {
        void serveMigrationAgent(socketPath, {
          regions: [region],
          stop: () => { stopped = true; },
          getState: () => w.snapshotState(),
          onDone: (r) => {
            if (r.ok) { console.log(`migrated steps=${w.steps} stats=${JSON.stringify(r.stats)}`); resolve(0); }
            else if (r.stopped) { console.error(`toy: migration failed after the workload stopped: ${r.error.message}`); resolve(1); }
            else { console.error(`toy: migration failed, resuming: ${r.error.message}`); stopped = false; tick(); }
          },
          migrateOptions: migrateOpts,
        }).then((agent) => { console.error(`toy: agent listening on ${agent.path} (postcopy-migrate --agent ${agent.path} -p URI)`); });
      });
      const tick = (): void => {
        if (stopped) return;
        const n = Math.min(20_000, limit - w.steps);
        if (n > 0) { w.step(n); setImmediate(tick); } else setTimeout(tick, 50);
      };
      tick();
      const code = await finished;
      region.close();
      return code;
    }

    const at = intArg(values['migrate-at'], 'migrate-at');
    if (!values.to) throw new Error('--to URI is required (the daemon\'s --listen address)');
    w.step(at);
    console.error(`toy: init + ${at} steps in ${ms(t0)}; migrating to ${values.to}`);
    t0 = performance.now();
    // The workload is stopped: from now on this process only serves its memory.
    const stats = await migrate(values.to, { regions: [region], state: () => w.snapshotState(), ...migrateOpts });
    console.error(`toy: migration done in ${ms(t0)}`);
    console.log(`migrated steps=${at} stats=${JSON.stringify(stats)}`);
    region.close();
    return 0;
  }

  if (mode === 'dest') {
    if (!values.control) throw new Error('--control PATH is required (the daemon\'s control socket)');
    const steps = intArg(values.steps, 'steps');
    const regionMode = values.mode as DestMode;
    if (regionMode !== 'missing' && regionMode !== 'minor') throw new Error(`--mode must be missing or minor, got "${values.mode}"`);
    // Missing mode places into anonymous memory by default (faster UFFDIO_COPY than shmem); --memory memfd to compare.
    const memory = (values.memory ?? (regionMode === 'missing' ? 'anonymous' : 'memfd')) as DestMemory;
    const dest = prepareDestRegion({ size, name: 'toy.ram', mode: regionMode, memory });
    const att = attachToDaemon(values.control, {
      uffd: dest.uffd,
      memfdFd: dest.region.fd >= 0 ? dest.region.fd : undefined,
      regions: [dest.spec],
      mode: regionMode,
      stateTimeoutMs: values['state-timeout'] ? intArg(values['state-timeout'], 'state-timeout') * 1000 : undefined,
    });
    console.error(`toy: attached to ${values.control} (${regionMode}, ${dest.memory}, ${size} bytes); waiting for the state`);
    const state = await att.state;
    const t0 = performance.now();
    const info = describeState(state);
    if (info.size !== size) throw new Error(`the source's region is ${info.size} bytes, this destination has ${size} (--size)`);
    if (steps < info.steps) throw new Error(`--steps ${steps} is before the migration point ${info.steps}`);
    const w = createWorkload({ size, pattern: info.pattern, seed: info.seed });
    w.attach(windowsFromView(size, (o, l) => dest.region.view(o, l)));
    w.restoreState(state);
    console.error(`toy: running from step ${info.steps} (${info.pattern}, seed ${info.seed})`);
    w.step(steps - info.steps);
    const tSteps = performance.now() - t0;
    const digest = w.digest(); // reads every page: pulls whatever has not arrived yet
    console.error(`toy: steps ${tSteps.toFixed(0)} ms after the state arrived; digest at ${ms(t0)}`);
    console.log(`digest=${digest} steps=${w.steps}`);
    const stats = await att.done;
    console.log(`complete stats=${JSON.stringify(stats)}`);
    att.close();
    dest.close();
    return 0;
  }

  console.error(USAGE);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (e: Error) => {
    console.error(`toy: ${e.message}`);
    process.exitCode = 1;
  },
);
