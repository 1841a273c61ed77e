/**
 * Which fault, on which camera, when, and for how long: the `--fault` option
 * of `npm run sim` and the commands it reads on stdin. Parsing is pure; the
 * scheduler only keeps timers.
 *
 *   --fault NAME[#CAMERA][=VALUE][@WHEN]
 *     WHEN: AT[+FOR]          once, AT after the start, lasting FOR
 *           everyPERIOD[+FOR] every PERIOD (the first after one PERIOD)
 *           (no @WHEN: at the start)
 *     times: 500ms, 30s, 2m, 1h, 7d, or a bare number of seconds
 *
 *   stdin: NAME[#CAMERA][=VALUE] [FOR]   now (e.g. `outage 20`, `power-cut 2`, `stall#2 5`)
 *          NAME[#CAMERA][=VALUE]@WHEN    as --fault, counted from now
 *
 * Without #CAMERA a fault hits every camera's agent at once.
 */
import { CRASH_SIGNALS, type CrashSignal } from './ffmpeg-crash.js';
import { FAULT_STATUSES, type FaultStatus } from './fault-proxy.js';
import { formatDuration, parseDuration } from './durations.js';
import { describeSkew, parseSkew } from './clock-skew.js';
import { parseQuota } from './full-disk.js';

export type FaultName = 'outage' | 'blackhole' | 'cloud-5xx' | 'slow' | 'stall' | 'power-cut' | 'ffmpeg-crash' | 'skew' | 'full-disk';

interface FaultDef {
  /** what FOR means, and its default; 'none': an instant fault */
  lasts: 'none' | { defaultMs: number | undefined; what: string };
  /** the =VALUE: its parser, its default (undefined: required) and how it reads */
  value?: { parse: (text: string) => number | string | null; fallback?: number | string; what: string };
  summary: string;
}

function parseStatus(text: string): number | null {
  const n = Number(text);
  return (FAULT_STATUSES as readonly number[]).includes(n) ? n : null;
}

function parseSignal(text: string): string | null {
  const name = text.toUpperCase().startsWith('SIG') ? text.toUpperCase() : `SIG${text.toUpperCase()}`;
  return (CRASH_SIGNALS as readonly string[]).includes(name) ? name : null;
}

export const FAULTS: Record<FaultName, FaultDef> = {
  outage: { lasts: { defaultMs: 20_000, what: 'how long' }, summary: 'the network refuses every connection to the cloud (reset)' },
  blackhole: { lasts: { defaultMs: 20_000, what: 'how long' }, summary: 'the network swallows every connection to the cloud (no answer)' },
  'cloud-5xx': {
    lasts: { defaultMs: 20_000, what: 'how long' },
    value: { parse: parseStatus, fallback: 503, what: `the status, ${FAULT_STATUSES.join('|')}` },
    summary: 'the cloud answers every request with an HTTP 5xx',
  },
  slow: {
    lasts: { defaultMs: 30_000, what: 'how long' },
    value: { parse: parseDuration, fallback: 2000, what: 'the latency added to each request' },
    summary: "the cloud's answers come late",
  },
  stall: { lasts: { defaultMs: 10_000, what: 'how long' }, summary: 'the camera stops sending without closing the connection' },
  'power-cut': { lasts: { defaultMs: 2000, what: 'how long the power stays off' }, summary: 'SIGKILL to the agent and its ffmpeg, then the agent starts again' },
  'ffmpeg-crash': {
    lasts: 'none',
    value: { parse: parseSignal, fallback: 'SIGKILL', what: `the signal, ${CRASH_SIGNALS.join('|')}` },
    summary: "a signal to the agent's recording ffmpeg only",
  },
  skew: {
    lasts: { defaultMs: undefined, what: 'how long (default: for good)' },
    value: { parse: parseSkew, what: 'the clock skew, e.g. +2h or -8d' },
    summary: "the agent's clock off by that much (the agent restarts with it, and again with the right time after FOR)",
  },
  'full-disk': {
    lasts: { defaultMs: undefined, what: 'how long (default: for good)' },
    value: { parse: parseQuota, what: 'the ring buffer quota in bytes, e.g. 300k' },
    summary: "a tiny ring-buffer quota (the agent restarts with it, and again with its own after FOR)",
  },
};

export const FAULT_NAMES = Object.keys(FAULTS) as FaultName[];

export interface FaultSpec {
  name: FaultName;
  /** 1-based; undefined: every camera */
  camera?: number;
  /** 5xx status, latency ms, crash signal, skew ms or quota bytes, by fault */
  value?: number | string;
  /** ms from the start (or from the command) to the first time */
  atMs: number;
  /** repeat period; undefined: once */
  everyMs?: number;
  /** how long each time lasts; undefined: an instant fault, or one for good */
  forMs?: number;
  /** the text it came from */
  text: string;
  /** skew and full-disk from the start: already in the agent's config when it first starts, so no restart for it */
  applied?: boolean;
}

export class FaultSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FaultSyntaxError';
  }
}

function duration(text: string, what: string, spec: string): number {
  const ms = parseDuration(text);
  if (ms === null) throw new FaultSyntaxError(`${spec}: ${what} must be a duration like 500ms, 30s, 2m, 1h, got ${JSON.stringify(text)}`);
  return ms;
}

/** NAME[#CAMERA][=VALUE] → its parts, checked. */
function parseHead(head: string, spec: string): Pick<FaultSpec, 'name' | 'camera' | 'value'> {
  const m = /^([a-z0-9-]+)(?:#(\d+))?(?:=(.+))?$/.exec(head);
  if (!m) throw new FaultSyntaxError(`${spec}: expected NAME[#CAMERA][=VALUE][@WHEN]`);
  const name = m[1] as FaultName;
  const def = FAULTS[name];
  if (!Object.prototype.hasOwnProperty.call(FAULTS, name) || !def) throw new FaultSyntaxError(`${spec}: unknown fault ${JSON.stringify(m[1])} (one of ${FAULT_NAMES.join(', ')})`);
  const out: Pick<FaultSpec, 'name' | 'camera' | 'value'> = { name };
  if (m[2] !== undefined) {
    const camera = Number(m[2]);
    if (!Number.isInteger(camera) || camera < 1) throw new FaultSyntaxError(`${spec}: #CAMERA counts from 1`);
    out.camera = camera;
  }
  if (m[3] !== undefined) {
    if (!def.value) throw new FaultSyntaxError(`${spec}: ${name} takes no =VALUE`);
    const v = def.value.parse(m[3]);
    if (v === null) throw new FaultSyntaxError(`${spec}: =VALUE is ${def.value.what}, got ${JSON.stringify(m[3])}`);
    out.value = v;
  } else if (def.value) {
    if (def.value.fallback === undefined) throw new FaultSyntaxError(`${spec}: ${name} needs =VALUE, ${def.value.what}`);
    out.value = def.value.fallback;
  }
  return out;
}

/** AT[+FOR] or everyPERIOD[+FOR] (FOR with its default filled in). */
function parseWhen(when: string, name: FaultName, spec: string): Pick<FaultSpec, 'atMs' | 'everyMs' | 'forMs'> {
  const m = /^(every)?([^+]+)(?:\+(.+))?$/.exec(when);
  if (!m) throw new FaultSyntaxError(`${spec}: @WHEN is AT[+FOR] or everyPERIOD[+FOR]`);
  const t = duration(m[2] ?? '', m[1] ? 'PERIOD' : 'AT', spec);
  const out: Pick<FaultSpec, 'atMs' | 'everyMs' | 'forMs'> = { atMs: t };
  if (m[1]) {
    if (t < 1000) throw new FaultSyntaxError(`${spec}: PERIOD must be at least 1s`);
    out.everyMs = t;
  }
  Object.assign(out, lasting(m[3], name, spec));
  if (out.everyMs !== undefined && out.forMs !== undefined && out.forMs >= out.everyMs) {
    throw new FaultSyntaxError(`${spec}: FOR must be shorter than PERIOD`);
  }
  return out;
}

function lasting(text: string | undefined, name: FaultName, spec: string): Pick<FaultSpec, 'forMs'> {
  const def = FAULTS[name];
  if (def.lasts === 'none') {
    if (text !== undefined) throw new FaultSyntaxError(`${spec}: ${name} is instant; it takes no +FOR`);
    return {};
  }
  if (text === undefined) return def.lasts.defaultMs === undefined ? {} : { forMs: def.lasts.defaultMs };
  return { forMs: duration(text, 'FOR', spec) };
}

/** One `--fault` value. */
export function parseFaultSpec(text: string): FaultSpec {
  const spec = text.trim();
  const at = spec.indexOf('@');
  const head = parseHead(at < 0 ? spec : spec.slice(0, at), spec);
  const when = at < 0 ? { atMs: 0, ...lasting(undefined, head.name, spec) } : parseWhen(spec.slice(at + 1), head.name, spec);
  return { ...head, ...when, text: spec };
}

export type SimCommand = { kind: 'fault'; fault: FaultSpec } | { kind: 'status' } | { kind: 'help' } | { kind: 'stop' } | { kind: 'empty' };

/** One line of stdin: a fault now (`outage 20`), a scheduled one (`outage@10s+20s`), or status / help / stop. */
export function parseCommand(line: string): SimCommand {
  const text = line.trim();
  if (text === '') return { kind: 'empty' };
  if (text === 'status') return { kind: 'status' };
  if (text === 'help' || text === '?') return { kind: 'help' };
  if (text === 'stop' || text === 'quit' || text === 'exit') return { kind: 'stop' };
  if (text.includes('@')) return { kind: 'fault', fault: parseFaultSpec(text) };
  const [head, forText, ...extra] = text.split(/\s+/);
  if (extra.length > 0) throw new FaultSyntaxError(`${text}: expected NAME[#CAMERA][=VALUE] [FOR]`);
  const parts = parseHead(head ?? '', text);
  return { kind: 'fault', fault: { ...parts, atMs: 0, ...lasting(forText, parts.name, text), text } };
}

/** One line saying what a fault does, for the simulator's output. */
export function describeFault(f: FaultSpec): string {
  const who = f.camera === undefined ? 'every camera' : `camera ${f.camera}`;
  const value =
    f.name === 'cloud-5xx' ? ` HTTP ${f.value}` :
    f.name === 'slow' ? ` +${formatDuration(Number(f.value))} per request` :
    f.name === 'skew' ? ` ${describeSkew(Number(f.value))}` :
    f.name === 'full-disk' ? ` quota ${f.value} bytes` :
    f.name === 'ffmpeg-crash' ? ` ${f.value}` : '';
  const lasts = f.forMs === undefined ? '' : f.name === 'power-cut' ? `, power back after ${formatDuration(f.forMs)}` : ` for ${formatDuration(f.forMs)}`;
  const when = f.everyMs !== undefined ? ` every ${formatDuration(f.everyMs)}` : f.atMs > 0 ? ` at +${formatDuration(f.atMs)}` : '';
  return `${f.name}${value} on ${who}${lasts}${when}`;
}

/** The usage text of the fault options, a line per fault. */
export function faultHelp(indent = '  '): string {
  const lines = FAULT_NAMES.map((n) => {
    const d = FAULTS[n];
    const fallback = n === 'slow' ? formatDuration(Number(d.value?.fallback)) : d.value?.fallback;
    const v = d.value ? `=${fallback === undefined ? 'VALUE' : `[${fallback}]`} (${d.value.what})` : '';
    const f = d.lasts === 'none' ? ' (instant)' : `, +FOR: ${d.lasts.what}${d.lasts.defaultMs !== undefined ? ` (default ${formatDuration(d.lasts.defaultMs)})` : ''}`;
    return `${indent}${n}${v}: ${d.summary}${f}`;
  });
  return lines.join('\n');
}

/** A FaultStatus from a spec's value. */
export function faultStatus(f: FaultSpec): FaultStatus {
  return Number(f.value) as FaultStatus;
}

export function crashSignal(f: FaultSpec): CrashSignal {
  return String(f.value) as CrashSignal;
}

/**
 * Fires each fault at its time(s), counted from start(). `inject` runs one
 * occurrence (and resolves when it is over); an occurrence due while the
 * previous one of the same spec still runs is skipped and reported.
 */
export class FaultScheduler {
  private readonly timers = new Set<NodeJS.Timeout>();
  private stopped = false;

  constructor(
    private readonly inject: (f: FaultSpec) => Promise<void>,
    private readonly onSkip: (f: FaultSpec, why: string) => void = () => undefined,
  ) {}

  add(f: FaultSpec): void {
    if (this.stopped) return;
    let running = false;
    const fire = (): void => {
      if (this.stopped) return;
      if (running) {
        this.onSkip(f, 'the previous one is still under way');
        return;
      }
      running = true;
      void this.inject(f).finally(() => {
        running = false;
      });
    };
    if (f.everyMs !== undefined) {
      const every = f.everyMs;
      const first = setTimeout(() => {
        this.timers.delete(first);
        fire();
        const again = setInterval(fire, every);
        this.timers.add(again);
      }, f.atMs);
      this.timers.add(first);
      return;
    }
    const t = setTimeout(() => {
      this.timers.delete(t);
      fire();
    }, f.atMs);
    this.timers.add(t);
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}
