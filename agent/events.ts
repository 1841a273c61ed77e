import { EventEmitter } from 'node:events';
import { connect, type Socket } from 'node:net';
import { systemClock, type Clock } from '../shared/clock.js';
import type { ClipKind } from '../shared/contracts/common.js';
import type { Logger } from '../shared/log.js';

/**
 * 'event' when a motion time falls inside [startMs − margin, endMs + margin],
 * else 'continuous'. Pure.
 */
export function classifyKind(motionTimes: readonly number[], startMs: number, endMs: number, marginMs = 1000): ClipKind {
  const from = startMs - marginMs;
  const to = endMs + marginMs;
  return motionTimes.some((t) => t >= from && t <= to) ? 'event' : 'continuous';
}

export interface MotionEventsOptions {
  /** tcp://host:port of the camera's NDJSON event feed; none = no motion, every clip continuous */
  url?: string;
  /** events for another serial are ignored */
  serial?: string;
  logger: Logger;
  clock?: Clock;
  /** how long motion times are kept: longer than a segment plus the time to notice it closed */
  keepMs?: number;
  /** the margin around a segment within which motion makes it an event clip */
  marginMs?: number;
  reconnect?: { minDelayMs: number; maxDelayMs: number };
}

const MAX_LINE = 4096;
const MAX_KEPT = 1000;

/**
 * The camera's motion events. Motion is stamped with the agent's own clock
 * when it arrives, the same clock that stamps segments, so a camera whose
 * clock is off cannot misfile its clips. Emits 'motion' ({ at: number }).
 */
export class MotionEvents extends EventEmitter {
  private readonly opts: MotionEventsOptions;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly keepMs: number;
  private readonly marginMsValue: number;
  private readonly times: number[] = [];
  private socket: Socket | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private stopped = false;
  private connected = false;

  constructor(opts: MotionEventsOptions) {
    super();
    this.opts = opts;
    this.clock = opts.clock ?? systemClock;
    this.log = opts.logger;
    this.keepMs = opts.keepMs ?? 10 * 60_000;
    this.marginMsValue = opts.marginMs ?? 1000;
  }

  start(): void {
    if (this.opts.url && !this.socket && !this.stopped) this.connect();
  }

  get isConnected(): boolean {
    return this.connected;
  }

  /** the margin around a segment within which motion makes it an event clip (the alert outbox uses the same) */
  get marginMs(): number {
    return this.marginMsValue;
  }

  /** Records a motion at `atMs` (agent clock). */
  recordMotion(atMs: number = this.clock.now()): void {
    this.times.push(atMs);
    const cutoff = this.clock.now() - this.keepMs;
    while (this.times.length > 0 && ((this.times[0] ?? 0) < cutoff || this.times.length > MAX_KEPT)) this.times.shift();
    this.emit('motion', { at: atMs });
  }

  classify(startMs: number, endMs: number): ClipKind {
    return classifyKind(this.times, startMs, endMs, this.marginMs);
  }

  stop(): void {
    this.stopped = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.socket?.destroy();
    this.socket = undefined;
  }

  private connect(): void {
    this.reconnectTimer = undefined;
    if (this.stopped || !this.opts.url) return;
    const u = new URL(this.opts.url);
    const socket = connect({ host: u.hostname, port: Number(u.port) });
    this.socket = socket;
    let buffer = '';
    let connectedAt = 0;
    socket.setEncoding('utf8');
    socket.setKeepAlive(true, 30_000);
    socket.on('connect', () => {
      this.connected = true;
      connectedAt = this.clock.now();
      this.log.info({ eventsUrl: this.opts.url }, 'connected to the camera event feed');
    });
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        this.onLine(line);
      }
      if (buffer.length > MAX_LINE) {
        // a feed that never ends its lines is broken; start over
        this.log.warn('camera event feed sent an overlong line; reconnecting');
        socket.destroy();
      }
    });
    socket.on('error', (err) => {
      this.log.debug({ err: { message: err.message } }, 'camera event feed error');
    });
    socket.on('close', () => {
      this.connected = false;
      if (this.socket === socket) this.socket = undefined;
      if (this.stopped) return;
      // a connection that lived a while was healthy: start the backoff over
      if (connectedAt && this.clock.now() - connectedAt > 10_000) this.failures = 0;
      const { minDelayMs, maxDelayMs } = this.opts.reconnect ?? { minDelayMs: 500, maxDelayMs: 30_000 };
      const delay = Math.min(maxDelayMs, minDelayMs * 2 ** this.failures);
      this.failures += 1;
      if (this.failures === 1 || this.failures % 10 === 0) this.log.warn({ retryInMs: delay }, 'camera event feed lost; reconnecting');
      this.reconnectTimer = setTimeout(() => this.connect(), delay);
    });
  }

  private onLine(line: string): void {
    const text = line.trim();
    if (!text) return;
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch {
      this.log.debug('camera event feed: a line that is not JSON');
      return;
    }
    if (typeof msg !== 'object' || msg === null) return;
    const m = msg as { type?: unknown; serial?: unknown };
    if (m.type !== 'motion') return;
    if (this.opts.serial && m.serial !== undefined && m.serial !== this.opts.serial) return;
    this.recordMotion(this.clock.now());
  }
}
