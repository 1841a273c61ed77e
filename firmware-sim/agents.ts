/**
 * The simulator's agents: for each simulated camera, the real agent as a
 * device runs it, `node agent/main.ts run --config FILE` in a process of its
 * own (so a power cut can SIGKILL it with its ffmpeg), talking to the cloud
 * through a FaultProxy (so the network can fail under it). Plus the account
 * calls that get each agent a bind code, as the demo does: log in, optionally
 * choose a plan, one POST /v1/devices/bind-codes per camera.
 *
 * The runner reads the agent's JSON log lines (stdout), keeps them in
 * `<dataDir>/agent.log`, and emits each as 'log'; describeAgentLog() turns
 * the ones a person watching the simulator wants into one line each.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { createWriteStream, mkdirSync, writeFileSync, type WriteStream } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { readDeviceStatus, type DeviceStatus } from '../agent/status.js';
import { FaultProxy } from './faults/fault-proxy.js';
import { crashFfmpeg, type CrashSignal } from './faults/ffmpeg-crash.js';
import { descendants, powerCut, processRunning, waitGone, type PowerCut } from './faults/power-cut.js';

/** the repository root (or dist/ when built): agent/main is found from here */
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FROM_SOURCE = import.meta.url.endsWith('.ts');
const AGENT_MAIN = join(ROOT, 'agent', FROM_SOURCE ? 'main.ts' : 'main.js');
/** from source the agent runs under tsx's loader, named by its resolved URL: the agent's cwd is its data directory */
const NODE_ARGS = FROM_SOURCE ? ['--import', import.meta.resolve('tsx')] : [];

// ---- the account side -------------------------------------------------------

export class CloudCallError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    what: string,
  ) {
    // the code only: an answer never reaches a line with the email or password
    super(`${what}: ${status === 0 ? 'no answer' : `HTTP ${status}`} ${code}`);
    this.name = 'CloudCallError';
  }
}

async function call<T>(base: string, method: string, path: string, what: string, opts: { body?: unknown; token?: string } = {}): Promise<T> {
  const headers: Record<string, string> = {};
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  let res: Response;
  try {
    res = await fetch(base.replace(/\/+$/, '') + path, {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      signal: AbortSignal.timeout(30_000),
    });
  } catch (err) {
    throw new CloudCallError(0, (err as { cause?: { code?: string } }).cause?.code ?? 'NETWORK_ERROR', what);
  }
  const text = await res.text();
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  if (!res.ok) throw new CloudCallError(res.status, (body as { error?: { code?: string } } | undefined)?.error?.code ?? `HTTP_${res.status}`, what);
  return body as T;
}

/** A session of the account whose cameras the simulator claims. */
export class AccountSession {
  private constructor(
    readonly cloudUrl: string,
    private readonly token: string,
  ) {}

  /** POST /v1/sessions. The password goes in the body and nowhere else. */
  static async login(cloudUrl: string, email: string, password: string): Promise<AccountSession> {
    const { token } = await call<{ token: string }>(cloudUrl, 'POST', '/v1/sessions', 'login', { body: { email, password } });
    return new AccountSession(cloudUrl, token);
  }

  /** PUT /v1/account/plan: without a plan the agents keep their footage on the device (402 PLAN_REQUIRED). */
  async choosePlan(plan: string): Promise<void> {
    await call(this.cloudUrl, 'PUT', '/v1/account/plan', `choosing plan ${plan}`, { body: { plan }, token: this.token });
  }

  /** POST /v1/devices/bind-codes: one code, for one camera's first claim. */
  async bindCode(): Promise<string> {
    const { code } = await call<{ code: string }>(this.cloudUrl, 'POST', '/v1/devices/bind-codes', 'making a bind code', { token: this.token });
    return code;
  }

  /** The clips the cloud holds for a camera (every page). */
  async clips(serial: string): Promise<{ id: string; sha256: string; size: number; start: string }[]> {
    const out: { id: string; sha256: string; size: number; start: string }[] = [];
    let cursor: string | null = null;
    do {
      const q: string = `/v1/clips?serial=${serial}&limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const page: { clips: { id: string; sha256: string; size: number; start: string }[]; nextCursor: string | null } = await call(this.cloudUrl, 'GET', q, 'listing clips', { token: this.token });
      out.push(...page.clips);
      cursor = page.nextCursor;
    } while (cursor);
    return out;
  }

  /** DELETE /v1/sessions/current; failures are ignored (the session expires anyway). */
  async logout(): Promise<void> {
    await call(this.cloudUrl, 'DELETE', '/v1/sessions/current', 'logout', { token: this.token }).catch(() => undefined);
  }
}

// ---- one agent ----------------------------------------------------------------

export interface SimAgentOptions {
  serial: string;
  /** the camera's stream and motion events */
  camera: { streamUrl: string; eventsUrl?: string };
  /** the cloud's base URL */
  cloudUrl: string;
  /** the agent's data directory (journal, segments); its config file and log go there too */
  dataDir: string;
  /** for the first claim; afterwards the token lives in the journal */
  bindCode?: string;
  segmentSeconds?: number;
  /** a FaultProxy between the agent and the cloud (default: yes for an http:// cloud; an https:// one cannot be proxied) */
  proxy?: boolean;
  /** the clock-skew fault (agent config clockSkewMs, development only) */
  clockSkewMs?: number;
  /** the full-disk fault: the ring buffer's quota (storage.maxBytes) */
  storageMaxBytes?: number;
  caFile?: string;
  /** more agent config fields, as the config file takes them */
  config?: Record<string, unknown>;
  /** how long start() waits for "agent running" (default 60 s) */
  startTimeoutMs?: number;
}

/** What a restart may change: the faults that live in the agent's config. */
export interface AgentChange {
  clockSkewMs?: number;
  /** null: the agent's own quota again */
  storageMaxBytes?: number | null;
}

/** A JSON log line of the agent (pino): level, time, msg, and fields. */
export type AgentLogLine = Record<string, unknown> & { level: number; msg: string };

/**
 * One simulated device's agent. Emits 'log' (AgentLogLine) for every line it
 * logs, and 'exit' ({ code, signal, expected }) when its process ends:
 * expected for stop(), restart() and power cuts.
 */
export class SimAgent extends EventEmitter {
  readonly serial: string;
  readonly dataDir: string;
  readonly configFile: string;
  readonly logFile: string;
  /** between the agent and the cloud, when there is one */
  readonly proxy: FaultProxy | undefined;
  private readonly opts: SimAgentOptions;
  private change: AgentChange = {};
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private expectExit = false;
  private logStream: WriteStream | undefined;
  private stopping: Promise<void> | undefined;
  /** process starts, the first included */
  starts = 0;

  private constructor(opts: SimAgentOptions, proxy: FaultProxy | undefined) {
    super();
    this.opts = opts;
    this.serial = opts.serial;
    this.dataDir = resolve(opts.dataDir);
    this.configFile = join(this.dataDir, 'agent.json');
    this.logFile = join(this.dataDir, 'agent.log');
    this.proxy = proxy;
    this.change = { clockSkewMs: opts.clockSkewMs ?? 0, storageMaxBytes: opts.storageMaxBytes ?? null };
  }

  /** Starts the proxy and the agent; resolves once the agent says it runs (it has claimed, or is retrying the claim). */
  static async start(opts: SimAgentOptions): Promise<SimAgent> {
    const http = new URL(opts.cloudUrl).protocol === 'http:';
    if (opts.proxy === true && !http) throw new Error('a fault proxy needs an http:// cloud (an https:// one cannot be proxied)');
    const proxy = (opts.proxy ?? http) ? await FaultProxy.start({ target: opts.cloudUrl }) : undefined;
    const agent = new SimAgent(opts, proxy);
    mkdirSync(agent.dataDir, { recursive: true });
    agent.logStream = createWriteStream(agent.logFile, { flags: 'a' });
    try {
      await agent.launch();
    } catch (err) {
      await agent.stop();
      throw err;
    }
    return agent;
  }

  /** The agent process, while one runs. */
  get pid(): number | undefined {
    const c = this.child;
    return c && c.exitCode === null && c.signalCode === null ? c.pid : undefined;
  }

  /** The config as the agent runs with it now. */
  get clockSkewMs(): number {
    return this.change.clockSkewMs ?? 0;
  }

  get storageMaxBytes(): number | undefined {
    return this.change.storageMaxBytes ?? undefined;
  }

  /** `agent status`, read from the journal (safe while the agent runs). */
  status(): Promise<DeviceStatus> {
    const maxBytes = this.storageMaxBytes;
    return readDeviceStatus({ dataDir: this.dataDir, channel: 'main', storage: { ...(maxBytes !== undefined ? { maxBytes } : {}), minFreeBytes: 256 * 1024 * 1024 } });
  }

  /**
   * The power-cut fault: SIGKILL to the agent and its ffmpeg at once; after
   * offMs the agent starts again, as the device boots. Resolves once it runs
   * again, with what was killed.
   */
  async powerCut(offMs: number): Promise<PowerCut> {
    const pid = this.pid;
    if (pid === undefined || this.stopping) return { killed: [] };
    this.expectExit = true;
    const cut = powerCut({ pid });
    await this.exited;
    await waitGone(cut.killed.map((k) => k.pid), 5000).catch(() => undefined);
    await new Promise((r) => setTimeout(r, offMs));
    if (!this.stopping) await this.launch();
    return cut;
  }

  /** The ffmpeg-crash fault: `signal` to the agent's recording ffmpeg. Returns its pid, or undefined when none ran. */
  crashFfmpeg(signal: CrashSignal = 'SIGKILL'): number | undefined {
    const pid = this.pid;
    return pid === undefined ? undefined : crashFfmpeg(pid, signal);
  }

  /** A clean stop (SIGTERM: ffmpeg closes its segment, the journal is closed), then a start with `change` applied. */
  async restart(change: AgentChange = {}): Promise<void> {
    if (this.stopping) return;
    this.change = { ...this.change, ...change };
    await this.terminate();
    if (!this.stopping) await this.launch();
  }

  /** Idempotent: a clean stop of the agent (SIGKILL after 20 s), then the proxy closes. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      await this.terminate();
      await this.proxy?.close();
      await new Promise<void>((resolve) => (this.logStream ? this.logStream.end(resolve) : resolve()));
    })();
    return this.stopping;
  }

  private writeConfig(): void {
    const o = this.opts;
    const http = new URL(o.cloudUrl).protocol === 'http:';
    const config: Record<string, unknown> = {
      serial: o.serial,
      cloudUrl: this.proxy?.url ?? o.cloudUrl,
      input: o.camera.streamUrl,
      ...(o.camera.eventsUrl ? { eventsUrl: o.camera.eventsUrl } : {}),
      dataDir: this.dataDir,
      segmentSeconds: o.segmentSeconds ?? 10,
      development: http || this.clockSkewMs !== 0,
      logLevel: 'info',
      ...(o.bindCode ? { bindCode: o.bindCode } : {}),
      ...(o.caFile ? { caFile: o.caFile } : {}),
      ...(this.clockSkewMs !== 0 ? { clockSkewMs: this.clockSkewMs } : {}),
      ...(this.storageMaxBytes !== undefined ? { storage: { maxBytes: this.storageMaxBytes } } : {}),
      ...o.config,
    };
    // it holds the bind code until the first claim
    writeFileSync(this.configFile, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  }

  private launch(): Promise<void> {
    this.writeConfig();
    // the config file is the whole configuration: none of the caller's CAMVAULT_AGENT_*
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CAMVAULT_AGENT_')));
    const args = [...NODE_ARGS, AGENT_MAIN, 'run', '--config', this.configFile];
    // its own process group, so a power cut takes it and its ffmpeg in one kill(2),
    // and a Ctrl-C meant for the simulator does not reach it twice; its cwd is
    // its data directory, where a crashed ffmpeg's core file (if enabled) would land
    const child = spawn(process.execPath, args, { cwd: this.dataDir, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.starts += 1;
    this.expectExit = false;
    const stderrTail: string[] = [];
    let running = false;
    let ready!: () => void;
    let failed!: (err: Error) => void;
    const started = new Promise<void>((resolve, reject) => {
      ready = resolve;
      failed = reject;
    });
    this.exited = new Promise<void>((resolve) => {
      child.once('exit', (code, signal) => {
        const expected = this.expectExit || this.stopping !== undefined;
        if (!running) failed(new Error(`the agent of ${this.serial} exited before it ran (code ${code}, signal ${signal})${stderrTail.length ? `: ${stderrTail.join(' ')}` : ''}`));
        this.emit('exit', { code, signal, expected });
        resolve();
      });
    });
    child.once('error', (err) => failed(new Error(`the agent of ${this.serial} could not be started: ${err.message}`)));
    const lines = (stream: NodeJS.ReadableStream | null, fromStderr: boolean): void => {
      if (!stream) return;
      createInterface({ input: stream, crlfDelay: Infinity }).on('line', (raw) => {
        this.logStream?.write(`${raw}\n`);
        let line: AgentLogLine;
        try {
          const parsed = JSON.parse(raw) as unknown;
          if (typeof parsed !== 'object' || parsed === null || typeof (parsed as { msg?: unknown }).msg !== 'string') throw new Error('not a log line');
          line = parsed as AgentLogLine;
        } catch {
          // "agent: …" from the CLI itself, or anything else: an error line
          line = { level: fromStderr ? 50 : 30, msg: raw.trim(), stderr: fromStderr };
          if (fromStderr && raw.trim()) stderrTail.splice(0, stderrTail.length - 4, raw.trim());
        }
        if (line.msg === 'agent running') {
          running = true;
          ready();
        }
        this.emit('log', line);
      });
    };
    lines(child.stdout, false);
    lines(child.stderr, true);
    const timeoutMs = this.opts.startTimeoutMs ?? 60_000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the agent of ${this.serial} did not start within ${timeoutMs} ms`)), timeoutMs);
    });
    return Promise.race([started, timeout]).finally(() => clearTimeout(timer));
  }

  /** SIGTERM, then SIGKILL to the group after 20 s; waits until no process of the agent is left. */
  private async terminate(): Promise<void> {
    const pid = this.pid;
    if (pid === undefined) {
      await this.exited;
      return;
    }
    this.expectExit = true;
    const tree = descendants(pid);
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // gone already
    }
    let timer: NodeJS.Timeout | undefined;
    const inTime = await Promise.race([
      this.exited.then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), 20_000);
      }),
    ]);
    clearTimeout(timer);
    if (!inTime) {
      powerCut({ pid });
      await this.exited;
    }
    // anything the agent started and left behind (it should leave nothing)
    const left = tree.filter(processRunning);
    for (const p of left) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // gone in the meantime
      }
    }
    await waitGone(left, 5000).catch(() => undefined);
  }
}

// ---- what the simulator prints ------------------------------------------------

function kb(n: unknown): string {
  return typeof n === 'number' ? `${Math.round(n / 1000)} kB` : '? kB';
}

/**
 * The one-line description of an agent log line a person running the
 * simulator wants to see, or undefined for the rest (they stay in the log
 * file). Lines are matched on their message, which the agent keeps stable.
 */
export function describeAgentLog(line: AgentLogLine): string | undefined {
  const f = line as Record<string, unknown>;
  const code = typeof f.code === 'string' ? f.code : undefined;
  const msg = line.msg;
  if (msg === 'agent running') return 'agent running';
  if (msg === 'device claimed') return 'claimed by the account';
  if (msg === 'clip uploaded') return `clip ${String(f.clipId)} uploaded (${String(f.kind)}, ${kb(f.size)}, ${typeof f.uploadMs === 'number' ? `${(f.uploadMs / 1000).toFixed(1)} s` : '?'})`;
  if (msg.startsWith('uploads paused')) return `uploads paused: ${code ?? '?'} (footage stays on the device; next try in ${typeof f.retryInMs === 'number' ? Math.round(f.retryInMs / 1000) : '?'} s)`;
  if (msg === 'uploads resumed') return `uploads resumed (after ${code ?? '?'})`;
  if (msg === 'ffmpeg exited; restarting') return `recorder ffmpeg exited (code ${String(f.code ?? null)}, signal ${String(f.signal ?? null)}${f.endReason ? `, ${String(f.endReason)}` : ''}); restarting in ${String(f.restartInMs)} ms`;
  if (msg === 'salvaged the segment ffmpeg left open') return `salvaged ${String(f.segment)} (${String(f.fragments)} fragments kept)`;
  if (msg === 'a segment was dropped') return `segment ${String(f.segment)} dropped: ${String(f.reason)}`;
  if (msg.startsWith('no recording progress') || msg.startsWith('the camera sent nothing')) return 'camera stall caught; ffmpeg restarted';
  if (msg.startsWith('footage lost')) return `footage lost to the quota: ${String(f.lostClips)} clips (${String(f.totalLostClips)} so far)`;
  if (msg.startsWith('the cloud refuses the start time')) return `CLOCK: the cloud refuses this device's clip times (${code ?? ''}); uploads wait, footage stays queued`;
  if (msg.startsWith('the cloud takes clip start times')) return 'clock: the cloud takes clip times again';
  if (msg.startsWith('a clip stamped while the device clock ran ahead')) return `clip ${String(f.clipId)} stamped ahead waits until ${String(f.retryAt)}`;
  if (msg.startsWith('development: this agent runs on a clock skewed')) return `clock skewed by ${String(f.clockSkewMs)} ms`;
  if (msg === 'agent stopped') return 'agent stopped';
  if (msg === 'ffmpeg' && typeof f.ffmpeg === 'string') return `ffmpeg says: ${f.ffmpeg}`;
  if (line.level >= 50) return `error: ${msg}${code ? ` (${code})` : ''}`;
  return undefined;
}
