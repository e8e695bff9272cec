// Migration URIs as QEMU spells them: tcp:HOST:PORT, unix:PATH, exec:CMD.
import { MigrationError } from './errors.js';

export type MigrationUri =
  | { kind: 'tcp'; host: string; port: number }
  | { kind: 'unix'; path: string }
  | { kind: 'exec'; command: string };

/** Parse `tcp:HOST:PORT` (port 0 only with allowPortZero, for listeners) (IPv6 as `tcp:[::1]:PORT`), `unix:PATH` or `exec:CMD`; throws MigrationError BAD_URI. */
export function parseMigrationUri(uri: string, opts: { allowPortZero?: boolean } = {}): MigrationUri {
  if (typeof uri !== 'string' || uri.length === 0) throw badUri(uri, 'empty URI');
  const colon = uri.indexOf(':');
  const scheme = colon < 0 ? uri : uri.slice(0, colon);
  const rest = colon < 0 ? '' : uri.slice(colon + 1);
  switch (scheme) {
    case 'tcp': {
      const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(rest);
      if (!m) throw badUri(uri, 'expected tcp:HOST:PORT');
      const port = Number(m[3]);
      const min = opts.allowPortZero ? 0 : 1;
      if (!Number.isInteger(port) || port < min || port > 65535) throw badUri(uri, `port must be ${min}..65535, got ${m[3]}`);
      const host = m[1] ?? m[2];
      return { kind: 'tcp', host: host === '' ? '127.0.0.1' : host, port };
    }
    case 'unix':
      if (rest === '') throw badUri(uri, 'expected unix:PATH');
      return { kind: 'unix', path: rest };
    case 'exec':
      if (rest.trim() === '') throw badUri(uri, 'expected exec:COMMAND');
      return { kind: 'exec', command: rest };
    default:
      throw badUri(uri, `unknown scheme "${scheme}" (expected tcp:HOST:PORT, unix:PATH or exec:CMD)`);
  }
}

function badUri(uri: string, why: string): MigrationError {
  return new MigrationError('BAD_URI', `bad migration URI ${JSON.stringify(uri)}: ${why}`, { uri });
}
