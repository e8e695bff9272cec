// Worker-thread entry of FaultServer (fault-server.ts): load the page source, say ready, run the loop until
// stopped, post the counts.
import { parentPort, workerData } from 'node:worker_threads';
import { serveFaults, resolveFill, FAULT_SERVER_ROLE, type FaultServerJob } from './fault-server.js';

if (parentPort && (workerData as { role?: string } | null)?.role === FAULT_SERVER_ROLE) {
  const job = workerData as FaultServerJob;
  try {
    const fill = await resolveFill(job.source);
    parentPort.postMessage({ ready: true });
    parentPort.postMessage({ stats: serveFaults(job, fill) });
  } catch (e) {
    parentPort.postMessage({ error: (e as Error).message });
  }
}
