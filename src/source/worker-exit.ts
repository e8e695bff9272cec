// Waiting for a sending thread to go away, bounded. The timer is deliberately ref'd: the workers are
// unref'd, so an unref'd timer would let the event loop run dry and the process exit mid-await.

/** Resolves when `exited` settles or after `ms`, whichever comes first; keeps the event loop alive until then. */
export function settleWithin(exited: Promise<void>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    void exited.then(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
