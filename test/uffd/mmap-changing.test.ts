// EAGAIN while a REMOVE event is unread (kernel uffd-unit-tests `mmap-changing`), for every resolver.
import test from 'ava';
import { runInChild } from '../helpers/child.js';
import { scenarios, testNeeding } from './support.js';
import { pageSize } from '../../src/uffd/index.js';

const EAGAIN = 11;

testNeeding('every resolver returns EAGAIN (and -EAGAIN in its result field) while a REMOVE is unread',
  { features: ['EVENT_REMOVE', 'MOVE', 'POISON', 'MINOR_SHMEM', 'PAGEFAULT_FLAG_WP'] }, async (t) => {
    const r = await runInChild(scenarios, 'mmapChanging', undefined, { timeoutMs: 20000 });
    t.true(r.ok, r.summary);
    const res = r.result as {
      results: Record<string, { ret: number; field?: number }>; thrown: string; blockedWhileUnread: boolean;
      event: { kind: string; start: number; end: number } | null; madviseResult: { r: number }; after: number;
    };
    for (const op of ['copy', 'zeropage', 'move', 'poison', 'continue', 'writeProtect']) {
      t.is(res.results[op].ret, -EAGAIN, `${op} returns -EAGAIN`);
      if (res.results[op].field !== undefined) t.is(res.results[op].field, -EAGAIN, `${op} result field holds -EAGAIN`);
    }
    t.is(res.thrown, 'UffdAgainError:EAGAIN', 'the throwing variant raises UffdAgainError');
    t.true(res.blockedWhileUnread, 'madvise stays blocked until the event is read');
    t.is(res.event?.kind, 'remove');
    t.is(res.event!.end - res.event!.start, pageSize);
    t.is(res.madviseResult.r, 0, 'madvise completes once the event is read');
    t.is(res.after, pageSize, 'COPY works again afterwards');
  });
