// exec: transport far end for tests: `node relay.js UNIX_PATH` pipes stdin → the socket and the socket →
// stdout, like `ssh host nc -U PATH` would.
import net from 'node:net';

const path = process.argv[2];
const sock = net.connect({ path });
sock.on('error', (e) => { process.stderr.write(`relay: ${e.message}\n`); process.exit(2); });
process.stdin.pipe(sock);
sock.pipe(process.stdout);
sock.on('close', () => process.exit(0));
process.stdin.on('end', () => sock.end());
