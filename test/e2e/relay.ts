#!/usr/bin/env node
// A tiny stdin/stdout ⇄ socket relay for the exec:CMD transport (this machine has neither socat nor nc):
//   relay listen PATH             accept ONE connection on a unix socket (the daemon's --listen exec:CMD)
//   relay connect PATH            connect to a unix socket, retrying until it exists (the source's exec:CMD)
//   relay connect-tcp HOST PORT   connect to a tcp address (source exec:CMD → daemon tcp:)
// stdin → socket, socket → stdout. Exits when either side ends, or after 90 s whatever happens (a test
// helper must never outlive its test).
import net from 'node:net';
import fs from 'node:fs';

const [mode, a, b] = process.argv.slice(2);
setTimeout(() => { process.stderr.write('relay: 90 s limit reached\n'); process.exit(3); }, 90_000).unref();

function pump(sock: net.Socket): void {
  process.stdin.pipe(sock);
  sock.pipe(process.stdout);
  sock.on('error', (e) => { process.stderr.write(`relay: ${e.message}\n`); process.exit(1); });
  sock.on('close', () => process.exit(0));
}

// The peer of our stdin went away before any connection: nothing to relay.
process.stdin.on('end', () => { if (!connected) process.exit(0); });
let connected = false;

if (mode === 'listen') {
  try { fs.unlinkSync(a); } catch { /* absent */ }
  const server = net.createServer((sock) => {
    connected = true;
    server.close();
    try { fs.unlinkSync(a); } catch { /* gone */ }
    pump(sock);
  });
  server.listen(a);
} else if (mode === 'connect' || mode === 'connect-tcp') {
  const until = Date.now() + 20_000;
  const attempt = (): void => {
    const sock = mode === 'connect' ? net.connect({ path: a }) : net.connect({ host: a, port: Number(b) });
    sock.once('error', (e) => {
      if (Date.now() > until) { process.stderr.write(`relay: cannot connect: ${e.message}\n`); process.exit(1); }
      setTimeout(attempt, 50);
    });
    sock.once('connect', () => { connected = true; sock.removeAllListeners('error'); pump(sock); });
  };
  attempt();
} else {
  process.stderr.write('usage: relay listen PATH | connect PATH | connect-tcp HOST PORT\n');
  process.exit(2);
}
