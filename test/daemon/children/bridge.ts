// stdin/stdout ↔ Unix socket, for exec: transport tests without socat:
//   bridge listen PATH   accept one connection; socket → stdout, stdin → socket (the daemon's exec:CMD)
//   bridge connect PATH  connect; stdin → socket, socket → stdout (the source's exec:CMD)
import net from 'node:net';
import fs from 'node:fs';

const [mode, path] = process.argv.slice(2);
const wire = (s: net.Socket): void => {
  s.pipe(process.stdout);
  process.stdin.pipe(s);
  s.on('close', () => process.exit(0));
  s.on('error', () => process.exit(1));
};
if (mode === 'listen') {
  try { fs.unlinkSync(path); } catch { /* none */ }
  const srv = net.createServer((s) => { srv.close(); wire(s); });
  srv.listen(path);
} else {
  const tryConnect = (n: number): void => {
    const s = net.connect(path);
    s.once('connect', () => wire(s));
    s.once('error', () => { if (n > 0) setTimeout(() => tryConnect(n - 1), 100); else process.exit(1); });
  };
  tryConnect(50);
}
