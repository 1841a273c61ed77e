import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdirSync } from 'node:fs';
import { stat, unlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { systemClock, type Clock } from '../../shared/clock.js';
import { killOnExit, pipeStderrLines, redactUrls } from '../../shared/ffmpeg.js';
import type { Logger } from '../../shared/log.js';
import { fsyncPath } from '../../shared/fsync.js';
import { buildRecorderArgs, newRunId, segmentListPath, type AudioMode } from './ffmpeg-args.js';
import { InputDescriber, isProblem, LogBudget, parseFfmpegLogLine, segmentOpened, type InputDescription } from './ffmpeg-log.js';
import { Mp4FormatError } from './mp4-boxes.js';
import { salvageSegment } from './salvage.js';
import { inspectSegment, SegmentInspector, truncateSegment, type StreamChangeFound } from './segment-check.js';
import { SegmentClock, segmentName } from './segment-clock.js';
import { SegmentListReader, type SegmentListEntry } from './segment-list.js';
import { describePlan, initialPlan, planArgs, planRecording, sameArgs, type RecordingPlan } from './stream-plan.js';

/** A segment ffmpeg has closed (it is in the segment list), or salvaged after ffmpeg died, and fsynced. */
export interface SegmentClosed {
  path: string;
  runId: string;
  durationMs: number;
  /** wall clock when the recorder saw the segment closed */
  endedAt: number;
  /** wall clock of its first frame, estimated as segment-clock.ts says; startMs + durationMs ≤ endedAt */
  startMs: number;
  /** the sample entry type of each track: ['avc1', 'mp4a'], ['hvc1'] … */
  tracks: string[];
  /** false is an error: the recorder logs it, the agent counts it */
  hasVideo: boolean;
  /** 'list': ffmpeg closed it; 'salvage': ffmpeg died with it open and its complete fragments were kept */
  closedBy: 'list' | 'salvage';
  /** bytes cut off its end: fragments after a stream change, or an incomplete last fragment */
  cutBytes: number;
}

export interface RestartPolicy {
  minDelayMs: number;
  maxDelayMs: number;
  /** a run that lasted this long, or closed a segment, resets the backoff */
  healthyRunMs: number;
}

export const DEFAULT_RESTART_POLICY: RestartPolicy = { minDelayMs: 500, maxDelayMs: 30_000, healthyRunMs: 30_000 };

/** Added to 1.5 segment lengths for the stall watchdog's default timeout. */
export const STALL_MARGIN_MS = 2000;

export interface RecorderOptions {
  ffmpegPath: string;
  input: string;
  /** `<dataDir>/segments/<channel>` */
  dir: string;
  segmentSeconds: number;
  /** config `audio`: see stream-plan.ts for what each does with each codec */
  audio?: AudioMode;
  logger: Logger;
  clock?: Clock;
  /** how often the segment list is read and the watchdog looks */
  pollMs?: number;
  restart?: Partial<RestartPolicy>;
  /** how long stop() waits after SIGINT before SIGKILL */
  stopTimeoutMs?: number;
  /**
   * The stall watchdog: no segment listed and the segment being written not
   * growing for this long, and ffmpeg is stopped and started again. Default
   * 1.5 × segmentSeconds + 2 s: ffmpeg writes a fragment every second, and a
   * segment can run past its length to the next keyframe.
   */
  stallTimeoutMs?: number;
  /** after the SIGINT of a stall or a stream change, SIGKILL follows this much later (default 2000) */
  killGraceMs?: number;
  /**
   * ffmpeg's own read timeout on tcp and http inputs (-rw_timeout), in µs.
   * Default: 2 s less than the stall timeout (at least 1 s), so on those
   * inputs a stall ends ffmpeg from inside before the watchdog fires: the
   * read fails, and ffmpeg writes the open fragment and closes and lists the
   * segment ("Connection timed out", exit 0), which no signal achieves while
   * ffmpeg is blocked in that read. The watchdog covers the other inputs, and
   * an ffmpeg that reads but writes nothing.
   */
  inputTimeoutUs?: number;
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
  /** why the recorder ended it, if it did */
  endReason: EndReason | null;
  /** ms until the next launch, or null when the recorder is stopping */
  restartInMs: number | null;
}

/** 'stall' and 'stream-change' came from the recorder's checks; 'replan' is a launch whose argv did not fit the input. */
export type EndReason = 'stall' | 'stream-change' | 'replan';

/** Emitted as 'stall'. */
export interface RecorderStall {
  runId: string;
  /** how long nothing was written */
  silentMs: number;
  /** 'watchdog': the recorder killed ffmpeg; 'input-timeout': ffmpeg's own -rw_timeout ended it */
  detectedBy: 'watchdog' | 'input-timeout';
  /** stalls in a row without a segment in between */
  consecutive: number;
}

/** Emitted as 'stream-change'. */
export interface StreamChanged {
  runId: string;
  segment: string;
  reason: string;
}

/** Emitted as 'segment-dropped', before the file is deleted. */
export interface SegmentDropped {
  runId: string;
  path: string;
  reason: string;
}

/** Emitted as 'input' each time a run's ffmpeg described the input. */
export interface InputDescribed {
  runId: string;
  input: InputDescription;
  plan: RecordingPlan;
  /** the run's argv did not fit: it is stopped and launched again */
  relaunch: boolean;
}

interface Run {
  id: string;
  child: ChildProcess;
  plan: RecordingPlan;
  reader: SegmentListReader;
  describer: InputDescriber;
  clock: SegmentClock;
  startedAt: number;
  /** segments reported (listed or salvaged) */
  segments: number;
  /** list entries read: also the number of the segment being written */
  listed: number;
  lastListedEndSec: number;
  lastProgressAt: number;
  currentPath: string;
  currentSize: number;
  inspector: SegmentInspector | undefined;
  /** the segment whose stream change was reported already */
  changeReported: string | undefined;
  /** ffmpeg said its input read timed out (-rw_timeout) */
  inputTimedOut: boolean;
  endReason: EndReason | undefined;
  killTimer: NodeJS.Timeout | undefined;
  ended: boolean;
  endedPromise: Promise<void>;
  markEnded: () => void;
}

/** The next restart delay: doubling from minDelayMs, capped at maxDelayMs. */
export function restartDelayMs(policy: RestartPolicy, consecutiveFailures: number): number {
  const d = policy.minDelayMs * 2 ** Math.max(0, consecutiveFailures);
  return Math.min(policy.maxDelayMs, d);
}

/** After this many stream-change restarts in a row the checks stop: a camera whose SPS never stops changing must not be restarted forever. */
const MAX_CHANGE_STREAK = 3;
/** Relaunches for a new argv in a row before they wait out the backoff like failures. */
const MAX_REPLAN_STREAK = 3;

const isPowerOfTwo = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;

/**
 * Runs the segmenting ffmpeg, restarts it when it dies, and reports each
 * segment once ffmpeg has closed it (DESIGN: "a segment is closed when it
 * appears in the segment list; a partial file never appears there").
 *
 * Around that, what a camera in the field does to it:
 * - its codecs: each run's input block on stderr says what the camera sends,
 *   and a launch whose argv does not fit is relaunched (stream-plan.ts);
 * - a stall without a close: the watchdog sees no new segment and no growth
 *   of the one being written for stallTimeoutMs, and restarts ffmpeg;
 * - a change of picture size or codec mid-stream: segment-check.ts finds it in
 *   the fragments, ffmpeg is restarted and the segment cut before the change;
 * - ffmpeg killed with a segment open: its complete fragments are salvaged.
 *
 * Events: 'segment' (SegmentClosed), 'run-start' (RunStarted), 'run-exit'
 * (RunExited), 'input' (InputDescribed), 'stall' (RecorderStall),
 * 'stream-change' (StreamChanged), 'segment-dropped' (SegmentDropped).
 */
export class Recorder extends EventEmitter {
  private readonly opts: RecorderOptions;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly restartPolicy: RestartPolicy;
  private readonly audioMode: AudioMode;
  readonly stallTimeoutMs: number;
  private readonly inputTimeoutUs: number;
  private readonly ffmpegLogBudget: LogBudget;
  private plan: RecordingPlan;
  private lastPlanMessage: string | undefined;
  private knownInput: InputDescription | undefined;
  private current: Run | undefined;
  private failures = 0;
  private stallStreak = 0;
  private changeStreak = 0;
  private replanStreak = 0;
  private changeChecks = true;
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
    this.audioMode = opts.audio ?? 'copy';
    this.plan = initialPlan(this.audioMode);
    this.stallTimeoutMs = opts.stallTimeoutMs ?? Math.round(1.5 * opts.segmentSeconds * 1000 + STALL_MARGIN_MS);
    this.inputTimeoutUs = opts.inputTimeoutUs ?? Math.max(1000, this.stallTimeoutMs - 2000) * 1000;
    this.ffmpegLogBudget = new LogBudget(20, 60_000, () => this.clock.now());
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

  /** What the last run's ffmpeg said the camera sends, once one has. */
  get input(): InputDescription | undefined {
    return this.knownInput;
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
      if (run.killTimer) clearTimeout(run.killTimer);
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
    const now = this.clock.now();
    const runId = newRunId(now);
    const plan = this.plan;
    const { videoCodec, audio, probe } = planArgs(plan);
    const args = buildRecorderArgs({
      input: this.opts.input,
      segmentSeconds: this.opts.segmentSeconds,
      dir: this.opts.dir,
      runId,
      audio,
      videoCodec,
      probe,
      inputTimeoutUs: this.inputTimeoutUs,
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
      plan,
      reader: new SegmentListReader(segmentListPath(this.opts.dir, runId)),
      describer: new InputDescriber(),
      clock: new SegmentClock(),
      startedAt: now,
      segments: 0,
      listed: 0,
      lastListedEndSec: 0,
      // probing comes before the first byte is written
      lastProgressAt: now + probe.analyzeDurationUs / 1000,
      currentPath: '',
      currentSize: -1,
      inspector: undefined,
      changeReported: undefined,
      inputTimedOut: false,
      endReason: undefined,
      killTimer: undefined,
      ended: false,
      endedPromise,
      markEnded,
    };
    this.current = run;
    if (child.stderr) {
      // every line is read (the input block, segments opened); the log gets a budget of them
      pipeStderrLines(child.stderr, (line) => this.onStderr(run, line), { maxLines: Number.POSITIVE_INFINITY });
    }
    child.once('error', (err) => {
      this.log.error({ runId, err: { message: redactUrls(err.message) } }, 'ffmpeg could not be started');
      this.onRunEnded(run, null, null);
    });
    child.once('exit', (code, signal) => this.onRunEnded(run, code, signal));
    this.log.info({ runId, pid: child.pid, input: redactUrls(this.opts.input) }, 'recorder started ffmpeg');
    this.emit('run-start', { runId, pid: child.pid } satisfies RunStarted);
  }

  private onStderr(run: Run, raw: string): void {
    const line = parseFfmpegLogLine(raw);
    if (!run.describer.done) {
      const input = run.describer.push(line);
      if (input) {
        // the input sent enough to be probed: it is not stalled
        run.lastProgressAt = Math.max(run.lastProgressAt, this.clock.now());
        this.onInputDescribed(run, input);
      }
    }
    if (segmentOpened(line)) run.lastProgressAt = this.clock.now();
    if (line.level === 'error' && /timed out$/i.test(line.text)) run.inputTimedOut = true;
    if (!isProblem(line)) {
      this.log.trace({ runId: run.id, ffmpeg: redactUrls(line.text) }, 'ffmpeg');
      return;
    }
    const { ok, suppressed } = this.ffmpegLogBudget.take();
    if (suppressed > 0) this.log.warn({ runId: run.id, suppressed }, `${suppressed} more ffmpeg lines suppressed`);
    if (!ok) return;
    const entry = { runId: run.id, ffmpeg: redactUrls(line.context ? `[${line.context}] ${line.text}` : line.text) };
    if (line.level === 'error' || line.level === 'fatal' || line.level === 'panic') this.log.error(entry, 'ffmpeg');
    else this.log.warn(entry, 'ffmpeg');
  }

  /** What the camera sends: the plan for it, logged when it changes, and a relaunch when the run's argv does not fit. */
  private onInputDescribed(run: Run, input: InputDescription): void {
    this.knownInput = input;
    const plan = planRecording(input, this.audioMode, this.plan);
    this.plan = plan;
    const relaunch = !sameArgs(plan, run.plan) && !run.ended && !run.endReason && !this.stopping;
    const d = describePlan(input, plan, this.audioMode);
    if (d.message !== this.lastPlanMessage) {
      this.lastPlanMessage = d.message;
      this.log[d.level]({ runId: run.id, format: input.format }, d.message);
    }
    this.emit('input', { runId: run.id, input, plan, relaunch } satisfies InputDescribed);
    // a run that already died of the wrong argv (G.711 copied into MP4 fails) is relaunched at once too
    if (run.ended && !run.endReason && !sameArgs(plan, run.plan)) run.endReason = 'replan';
    if (relaunch) {
      run.endReason = 'replan';
      this.log.info({ runId: run.id }, "ffmpeg's argv does not fit what the camera sends; launching it again with one that does");
      // nothing of this run is kept: SIGKILL now, before it writes more
      run.child.kill('SIGKILL');
    }
  }

  private onRunEnded(run: Run, code: number | null, signal: NodeJS.Signals | null): void {
    if (run.ended) return;
    run.ended = true;
    if (run.killTimer) clearTimeout(run.killTimer);
    if (!run.describer.done) {
      const input = run.describer.finish();
      if (input) this.onInputDescribed(run, input);
    }
    // the last segment ffmpeg closed on its way out is in the list by now
    this.enqueue(() => this.finishRun(run));
    let restartInMs: number | null = null;
    if (!this.stopping) {
      restartInMs = this.nextDelay(run);
      // stalls are logged by the stall handlers (1st, 2nd, 4th … in a row); replans by onInputDescribed
      const stalled = run.endReason === 'stall' || run.inputTimedOut;
      const level = run.endReason === 'replan' || (stalled && this.stallStreak > 1) ? 'debug' : run.endReason || stalled ? 'info' : 'warn';
      this.log[level]({ runId: run.id, code, signal, endReason: run.endReason ?? null, restartInMs }, 'ffmpeg exited; restarting');
      this.restartTimer = setTimeout(() => this.launch(), restartInMs);
    } else {
      this.log.info({ runId: run.id, code, signal }, 'recorder ffmpeg stopped');
    }
    this.emit('run-exit', {
      runId: run.id,
      code,
      signal,
      segments: run.segments,
      endReason: run.endReason ?? null,
      restartInMs,
    } satisfies RunExited);
    run.markEnded();
  }

  /**
   * The backoff is for crash loops: a run that ended on its own, quickly,
   * without a segment. A stalled input (caught by the watchdog, or by
   * ffmpeg's read timeout) waited its timeout already, so it is no hot loop,
   * and is started again at once: the new ffmpeg, connected and waiting, is
   * what notices the camera coming back (a backoff grown to 30 s would miss
   * that by as much). A stream change restarts after minDelayMs.
   */
  private nextDelay(run: Run): number {
    const now = this.clock.now();
    if (run.endReason === 'replan') {
      this.replanStreak += 1;
      if (this.replanStreak <= MAX_REPLAN_STREAK) return 0;
    }
    if (run.endReason === 'stall' || run.endReason === 'stream-change') {
      this.failures = 0;
      return run.endReason === 'stall' ? 0 : this.restartPolicy.minDelayMs;
    }
    const silentMs = now - run.lastProgressAt;
    const network = /^(tcp|http|https):\/\//i.test(this.opts.input);
    if (!run.endReason && (run.inputTimedOut || (network && silentMs >= this.inputTimeoutUs / 1000 - 1000))) {
      this.stallStreak += 1;
      this.log[isPowerOfTwo(this.stallStreak) ? 'warn' : 'debug'](
        { runId: run.id, silentMs, consecutive: this.stallStreak },
        "the camera sent nothing until ffmpeg's read timeout ended it (a stall): restarting it",
      );
      this.emit('stall', { runId: run.id, silentMs, detectedBy: 'input-timeout', consecutive: this.stallStreak } satisfies RecorderStall);
      this.failures = 0;
      return 0;
    }
    const healthy = run.segments > 0 || now - run.startedAt >= this.restartPolicy.healthyRunMs;
    if (healthy) this.failures = 0;
    const delay = restartDelayMs(this.restartPolicy, this.failures);
    this.failures += 1;
    return delay;
  }

  /**
   * SIGINT lets ffmpeg close and list the segment it writes, when its main
   * loop gets to see the flag the signal sets; SIGKILL follows if it has not
   * exited after the grace. An ffmpeg blocked reading a silent input does not
   * see it (its I/O interrupt callback fires from the second signal on,
   * fftools/ffmpeg.c decode_interrupt_cb, and the bundled build dies of a
   * second SIGINT without closing anything): that case is left to
   * -rw_timeout, which ends it cleanly (see inputTimeoutUs).
   */
  private terminate(run: Run): void {
    run.child.kill('SIGINT');
    const graceMs = this.opts.killGraceMs ?? 2000;
    run.killTimer = setTimeout(() => {
      if (run.ended) return;
      this.log.warn({ runId: run.id, graceMs }, 'ffmpeg did not stop on SIGINT; killing it');
      run.child.kill('SIGKILL');
    }, graceMs);
  }

  private queuePoll(): void {
    const run = this.current;
    if (!run || run.ended || this.pollQueued) return;
    this.pollQueued = true;
    this.enqueue(async () => {
      this.pollQueued = false;
      await this.tick(run);
    });
  }

  private enqueue(fn: () => Promise<void>): void {
    this.tail = this.tail.then(fn).catch((err: unknown) => {
      this.log.error({ err }, 'recorder: handling segments failed');
    });
  }

  /** One poll: new list entries, then the segment being written: growth for the watchdog, fragments for the stream check. */
  private async tick(run: Run): Promise<void> {
    await this.drain(run);
    if (run.ended || run.endReason || this.stopping) return;
    const now = this.clock.now();
    const path = join(this.opts.dir, segmentName(run.id, run.listed));
    const size = await fileSize(path);
    if (path !== run.currentPath || size !== run.currentSize) {
      run.currentPath = path;
      run.currentSize = size;
      if (size >= 0) run.lastProgressAt = Math.max(run.lastProgressAt, now);
    }
    if (size > 0 && this.changeChecks) {
      if (run.inspector?.path !== path) run.inspector = new SegmentInspector(path);
      try {
        const state = await run.inspector.update();
        if (state.change && !run.ended) {
          this.onStreamChange(run, path, state.change);
          return;
        }
      } catch (err) {
        // the close-time check decides about a file that is not what we expect
        this.log.debug({ runId: run.id, segment: basename(path), err }, 'could not read the segment being written');
      }
    }
    const silentMs = now - run.lastProgressAt;
    if (silentMs > this.stallTimeoutMs && !run.ended) this.onStall(run, silentMs);
  }

  private onStall(run: Run, silentMs: number): void {
    run.endReason = 'stall';
    this.stallStreak += 1;
    const event: RecorderStall = { runId: run.id, silentMs, detectedBy: 'watchdog', consecutive: this.stallStreak };
    // a camera frozen for hours would restart ffmpeg every few seconds: 1st, 2nd, 4th, 8th … stall in a row are logged
    const level = isPowerOfTwo(this.stallStreak) ? 'warn' : 'debug';
    this.log[level](
      { runId: run.id, silentMs, consecutive: this.stallStreak },
      'no recording progress (no new segment, the current one not growing): the camera stalled; restarting ffmpeg',
    );
    this.emit('stall', event);
    this.terminate(run);
  }

  private onStreamChange(run: Run, path: string, change: StreamChangeFound): void {
    run.endReason = 'stream-change';
    run.changeReported = path;
    this.changeStreak += 1;
    this.log.warn(
      { runId: run.id, segment: basename(path), reason: change.reason, fragmentsBefore: change.fragmentIndex },
      "the camera's stream changed mid-segment: restarting ffmpeg so that a new segment starts, and cutting this one before the change",
    );
    this.emit('stream-change', { runId: run.id, segment: path, reason: change.reason } satisfies StreamChanged);
    this.terminate(run);
  }

  private async drain(run: Run): Promise<void> {
    const entries = await run.reader.readNew();
    for (const entry of entries) await this.closeSegment(run, entry);
  }

  /** After the run's exit: the last list entries, then the segment it left open, if any. */
  private async finishRun(run: Run): Promise<void> {
    await this.drain(run);
    const open = join(this.opts.dir, segmentName(run.id, run.listed));
    if (run.endReason === 'replan' && run.segments === 0) {
      // an argv that did not fit the input: its few files are not footage anyone keeps
      for (const p of [open, segmentListPath(this.opts.dir, run.id)]) await unlink(p).catch(() => undefined);
      return;
    }
    await this.salvageOpenSegment(run, open);
  }

  private async closeSegment(run: Run, entry: SegmentListEntry): Promise<void> {
    // the list is written by ffmpeg, but a name is still never allowed to leave the folder
    const name = basename(entry.filename);
    const path = join(this.opts.dir, name);
    run.listed += 1;
    run.lastListedEndSec = entry.endSec;
    run.lastProgressAt = Math.max(run.lastProgressAt, this.clock.now());
    try {
      await fsyncPath(path);
    } catch (err) {
      this.log.error({ runId: run.id, segment: name, err }, 'a listed segment could not be fsynced; skipped');
      return;
    }
    // a new directory entry is only durable once the folder is synced too
    await fsyncPath(this.opts.dir).catch(() => undefined);
    const seenAt = this.clock.now();
    const listedMs = Math.max(0, Math.round((entry.endSec - entry.startSec) * 1000));
    await this.report(run, path, 'list', (durationMs) => ({
      startMs: run.clock.place(entry.startSec, entry.endSec, seenAt),
      durationMs: durationMs ?? listedMs,
      endedAt: seenAt,
    }));
  }

  /** ffmpeg died (SIGKILL, a crash) with a segment open: keep its complete fragments, or drop it. */
  private async salvageOpenSegment(run: Run, path: string): Promise<void> {
    let result;
    try {
      result = await salvageSegment(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.error({ runId: run.id, segment: basename(path), err }, 'could not salvage a segment');
      return;
    }
    if (result.status === 'empty' || result.status === 'unreadable') {
      await this.drop(run, path, `nothing playable in the segment ffmpeg left open (${result.reason ?? result.status})`);
      return;
    }
    this.log.info({ runId: run.id, segment: basename(path), status: result.status, fragments: result.fragmentsKept, cutBytes: result.originalBytes - result.keptBytes }, 'salvaged the segment ffmpeg left open');
    await fsyncPath(this.opts.dir).catch(() => undefined);
    const seenAt = this.clock.now();
    const mtimeMs = await stat(path).then((s) => s.mtimeMs, () => seenAt);
    await this.report(
      run,
      path,
      'salvage',
      (durationMs) => {
        const d = durationMs ?? 0;
        // It follows the run's last listed segment, when the run's clock is anchored;
        // else its last write (mtime) ends it, and it cannot start before the launch.
        const anchor = run.clock.anchorMs;
        const startMs = anchor !== undefined ? Math.round(anchor + run.lastListedEndSec * 1000) : Math.max(run.startedAt, Math.round(mtimeMs) - d);
        return { startMs: Math.min(startMs, seenAt - d), durationMs: d, endedAt: seenAt };
      },
      result.originalBytes - result.keptBytes,
    );
  }

  /**
   * The checks of a closed file: a stream change cuts it, no video is an
   * error; then onSegment. `timing` gets the duration of the fragments kept
   * when they decide it (a cut, a salvage), else undefined.
   */
  private async report(
    run: Run,
    path: string,
    closedBy: SegmentClosed['closedBy'],
    timing: (fragmentsMs: number | undefined) => { startMs: number; durationMs: number; endedAt: number },
    cutBytes = 0,
  ): Promise<void> {
    const name = basename(path);
    let state;
    try {
      // the poll's inspector has read most of the file already: it reads only the rest
      state = run.inspector?.path === path ? await run.inspector.update() : await inspectSegment(path);
    } catch (err) {
      if (!(err instanceof Mp4FormatError)) throw err;
      await this.drop(run, path, `not a readable MP4: ${err.message}`);
      return;
    }
    let fragmentsMs = closedBy === 'salvage' ? state.durationMs : undefined;
    if (state.change && this.changeChecks) {
      if (run.changeReported !== path) {
        // closed before a poll saw it: ffmpeg went on in a new segment on its own
        this.changeStreak += 1;
        this.log.warn({ runId: run.id, segment: name, reason: state.change.reason }, "the camera's stream changed mid-segment: cutting the segment before the change");
        this.emit('stream-change', { runId: run.id, segment: path, reason: state.change.reason } satisfies StreamChanged);
      }
      if (state.fragments === 0) {
        await this.drop(run, path, `nothing before the stream change (${state.change.reason})`);
        this.checkChangeStreak();
        return;
      }
      const size = await fileSize(path);
      cutBytes += Math.max(0, size - state.change.at);
      await truncateSegment(path, state.change.at);
      fragmentsMs = state.durationMs;
      this.checkChangeStreak();
    } else if (state.change === undefined) {
      this.changeStreak = 0;
    }
    run.segments += 1;
    // the segment a stalled run closed on its way out is no sign of recovery
    if (!run.endReason && !run.inputTimedOut) this.stallStreak = 0;
    this.replanStreak = 0;
    const tracks = (state.tracks ?? []).map((t) => t.codec);
    const hasVideo = state.video !== undefined;
    if (!hasVideo) {
      this.log.error({ runId: run.id, segment: name, tracks }, 'a segment holds no video track: the camera sent no video, or ffmpeg lost it');
    }
    const t = timing(fragmentsMs);
    const segment: SegmentClosed = { path, runId: run.id, ...t, tracks, hasVideo, closedBy, cutBytes };
    this.emit('segment', segment);
    if (this.opts.onSegment) {
      try {
        await this.opts.onSegment(segment);
      } catch (err) {
        this.log.error({ runId: run.id, segment: name, err }, 'segment handler failed');
      }
    }
  }

  private checkChangeStreak(): void {
    if (this.changeStreak < MAX_CHANGE_STREAK || !this.changeChecks) return;
    this.changeChecks = false;
    this.log.error(
      { changes: this.changeStreak },
      "the camera's stream changed in every segment lately (parameter sets that vary?): segments are no longer cut or restarted for it",
    );
  }

  /** Reported first ('segment-dropped', which the agent counts durably), deleted after. */
  private async drop(run: Run, path: string, reason: string): Promise<void> {
    this.log.warn({ runId: run.id, segment: basename(path), reason }, 'a segment was dropped');
    this.emit('segment-dropped', { runId: run.id, path, reason } satisfies SegmentDropped);
    await unlink(path).catch(() => undefined);
  }
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return -1;
  }
}
