import { EventEmitter } from 'node:events';
import { accessSync, constants as fsConstants, existsSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { systemClock, type Clock } from '../shared/clock.js';
import type { ClipKind } from '../shared/contracts/common.js';
import { CamvaultError } from '../shared/errors.js';
import { newClipId } from '../shared/ids.js';
import { createLogger, type Logger } from '../shared/log.js';
import { CloudClient, CloudError } from './cloud-client.js';
import type { AgentConfig } from './config.js';
import { MotionEvents } from './events.js';
import { Journal, JOURNAL_FILE, type ClipCounts, type DeviceCredentials } from './journal/journal.js';
import {
  Recorder,
  type RecorderOptions,
  type RecorderStall,
  type RunExited,
  type RunStarted,
  type SegmentClosed,
  type SegmentDropped,
  type StreamChanged,
} from './recorder/recorder.js';
import { reconcileSegments, type FoundSegment, type ReconcileReport } from './recorder/reconcile.js';
import { killStrayRecorders } from './recorder/stray-recorders.js';
import type { RetryPolicy } from './uploader/retry-policy.js';
import { StorageKeeper, type EvictionReport } from './storage/keeper.js';
import { hashClip, type ClipDigest } from './uploader/multipart.js';
import { Uploader, type ClipUploaded, type UploadFailed } from './uploader/uploader.js';

export interface AgentStartOptions {
  config: AgentConfig;
  logger?: Logger;
  clock?: Clock;
  /** tests shorten the uploader's delays */
  retryPolicy?: Partial<RetryPolicy>;
  /** tests shorten the recorder's restart backoff */
  recorderRestart?: { minDelayMs?: number; maxDelayMs?: number; healthyRunMs?: number };
  /** tests shorten the recorder's watchdog and polling */
  recorder?: Pick<RecorderOptions, 'stallTimeoutMs' | 'killGraceMs' | 'inputTimeoutUs' | 'pollMs'>;
}

export interface ClipQueued {
  clipId: string;
  serial: string;
  kind: ClipKind;
  path: string;
  startMs: number;
  durationMs: number;
  size: number;
}

export interface AgentStatus {
  serial: string | null;
  claimed: boolean;
  /** clips waiting to be uploaded (queued or uploading) */
  queueDepth: number;
  oldestUnuploadedClipId: string | null;
  /** how long ago the oldest clip still waiting started */
  oldestUnuploadedAgeMs: number | null;
  counts: ClipCounts;
  /** what the recorder met in the field (journal agent_stats, so they survive restarts) */
  recording: RecordingStats;
}

export interface RecordingStats {
  /** stalled inputs caught (watchdog or ffmpeg's read timeout) */
  stalls: number;
  /** changes of picture size or codec mid-segment */
  streamChanges: number;
  /** segments with nothing playable, deleted */
  droppedSegments: number;
  /** segments journaled without a video track (an error) */
  segmentsWithoutVideo: number;
}

/** agent_stats keys the recording side writes (dropped_segments is shared with `agent status`). */
export const RECORDING_STATS = {
  stalls: 'recorder_stalls',
  streamChanges: 'stream_changes',
  droppedSegments: 'dropped_segments',
  segmentsWithoutVideo: 'segments_without_video',
} as const satisfies Record<keyof RecordingStats, string>;

/** A claim refusal that a retry cannot fix. */
const PERMANENT_CLAIM_CODES = new Set(['BIND_CODE_INVALID', 'DEVICE_BOUND_ELSEWHERE', 'VALIDATION_FAILED', 'BAD_REQUEST']);

function statusFrom(journal: Journal, clock: Clock): AgentStatus {
  const counts = journal.countsByState();
  const oldest = journal.oldestUnuploaded();
  const creds = journal.getCredentials();
  const stats = journal.stats();
  const n = (key: string): number => stats[key]?.n ?? 0;
  return {
    serial: creds?.serial ?? null,
    claimed: creds !== undefined,
    queueDepth: counts.queued + counts.uploading,
    oldestUnuploadedClipId: oldest?.id ?? null,
    oldestUnuploadedAgeMs: oldest ? Math.max(0, clock.now() - oldest.startMs) : null,
    counts,
    recording: {
      stalls: n(RECORDING_STATS.stalls),
      streamChanges: n(RECORDING_STATS.streamChanges),
      droppedSegments: n(RECORDING_STATS.droppedSegments),
      segmentsWithoutVideo: n(RECORDING_STATS.segmentsWithoutVideo),
    },
  };
}

/**
 * The queue as `agent status` shows it. Opens the journal read-only, so it is
 * safe while the agent runs.
 */
export function agentStatus(dataDir: string, opts: { clock?: Clock } = {}): AgentStatus {
  if (!existsSync(join(dataDir, JOURNAL_FILE))) {
    throw new Error(`no agent journal in ${dataDir} (has the agent run with this data directory?)`);
  }
  const journal = Journal.open(dataDir, { readonly: true });
  try {
    return statusFrom(journal, opts.clock ?? systemClock);
  } finally {
    journal.close();
  }
}

/**
 * The on-device daemon: records segments, journals each closed one as a clip,
 * and uploads the queue.
 *
 * Events: 'segment' (SegmentClosed), 'clip-queued' (ClipQueued),
 * 'clip-uploaded' (ClipUploaded), 'upload-failed' (UploadFailed),
 * 'recorder-start' (RunStarted), 'recorder-exit' (RunExited), 'claimed' ({ serial }),
 * 'recorder-stall' (RecorderStall), 'stream-change' (StreamChanged),
 * 'segment-dropped' (SegmentDropped). What start-up reconciliation did: startupReport.
 */
export class Agent extends EventEmitter {
  readonly config: AgentConfig;
  readonly serial: string;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly journal: Journal;
  private readonly client: CloudClient;
  private readonly events: MotionEvents;
  private readonly recorder: Recorder;
  private readonly retryPolicy: Partial<RetryPolicy> | undefined;
  private readonly segmentsDir: string;
  private uploader: Uploader | undefined;
  private readonly keeper: StorageKeeper;
  private readonly stopSignal = new AbortController();
  private claimLoop: Promise<void> | undefined;
  private stopPromise: Promise<void> | undefined;
  private reconciled: ReconcileReport | undefined;

  private constructor(opts: AgentStartOptions, journal: Journal, log: Logger, clock: Clock) {
    super();
    const { config } = opts;
    this.config = config;
    this.serial = config.serial;
    this.log = log;
    this.clock = clock;
    this.journal = journal;
    this.retryPolicy = opts.retryPolicy;
    this.client = new CloudClient({
      baseUrl: config.cloudUrl,
      caFile: config.caFile,
      clock,
      uploadBytesPerSec: config.uploadBytesPerSec,
      uploadBurstBytes: config.uploadBurstBytes,
    });
    this.segmentsDir = join(config.dataDir, 'segments', config.channel);
    this.keeper = new StorageKeeper({ journal, dir: this.segmentsDir, storage: config.storage, logger: log, clock, uploads: () => this.uploader });
    this.keeper.on('evicted', (e: EvictionReport) => this.emit('evicted', e));
    this.events = new MotionEvents({ url: config.eventsUrl, serial: config.serial, logger: log, clock });
    this.recorder = new Recorder({
      ffmpegPath: config.ffmpegPath,
      input: config.input,
      dir: this.segmentsDir,
      segmentSeconds: config.segmentSeconds,
      audio: config.audio,
      logger: log,
      clock,
      restart: opts.recorderRestart,
      ...opts.recorder,
      onSegment: (s) => this.journalSegment(s),
    });
    this.recorder.on('segment', (s: SegmentClosed) => this.emit('segment', s));
    this.recorder.on('run-start', (r: RunStarted) => this.emit('recorder-start', r));
    this.recorder.on('run-exit', (r: RunExited) => this.emit('recorder-exit', r));
    // counted durably as they happen (the recorder logs them); a dropped file is counted before it is deleted
    this.recorder.on('stall', (e: RecorderStall) => {
      this.count(RECORDING_STATS.stalls);
      this.emit('recorder-stall', e);
    });
    this.recorder.on('stream-change', (e: StreamChanged) => {
      this.count(RECORDING_STATS.streamChanges);
      this.emit('stream-change', e);
    });
    this.recorder.on('segment-dropped', (e: SegmentDropped) => {
      this.count(RECORDING_STATS.droppedSegments);
      this.emit('segment-dropped', e);
    });
  }

  /**
   * Opens the journal, claims the device if it has no token yet, and starts
   * the event feed, the recorder and the uploader. Rejects with one clear
   * error when the device cannot work at all (no token and no bind code, a
   * refused bind code, an ffmpeg that is not there).
   */
  static async start(opts: AgentStartOptions): Promise<Agent> {
    const { config } = opts;
    const clock = opts.clock ?? systemClock;
    const log = (opts.logger ?? createLogger({ name: 'agent', level: config.logLevel })).child({ serial: config.serial });
    try {
      accessSync(config.ffmpegPath, fsConstants.X_OK);
    } catch {
      throw new Error(`ffmpeg not found or not executable at ${config.ffmpegPath} (set ffmpegPath or FFMPEG_PATH)`);
    }
    const journal = Journal.open(config.dataDir, { clock });
    if (journal.recovered > 0) log.info({ clips: journal.recovered }, 'clips interrupted mid-upload are queued again');
    let agent: Agent;
    try {
      agent = new Agent(opts, journal, log, clock);
      // before the uploader exists: a row whose file is gone is marked lost before anything tries to send it
      await agent.reconcile();
      await agent.ensureClaimed();
    } catch (err) {
      journal.close();
      throw err;
    }
    agent.events.start();
    await agent.keeper.start();
    agent.recorder.start();
    return agent;
  }

  /** Idempotent: a second call joins the first. */
  stop(): Promise<void> {
    this.stopPromise ??= this.doStop();
    return this.stopPromise;
  }

  status(): AgentStatus {
    return statusFrom(this.journal, this.clock);
  }

  /** The recorder's ffmpeg, for tests and diagnostics. */
  get recorderPid(): number | undefined {
    return this.recorder.pid;
  }

  /** What start-up reconciliation found and did, for tests and diagnostics. */
  get startupReport(): ReconcileReport | undefined {
    return this.reconciled;
  }

  private async doStop(): Promise<void> {
    this.stopSignal.abort();
    // first the recorder: ffmpeg closes its segment, which gets journaled
    await this.recorder.stop();
    this.events.stop();
    await this.uploader?.stop({ graceMs: 3000 });
    await this.keeper.stop();
    await this.claimLoop;
    this.journal.close();
    this.log.info('agent stopped');
  }

  private async ensureClaimed(): Promise<void> {
    const creds = this.journal.getCredentials();
    if (creds) {
      if (creds.serial !== this.serial) {
        throw new Error(`the data directory ${this.config.dataDir} belongs to device ${creds.serial}, not ${this.serial}`);
      }
      this.useCredentials(creds);
      return;
    }
    if (!this.config.bindCode) {
      throw new CamvaultError(
        'DEVICE_NOT_CLAIMED',
        'the device is not claimed yet: set bindCode (CAMVAULT_AGENT_BIND_CODE) to a bind code from the owner account',
      );
    }
    try {
      await this.claimOnce();
    } catch (err) {
      if (err instanceof CloudError && PERMANENT_CLAIM_CODES.has(err.code)) {
        throw new CamvaultError(
          err.code === 'DEVICE_BOUND_ELSEWHERE' ? 'DEVICE_BOUND_ELSEWHERE' : 'BIND_CODE_INVALID',
          `the cloud refused to claim the device: ${err.code}`,
        );
      }
      // The network or the cloud is down: record anyway, keep the footage, claim later.
      this.log.warn({ code: err instanceof CloudError ? err.code : 'UNKNOWN' }, 'cannot claim the device yet; recording locally and retrying');
      this.claimLoop = this.claimInBackground();
    }
  }

  private async claimOnce(): Promise<void> {
    const res = await this.client.claim(
      { serial: this.serial, model: this.config.model, bindCode: this.config.bindCode as string },
      { signal: this.stopSignal.signal },
    );
    if (res.serial !== this.serial) throw new CloudError(200, 'BAD_RESPONSE', 'claim answered for another serial');
    const creds: DeviceCredentials = {
      serial: res.serial,
      deviceToken: res.deviceToken,
      mqtt: res.mqtt,
      claimedAt: this.clock.now(),
    };
    // durable before it is used: a token the cloud issued but the device forgot would need a new bind code
    this.journal.setCredentials(creds);
    this.log.info('device claimed');
    this.useCredentials(creds);
    this.emit('claimed', { serial: this.serial });
  }

  private async claimInBackground(): Promise<void> {
    const signal = this.stopSignal.signal;
    for (let attempt = 1; !signal.aborted; attempt += 1) {
      const delay = Math.min(300_000, 5000 * 2 ** Math.min(attempt - 1, 6));
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, delay);
        function done(): void {
          clearTimeout(t);
          signal.removeEventListener('abort', done);
          resolve();
        }
        signal.addEventListener('abort', done, { once: true });
      });
      if (signal.aborted) return;
      try {
        await this.claimOnce();
        return;
      } catch (err) {
        const code = err instanceof CloudError ? err.code : 'UNKNOWN';
        if (PERMANENT_CLAIM_CODES.has(code)) {
          this.log.error({ code }, 'the cloud refused to claim the device; recording locally only until it is bound again');
          return;
        }
        this.log.debug({ code, attempt }, 'claim failed; retrying');
      }
    }
  }

  private useCredentials(creds: DeviceCredentials): void {
    this.client.setDeviceCredentials(creds.serial, creds.deviceToken);
    if (this.uploader || this.stopSignal.signal.aborted) return;
    const uploader = new Uploader({
      journal: this.journal,
      api: this.client,
      serial: this.serial,
      logger: this.log,
      clock: this.clock,
      concurrency: this.config.uploadConcurrency,
      multipartPartBytes: this.config.multipartPartBytes,
      policy: this.retryPolicy,
    });
    uploader.on('clip-uploaded', (e: ClipUploaded) => {
      this.log.info({ clipId: e.clipId, kind: e.kind, size: e.size, uploadMs: e.uploadMs }, 'clip uploaded');
      this.emit('clip-uploaded', e);
    });
    uploader.on('upload-failed', (e: UploadFailed) => this.emit('upload-failed', e));
    this.uploader = uploader;
    uploader.start();
  }

  private count(key: string): void {
    if (this.journal.isOpen) this.journal.addStats({ [key]: 1 });
  }

  /**
   * A closed (or salvaged), fsynced segment: hashed once, journaled as
   * queued, then the uploader is woken. One without video is an error the
   * recorder logged; it is counted, and uploaded all the same (what the
   * camera sent is the footage there is).
   */
  private async journalSegment(s: SegmentClosed | FoundSegment): Promise<void> {
    // a full disk must not stop recording: make room and try again
    const digest = await this.keeper.withSpace('hashing a segment', () => hashClip(s.path, this.config.multipartPartBytes));
    if (digest.size === 0 || s.durationMs <= 0) {
      this.log.warn({ segment: basename(s.path), size: digest.size, durationMs: s.durationMs }, 'an empty segment was dropped');
      this.count(RECORDING_STATS.droppedSegments);
      await unlink(s.path).catch(() => undefined);
      return;
    }
    if (!s.hasVideo) this.count(RECORDING_STATS.segmentsWithoutVideo);
    const kind = this.events.classify(s.startMs, s.startMs + s.durationMs);
    await this.keeper.withSpace('journaling a clip', () => this.journalClip(s.path, s.startMs, s.durationMs, digest, kind));
    this.keeper.segmentClosed();
  }

  private journalClip(path: string, startMs: number, durationMs: number, digest: ClipDigest, kind: ClipKind): void {
    const clip = this.journal.addClip({
      id: newClipId(startMs),
      channel: this.config.channel,
      path,
      startMs,
      durationMs,
      size: digest.size,
      md5: digest.md5,
      sha256: digest.sha256,
      kind,
      parts: digest.parts,
    });
    const event: ClipQueued = { clipId: clip.id, serial: this.serial, kind, path, startMs, durationMs, size: digest.size };
    this.log.debug({ clipId: clip.id, kind, size: digest.size, durationMs }, 'clip queued');
    this.emit('clip-queued', event);
    this.uploader?.wake();
  }

  /**
   * Start-up, before the recorder runs: an ffmpeg an earlier agent process
   * left writing the folder is stopped, then the folder is reconciled with
   * the journal (recorder/reconcile.ts).
   */
  private async reconcile(): Promise<ReconcileReport> {
    const strays = await killStrayRecorders(this.segmentsDir);
    if (strays.length > 0) this.log.warn({ pids: strays }, 'stopped recorder ffmpegs an earlier agent process left running');
    const report = await reconcileSegments({
      dir: this.segmentsDir,
      journal: this.journal,
      logger: this.log,
      journalSegment: (s) => this.journalSegment(s),
    });
    this.reconciled = report;
    return report;
  }
}
