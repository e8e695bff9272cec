// Shared by the uffd test files: feature probing for skips, hugetlb availability, the scenarios module path.
import test, { type ExecutionContext } from 'ava';
import { Userfaultfd, hugePageInfo, type FeatureName } from '../../src/uffd/index.js';

export const scenarios = new URL('./children/scenarios.js', import.meta.url).href;

/** Names among `names` this kernel does not offer (empty = all supported). */
export function missingFeatures(...names: FeatureName[]): FeatureName[] {
  const offered = Userfaultfd.probe().decoded.names;
  return names.filter((n) => !offered.includes(n));
}

/** Why hugetlb tests cannot run here, or undefined when 2 MiB pages are reserved. */
export function hugetlbUnavailable(pagesNeeded = 4): string | undefined {
  const h = hugePageInfo();
  if (h.sizeBytes !== 2 * 1024 * 1024) return `default huge page size is ${h.sizeBytes}, not 2 MiB`;
  if (h.free < pagesNeeded) return `only ${h.free} free 2 MiB huge pages (need ${pagesNeeded}; echo 64 > /proc/sys/vm/nr_hugepages)`;
  return undefined;
}


/** Register an ava test that needs kernel features (or a precondition); skipped with the reason in its title otherwise. */
export function testNeeding(title: string, needs: { features?: FeatureName[]; reason?: string | undefined },
  fn: (t: ExecutionContext) => Promise<void> | void): void {
  const missing = missingFeatures(...(needs.features ?? []));
  const why = missing.length ? `${missing.join(', ')} not supported` : needs.reason;
  if (why) test.skip(`${title} (skipped: ${why})`, () => {});
  else test(title, fn);
}
