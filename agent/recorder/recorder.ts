import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdirSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { systemClock, type Clock } from '../../shared/clock.js';
import { killOnExit, pipeStderrLines, redactUrls } from '../../shared/ffmpeg.js';
import type { Logger } from '../../shared/log.js';
import { buildRecorderArgs, newRunId, segmentListPath, type AudioMode } from './ffmpeg-args.js';
import { SegmentListReader, type SegmentListEntry } from './segment-list.js';

/** A segment ffmpeg has closed (it is in the segment list) and that is fsynced. */
export interface SegmentClosed {
  path: string;
  runId: string;
  durationMs: number;
  /** wall clock when the recorder saw the segment in the list */
  endedAt: number;
  /** endedAt − durationMs */
  startMs: number;
}

export interface RestartPolicy {
  minDelayMs: number;
  maxDelayMs: number;
  /** a run that lasted this long, or closed a segment, resets the backoff */
  healthyRunMs: number;
}

export const DEFAULT_RESTART_POLICY: RestartPolicy = { minDelayMs: 500, maxDelayMs: 30_000, healthyRunMs: 30_000 };

export interface RecorderOptions {
  ffmpegPath: string;
  input: string;
  /** `<dataDir>/segments/<channel>` */
  dir: string;
  segmentSeconds: number;
  audio?: AudioMode;
  logger: Logger;
  clock?: Clock;
  /** how often the segment list is read */
  pollMs?: number;
  restart?: Partial<RestartPolicy>;
  /** how long stop() waits after SIGINT before SIGKILL */
  stopTimeoutMs?: number;
  /**
   * Awaited for each closed segment, in order. stop() resolves only once the
   * handler has finished for the last segment, so a caller that journals here
   * loses nothing on a clean stop.
   */
  onSegment?: (segment: SegmentClosed) => Promise<void> | void;
}

export interface RunStarted {
  runId: string;
  pid: number | undefined;
}

export interface RunExited {
  runId: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  segments: number;
  /** ms until the next launch, or null when the recorder is stopping */
  restartInMs: number | null;
}

interface Run {
  id: string;
  child: ChildProcess;
  reader: SegmentListReader;
  startedAt: number;
  segments: number;
  ended: boolean;
  endedPromise: Promise<void>;
  markEnded: () => void;
}

/** The next restart delay: doubling from minDelayMs, capped at maxDelayMs. */
export function restartDelayMs(policy: RestartPolicy, consecutiveFailures: number): number {
  const d = policy.minDelayMs * 2 ** Math.max(0, consecutiveFailures);
  return Math.min(policy.maxDelayMs, d);
}

/**
 * Runs the segmenting ffmpeg, restarts it when it dies, and reports each
 * segment once ffmpeg has closed it (DESIGN: "a segment is closed when it
 * appears in the segment list; a partial file never appears there").
 *
 * Events: 'segment' (SegmentClosed), 'run-start' (RunStarted), 'run-exit' (RunExited).
 */
export class Recorder extends EventEmitter {
  private readonly opts: RecorderOptions;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly restartPolicy: RestartPolicy;
  private current: Run | undefined;
  private failures = 0;
  private pollTimer: NodeJS.Timeout | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private tail: Promise<void> = Promise.resolve();
  private pollQueued = false;
  private started = false;
  private stopping: Promise<void> | undefined;

  constructor(opts: RecorderOptions) {
    super();
    this.opts = opts;
    this.clock = opts.clock ?? systemClock;
    this.log = opts.logger;
    this.restartPolicy = { ...DEFAULT_RESTART_POLICY, ...opts.restart };
  }

  static start(opts: RecorderOptions): Recorder {
    const r = new Recorder(opts);
    r.start();
    return r;
  }

  /** The current ffmpeg launch, if one is running. */
  get runId(): string | undefined {
    return this.current && !this.current.ended ? this.current.id : undefined;
  }

  get pid(): number | undefined {
    return this.current && !this.current.ended ? this.current.child.pid : undefined;
  }

  start(): void {
    if (this.started) return;
    if (this.stopping) throw new Error('recorder is stopped');
    this.started = true;
    mkdirSync(this.opts.dir, { recursive: true });
    this.pollTimer = setInterval(() => this.queuePoll(), this.opts.pollMs ?? 300);
    this.launch();
  }

  /**
   * Idempotent. SIGINT makes ffmpeg close the current segment and list it;
   * after stopTimeoutMs it is killed. The list is read one last time and the
   * promise resolves once every listed segment went through onSegment.
   */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    if (this.pollTimer) clearInterval(this.pollTimer);
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.pollTimer = undefined;
    this.restartTimer = undefined;
    const run = this.current;
    if (run && !run.ended) {
      run.child.kill('SIGINT');
      const timeoutMs = this.opts.stopTimeoutMs ?? 5000;
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        run.endedPromise.then(() => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), timeoutMs);
        }),
      ]);
      if (timer) clearTimeout(timer);
      if (timedOut) {
        this.log.warn({ runId: run.id, timeoutMs }, 'ffmpeg did not stop on SIGINT; killing it');
        run.child.kill('SIGKILL');
        await run.endedPromise;
      }
    }
    // the end handler queued the final read; wait for everything queued
    let seen: Promise<void> | undefined;
    while (seen !== this.tail) {
      seen = this.tail;
      await seen;
    }
  }

  private launch(): void {
    this.restartTimer = undefined;
    if (this.stopping) return;
    const runId = newRunId(this.clock.now());
    const args = buildRecorderArgs({
      input: this.opts.input,
      segmentSeconds: this.opts.segmentSeconds,
      dir: this.opts.dir,
      runId,
      audio: this.opts.audio,
    });
    // Not detached: a Ctrl-C in a terminal reaches ffmpeg too (same process
    // group), and killOnExit covers exits that skip stop().
    const child = spawn(this.opts.ffmpegPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    killOnExit(child);
    let markEnded!: () => void;
    const endedPromise = new Promise<void>((resolve) => {
      markEnded = resolve;
    });
    const run: Run = {
      id: runId,
      child,
      reader: new SegmentListReader(segmentListPath(this.opts.dir, runId)),
      startedAt: this.clock.now(),
      segments: 0,
      ended: false,
      endedPromise,
      markEnded,
    };
    this.current = run;
    if (child.stderr) {
      pipeStderrLines(child.stderr, (line) => this.log.warn({ runId, ffmpeg: redactUrls(line) }, 'ffmpeg'));
    }
    child.once('error', (err) => {
      this.log.error({ runId, err: { message: redactUrls(err.message) } }, 'ffmpeg could not be started');
      this.onRunEnded(run, null, null);
    });
    child.once('exit', (code, signal) => this.onRunEnded(run, code, signal));
    this.log.info({ runId, pid: child.pid, input: redactUrls(this.opts.input) }, 'recorder started ffmpeg');
    this.emit('run-start', { runId, pid: child.pid } satisfies RunStarted);
  }

  private onRunEnded(run: Run, code: number | null, signal: NodeJS.Signals | null): void {
    if (run.ended) return;
    run.ended = true;
    // the last segment ffmpeg closed on its way out is in the list by now
    this.enqueue(() => this.drain(run));
    let restartInMs: number | null = null;
    if (!this.stopping) {
      const healthy = run.segments > 0 || this.clock.now() - run.startedAt >= this.restartPolicy.healthyRunMs;
      if (healthy) this.failures = 0;
      restartInMs = restartDelayMs(this.restartPolicy, this.failures);
      this.failures += 1;
      this.log.warn({ runId: run.id, code, signal, restartInMs }, 'ffmpeg exited; restarting');
      this.restartTimer = setTimeout(() => this.launch(), restartInMs);
    } else {
      this.log.info({ runId: run.id, code, signal }, 'recorder ffmpeg stopped');
    }
    this.emit('run-exit', { runId: run.id, code, signal, segments: run.segments, restartInMs } satisfies RunExited);
    run.markEnded();
  }

  private queuePoll(): void {
    const run = this.current;
    if (!run || run.ended || this.pollQueued) return;
    this.pollQueued = true;
    this.enqueue(async () => {
      this.pollQueued = false;
      await this.drain(run);
    });
  }

  private enqueue(fn: () => Promise<void>): void {
    this.tail = this.tail.then(fn).catch((err: unknown) => {
      this.log.error({ err }, 'recorder: reading the segment list failed');
    });
  }

  private async drain(run: Run): Promise<void> {
    const entries = await run.reader.readNew();
    for (const entry of entries) await this.closeSegment(run, entry);
  }

  private async closeSegment(run: Run, entry: SegmentListEntry): Promise<void> {
    // the list is written by ffmpeg, but a name is still never allowed to leave the folder
    const name = basename(entry.filename);
    const path = join(this.opts.dir, name);
    try {
      await fsyncFile(path);
    } catch (err) {
      this.log.error({ runId: run.id, segment: name, err }, 'a listed segment could not be fsynced; skipped');
      return;
    }
    // a new directory entry is only durable once the folder is synced too
    await fsyncFile(this.opts.dir).catch(() => undefined);
    run.segments += 1;
    const durationMs = Math.max(0, Math.round((entry.endSec - entry.startSec) * 1000));
    const endedAt = this.clock.now();
    const segment: SegmentClosed = { path, runId: run.id, durationMs, endedAt, startMs: endedAt - durationMs };
    this.emit('segment', segment);
    if (this.opts.onSegment) {
      try {
        await this.opts.onSegment(segment);
      } catch (err) {
        this.log.error({ runId: run.id, segment: name, err }, 'segment handler failed');
      }
    }
  }
}

/** fsync works on a read-only descriptor on Linux, for files and folders alike. */
async function fsyncFile(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
