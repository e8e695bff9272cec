// Sleeping without spinning (EAGAIN from a resolver while a non-cooperative event is unread): Atomics.wait on
// a private cell blocks the calling thread (main thread or worker) for a bounded time and burns no CPU.
const cell = new Int32Array(new SharedArrayBuffer(4));

/** Sleep `ms` milliseconds (fractions allowed). */
export function sleepMs(ms: number): void {
  Atomics.wait(cell, 0, 0, ms);
}

/** Exponential back-off state: 0.05 ms doubling to 5 ms, with a total budget. Allocation free. */
export class Backoff {
  private delay = 0.05;
  private spent = 0;
  constructor(private readonly budgetMs: number) {}
  reset(): void { this.delay = 0.05; this.spent = 0; }
  /** Sleep once; false when the budget is exhausted (the caller gives up with EAGAIN). */
  pause(): boolean {
    if (this.spent >= this.budgetMs) return false;
    sleepMs(this.delay);
    this.spent += this.delay;
    this.delay = Math.min(this.delay * 2, 5);
    return true;
  }
}
