// A small test destination built on src/protocol's decoders (the real daemon is src/daemon/): accepts the
// main (+ urgent) connection(s), decodes everything, lets a test send page requests, answers SHUT at the
// end, and returns what arrived, in order. Also usable over one duplex stream (the exec transport).
import net from 'node:net';
import type { Duplex, Readable, Writable } from 'node:stream';
import { StreamDecoder, RamRecordDecoder, encodeReturnPathPong, encodeReturnPathReqPages, encodeReturnPathShut } from '../../../src/protocol/index.js';
import type { DecodedRecord, RamBlockInfo, RamRecord } from '../../../src/protocol/types.js';

export interface ArrivedPage {
  channel: 'main' | 'urgent';
  block: string;
  blockOffset: number;
  kind: 'page' | 'zero';
  data?: Buffer;
}

export interface ReceiverResult {
  /** Main-channel records in order. */
  records: DecodedRecord[];
  /** Urgent-channel records in order. */
  urgentRecords: DecodedRecord[];
  pages: ArrivedPage[];
  blocks: RamBlockInfo[];
  state?: Buffer;
  sawRun: boolean;
  urgentEos: number;
  mainEof: boolean;
  zeroCount: number;
  error?: Error;
}

export interface ReceiverContext {
  /** Send REQ_PAGES_ID on the urgent channel (or main when there is none / channel = 'main'). */
  request(block: string, start: number, length: number, channel?: 'main' | 'urgent'): void;
  /** Raw bytes on a return path (hostile tests). */
  raw(bytes: Uint8Array, channel?: 'main' | 'urgent'): void;
  /** Pages received so far. */
  pages: ArrivedPage[];
  /** Resolves when `n` pages have arrived. */
  waitPages(n: number): Promise<void>;
  result: ReceiverResult;
}

export interface ReceiverOptions {
  /** Called once POSTCOPY_RUN has been decoded (the "destination runs"). */
  onRun?: (ctx: ReceiverContext) => void | Promise<void>;
  /** Count ZERO records in result.zeroCount instead of listing them (big sparse regions). */
  countZeroOnly?: boolean;
  /** SHUT status to answer with (default 0); null = never answer. */
  shutStatus?: number | null;
  /** Answer PING with PONG (default true; false: a destination that never gets ready). */
  answerPing?: boolean;
}

class Session {
  readonly result: ReceiverResult = { records: [], urgentRecords: [], pages: [], blocks: [], sawRun: false, urgentEos: 0, mainEof: false, zeroCount: 0 };
  private readonly main = new StreamDecoder();
  private readonly urgentDec = new RamRecordDecoder();
  private waiters: { n: number; resolve: () => void }[] = [];
  private done!: (r: ReceiverResult) => void;
  readonly finished: Promise<ReceiverResult>;
  readonly ctx: ReceiverContext;
  private urgentOut?: Writable;

  constructor(private readonly mainOut: Writable, private readonly opts: ReceiverOptions) {
    this.finished = new Promise((r) => { this.done = r; });
    const self = this;
    this.ctx = {
      request(block, start, length, channel) {
        const out = channel === 'main' || !self.urgentOut ? self.mainOut : self.urgentOut;
        out.write(encodeReturnPathReqPages(start, length, block));
      },
      raw(bytes, channel) {
        const out = channel === 'main' || !self.urgentOut ? self.mainOut : self.urgentOut;
        out.write(bytes);
      },
      pages: this.result.pages,
      waitPages: (n) => new Promise<void>((resolve) => { if (this.result.pages.length >= n) resolve(); else this.waiters.push({ n, resolve }); }),
      result: this.result,
    };
  }

  attachUrgent(inp: Readable, out: Writable): void {
    this.urgentOut = out;
    inp.on('data', (c: Buffer) => this.feed('urgent', c));
    inp.on('error', () => {});
  }

  feed(channel: 'main' | 'urgent', chunk: Buffer): void {
    if (this.result.error) return;
    try {
      const recs = channel === 'main' ? this.main.push(chunk) : this.urgentDec.push(chunk);
      for (const r of recs) this.onRecord(channel, r);
    } catch (e) {
      this.result.error = e as Error;
      this.done(this.result);
    }
  }

  private onRecord(channel: 'main' | 'urgent', r: DecodedRecord): void {
    if (r.kind === 'zero') {
      this.result.zeroCount++;
      if (this.opts.countZeroOnly) return;
    }
    if (!(this.opts.countZeroOnly && r.kind === 'page')) (channel === 'main' ? this.result.records : this.result.urgentRecords).push(r);
    switch (r.kind) {
      case 'mem-size':
        this.result.blocks = r.blocks;
        this.urgentDec.setBlocks(r.blocks);
        break;
      case 'page':
      case 'zero': {
        const rr = r as RamRecord & { kind: 'page' | 'zero' };
        this.result.pages.push({ channel, block: rr.block, blockOffset: rr.blockOffset, kind: rr.kind, data: rr.kind === 'page' ? Buffer.from(rr.data) : undefined });
        this.waiters = this.waiters.filter((w) => { if (this.result.pages.length >= w.n) { w.resolve(); return false; } return true; });
        break;
      }
      case 'device-state':
        if (r.idstr === 'postcopy-uffd/state') {
          const len = Buffer.from(r.data).readUInt32BE(0);
          this.result.state = Buffer.from(r.data.subarray(4, 4 + len));
        }
        break;
      case 'command':
        if (r.command === 'PING' && this.opts.answerPing !== false) this.mainOut.write(encodeReturnPathPong(r.value)); // like QEMU: the source waits for it before stopping
        if (r.command === 'POSTCOPY_RUN') {
          this.result.sawRun = true;
          void this.opts.onRun?.(this.ctx);
        }
        break;
      case 'eos':
        if (channel === 'urgent') this.result.urgentEos++;
        break;
      case 'eof':
        this.result.mainEof = true;
        break;
    }
    if (this.result.mainEof && (!this.urgentOut || this.result.urgentEos > 0)) this.finish();
  }

  private finished_ = false;
  private finish(): void {
    if (this.finished_) return;
    this.finished_ = true;
    if (this.opts.shutStatus !== null) this.mainOut.write(encodeReturnPathShut(this.opts.shutStatus ?? 0));
    this.done(this.result);
  }
}

export interface TestReceiver {
  uri: string;
  result: Promise<ReceiverResult>;
  close(): void;
}

/** Listen on tcp (port 0) or a unix path; first connection = main, second = urgent. */
export async function startReceiver(kind: 'tcp' | 'unix', opts: ReceiverOptions = {}, unixPath?: string): Promise<TestReceiver> {
  const sockets: net.Socket[] = [];
  let session: Session | undefined;
  let resolveResult!: (r: ReceiverResult) => void;
  const result = new Promise<ReceiverResult>((r) => { resolveResult = r; });
  const server = net.createServer((sock) => {
    sockets.push(sock);
    sock.on('error', () => {});
    if (!session) {
      session = new Session(sock, opts);
      session.finished.then(resolveResult);
      sock.on('data', (c: Buffer) => session!.feed('main', c));
    } else {
      session.attachUrgent(sock, sock);
    }
  });
  await new Promise<void>((resolve) => {
    if (kind === 'tcp') server.listen(0, '127.0.0.1', resolve);
    else server.listen(unixPath!, resolve);
  });
  const addr = server.address();
  const uri = kind === 'tcp' ? `tcp:127.0.0.1:${(addr as net.AddressInfo).port}` : `unix:${unixPath}`;
  return { uri, result, close() { for (const s of sockets) s.destroy(); server.close(); } };
}

/** One duplex stream carries everything (the exec transport's far end). */
export function receiveOnStream(stream: Duplex, opts: ReceiverOptions = {}): Promise<ReceiverResult> {
  const s = new Session(stream, opts);
  stream.on('data', (c: Buffer) => s.feed('main', c));
  stream.on('error', () => {});
  return s.finished;
}
