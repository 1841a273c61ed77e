import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { accessSync, constants as fsConstants, existsSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { systemClock, type Clock } from '../shared/clock.js';
import type { ClipKind } from '../shared/contracts/common.js';
import type { DeviceCommand, UploadMode } from '../shared/contracts/alerts.js';
import { CamvaultError } from '../shared/errors.js';
import { newClipId } from '../shared/ids.js';
import { createLogger, type Logger } from '../shared/log.js';
import { CloudClient, CloudError, type CallOptions } from './cloud-client.js';
import type { PresignRequest, PresignResponse } from '../shared/contracts/uploads.js';
import { CLOCK_STAT, FFMPEG_CRASHES_STAT, type ClockStatus } from './status.js';
import type { AgentConfig } from './config.js';
import { MotionEvents } from './events.js';
import { EmailAlerts, type EmailAlertResult } from './email/alerts.js';
import { eraseEmailSettings } from './email/store.js';
import { ALERT_STATS, Journal, JOURNAL_FILE, MQTT_STATUS_STAT, type ClipCounts, type DeviceCredentials } from './journal/journal.js';
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
import { AlertOutbox, type AlertSent } from './mqtt/alert-outbox.js';
import type { MqttStatus } from './mqtt/connection.js';
import { DeviceLink, type DeviceLinkOptions } from './mqtt/device-link.js';
import { DEFAULT_RETRY_POLICY, type RetryPolicy } from './uploader/retry-policy.js';
import { StorageKeeper, type EvictionReport } from './storage/keeper.js';
import { hashClip, type ClipDigest } from './uploader/multipart.js';
import { Uploader, type ClipUploaded, type UploadApi, type UploadFailed } from './uploader/uploader.js';

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
  /** tests shorten the MQTT side's waits (reconnect backoff, keepalive, the wait for GET /v1/device/config) */
  mqtt?: DeviceLinkOptions['mqtt'] & { configRetryMs?: number };
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
  /** the MQTT side (issue 7): the broker connection as last journaled, the alert outbox, the owner's commands */
  mqtt: MqttStatus | null;
  alerts: { waiting: number; dropped: number; sent: number };
  uploadMode: UploadMode;
  /** when the owner unbound the camera (nothing is uploaded until a new bind code claims it), or null */
  unboundAt: number | null;
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
  /** ffmpeg killed by a signal the recorder did not send (a crash, the OOM killer), restarted each time */
  ffmpegCrashes: number;
}

/** agent_stats keys the recording side writes (dropped_segments is shared with `agent status`). */
export const RECORDING_STATS = {
  stalls: 'recorder_stalls',
  streamChanges: 'stream_changes',
  droppedSegments: 'dropped_segments',
  segmentsWithoutVideo: 'segments_without_video',
  ffmpegCrashes: FFMPEG_CRASHES_STAT,
} as const satisfies Record<keyof RecordingStats, string>;

/** The bind code as the unbind record keeps it: a hash, never the code. */
function bindCodeSha256(code: string): string {
  return createHash('sha256').update(code).digest('hex');
}

const DAY_MS = 86_400_000;
/** the cloud takes a clip start up to this far ahead of its own time */
const CLIP_AHEAD_SLACK_MS = 5 * 60_000;

/**
 * A start the device's own clock calls fresh: not ahead of it (a minute's
 * slack), and under 6 days old, well inside the cloud's 7 days. A refusal of
 * such a start proves the device clock wrong; a refusal of an older one may
 * just mean the clip waited too long.
 */
function freshByDeviceClock(startMs: number, nowMs: number): boolean {
  const age = nowMs - startMs;
  return age >= -60_000 && age <= 6 * DAY_MS;
}

/** The simulator's clock-skew fault (config clockSkewMs, development only). */
function skewedClock(base: Clock, skewMs: number): Clock {
  return skewMs === 0 ? base : { now: () => base.now() + skewMs };
}

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
      ffmpegCrashes: n(RECORDING_STATS.ffmpegCrashes),
    },
    mqtt: (stats[MQTT_STATUS_STAT]?.info as MqttStatus | undefined) ?? null,
    alerts: { waiting: journal.alertOutboxSize(), dropped: n(ALERT_STATS.dropped), sent: n(ALERT_STATS.sent) },
    uploadMode: journal.uploadMode(),
    unboundAt: journal.unboundRecord()?.at ?? null,
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
 * 'segment-dropped' (SegmentDropped), 'email-sent' / 'email-failed' (EmailAlertResult),
 * 'alert-queued' ({ seq, atMs, dropped }), 'alert-sent' (AlertSent), 'mqtt-status' (MqttStatus),
 * 'command' (DeviceCommand, once obeyed), 'unbound' ({ at, droppedClips }).
 * What start-up reconciliation did: startupReport.
 */
export class Agent extends EventEmitter {
  readonly config: AgentConfig;
  readonly serial: string;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly journal: Journal;
  private readonly client: CloudClient;
  private readonly events: MotionEvents;
  /** email alerts (issue 7): settings read from the journal at each motion */
  private readonly emailAlerts: EmailAlerts;
  private readonly recorder: Recorder;
  private readonly retryPolicy: Partial<RetryPolicy> | undefined;
  private readonly segmentsDir: string;
  private uploader: Uploader | undefined;
  private readonly keeper: StorageKeeper;
  /** the MQTT side (issue 7): alerts wait here (in the journal) for the broker */
  private readonly outbox: AlertOutbox;
  private link: DeviceLink | undefined;
  private readonly mqttOptions: AgentStartOptions['mqtt'];
  private uploadModeNow: UploadMode;
  /** the owner unbound the camera: nothing is uploaded, no alert is sent, until a new bind code claims it */
  private unbound = false;
  private readonly stopSignal = new AbortController();
  private claimLoop: Promise<void> | undefined;
  private stopPromise: Promise<void> | undefined;
  private reconciled: ReconcileReport | undefined;
  /** the device clock as the cloud sees it (issue 8): presigns wait until this time after a refusal that proves the clock wrong */
  private clockHoldUntil = 0;
  private clockState: ClockStatus | undefined;
  /** the loud line is logged once per spell of refusals in this process */
  private clockWarned = false;

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
    this.mqttOptions = opts.mqtt;
    this.clockState = (journal.stats()[CLOCK_STAT]?.info as ClockStatus | null | undefined) ?? undefined;
    this.uploadModeNow = journal.uploadMode();
    this.outbox = new AlertOutbox({
      journal,
      serial: config.serial,
      logger: log,
      clock,
      max: config.alertOutboxMax,
      clipWaitMs: config.alertClipWaitSec * 1000,
    });
    this.outbox.on('alert-sent', (e: AlertSent) => this.emit('alert-sent', e));
    this.outbox.on('alert-queued', (e: { seq: number; atMs: number; dropped: number }) => this.emit('alert-queued', e));
    // an alert is journaled before anything else is done with the motion; none for an owner who unbound the camera
    this.events.on('motion', (m: { at: number }) => {
      if (!this.unbound && this.journal.isOpen) this.outbox.motion(m.at);
    });
    this.on('clip-queued', (c: ClipQueued) => this.outbox.clipJournaled({ id: c.clipId, kind: c.kind, startMs: c.startMs, durationMs: c.durationMs }, this.events.marginMs));
    this.emailAlerts = new EmailAlerts({
      journal,
      dataDir: config.dataDir,
      serial: config.serial,
      channel: config.channel,
      ffmpegPath: config.ffmpegPath,
      caFile: config.caFile,
      logger: log,
      clock,
      // the event clip closes within a segment of the motion; past three, mail without a picture
      clipWaitMs: config.segmentSeconds * 3000 + 15_000,
    });
    this.events.on('motion', (m: { at: number }) => this.emailAlerts.motion(m.at));
    this.on('clip-queued', (c: ClipQueued) => this.emailAlerts.clipQueued(c));
    this.emailAlerts.onResult((r: EmailAlertResult) => this.emit(r.code === 'OK' ? 'email-sent' : 'email-failed', r));
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
    this.recorder.on('run-exit', (r: RunExited) => {
      // a signal the recorder did not send (it ends runs with SIGINT/SIGKILL only for a reason it records)
      if (r.signal !== null && r.endReason === null && r.restartInMs !== null) this.count(RECORDING_STATS.ffmpegCrashes);
      this.emit('recorder-exit', r);
    });
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
    const clock = skewedClock(opts.clock ?? systemClock, config.clockSkewMs);
    const log = (opts.logger ?? createLogger({ name: 'agent', level: config.logLevel })).child({ serial: config.serial });
    if (config.clockSkewMs !== 0) log.warn({ clockSkewMs: config.clockSkewMs }, 'development: this agent runs on a clock skewed on purpose (a simulator fault)');
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
    // the alert outbox stays in the journal; the broker publishes the last will ("offline")
    await this.link?.stop();
    await this.outbox.stop();
    await this.keeper.stop();
    await this.claimLoop;
    await this.emailAlerts.stop();
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
    const unbound = this.journal.unboundRecord();
    if (unbound && (!this.config.bindCode || bindCodeSha256(this.config.bindCode) === unbound.bindCodeSha256)) {
      // Unbound by the owner (issue 7): no claim with the spent code, no
      // uploads, no MQTT; recording goes on into the ring buffer. Dropping the
      // queue again is for a power cut between the unbind and its first drop.
      this.unbound = true;
      const dropped = this.journal.dropUploadQueue('UNBOUND');
      this.log.warn(
        { unboundAt: new Date(unbound.at).toISOString(), droppedClips: dropped },
        'the owner unbound this camera: recording goes on into the ring buffer, nothing is uploaded; a new bind code (bindCode) binds it again',
      );
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
    if (this.journal.unboundRecord()) {
      // bound again after an unbind: what was recorded before goes to nobody (journal.rebind)
      const dropped = this.journal.rebind(creds);
      this.unbound = false;
      this.log.info({ droppedClips: dropped }, 'device claimed again with a new bind code; footage recorded before is not uploaded');
    } else {
      this.journal.setCredentials(creds);
    }
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
      api: this.checkedUploadApi(),
      serial: this.serial,
      logger: this.log,
      clock: this.clock,
      concurrency: this.config.uploadConcurrency,
      multipartPartBytes: this.config.multipartPartBytes,
      policy: this.retryPolicy,
      uploadMode: () => this.uploadModeNow,
    });
    uploader.on('clip-uploaded', (e: ClipUploaded) => {
      this.log.info({ clipId: e.clipId, kind: e.kind, size: e.size, uploadMs: e.uploadMs }, 'clip uploaded');
      this.emit('clip-uploaded', e);
    });
    uploader.on('upload-failed', (e: UploadFailed) => {
      this.deferAheadStamped(e);
      this.emit('upload-failed', e);
    });
    this.uploader = uploader;
    uploader.start();
    this.startLink(creds);
  }

  // ---- the MQTT side (issue 7) ----------------------------------------------

  /** The broker connection as the running agent sees it (agent status reads the journaled copy). */
  get mqttStatus(): MqttStatus | null {
    return this.link?.status ?? null;
  }

  /** The MQTT side, for tests and diagnostics. */
  get mqttLink(): DeviceLink | undefined {
    return this.link;
  }

  private startLink(creds: DeviceCredentials): void {
    if (this.link || this.unbound || this.stopSignal.signal.aborted) return;
    const { configRetryMs, ...mqtt } = this.mqttOptions ?? {};
    const link = new DeviceLink({
      journal: this.journal,
      serial: this.serial,
      config: this.config,
      logger: this.log,
      clock: this.clock,
      outbox: this.outbox,
      fetchConfig: (signal) => this.client.deviceConfig({ signal }),
      handlers: {
        unbind: (cmd) => this.onUnbind(cmd),
        syncNow: () => this.onSyncNow(),
        setUploadMode: (cmd) => this.onUploadMode(cmd.mode),
      },
      mqtt,
      ...(configRetryMs !== undefined ? { configRetryMs } : {}),
    });
    link.on('status', (st: MqttStatus) => this.emit('mqtt-status', st));
    link.on('command', (cmd: DeviceCommand) => this.emit('command', cmd));
    this.link = link;
    link.start(creds);
  }

  /**
   * unbind: durable first (the device token and the MQTT credential are
   * wiped and the unbind recorded in one transaction), then uploads stop and
   * the queue is dropped (footage recorded for this owner goes to nobody
   * else), then, after the command's PUBACK, the MQTT connection ends.
   * Recording goes on into the ring buffer; a restart without a new bind code
   * stays unbound (ensureClaimed).
   */
  private async onUnbind(cmd: Extract<DeviceCommand, { type: 'unbind' }>): Promise<void> {
    if (this.unbound || !this.journal.isOpen) return;
    this.unbound = true;
    const at = this.clock.now();
    this.journal.markUnbound({
      at,
      commandId: cmd.id,
      bindCodeSha256: this.config.bindCode ? bindCodeSha256(this.config.bindCode) : null,
    });
    this.client.clearDeviceCredentials();
    const uploader = this.uploader;
    this.uploader = undefined;
    await uploader?.stop({ graceMs: 0 });
    const dropped = this.journal.isOpen ? this.journal.dropUploadQueue('UNBOUND') : 0;
    // the owner's SMTP settings go with the owner (P4): a camera sold on must
    // not mail the former owner's recipients through the former owner's relay
    let emailErased = false;
    try {
      if (this.journal.isOpen) emailErased = eraseEmailSettings(this.journal, this.config.dataDir).erased;
    } catch (err) {
      this.log.error({ code: (err as { code?: string }).code }, 'unbind: could not erase the email alert settings');
    }
    this.log.warn(
      { droppedClips: dropped, emailSettingsErased: emailErased },
      'the owner unbound this camera: its credentials are wiped and uploads stopped; recording goes on into the ring buffer until a new bind code binds it',
    );
    this.emit('unbound', { at, droppedClips: dropped });
    // after this handler returns its PUBACK goes out; then the connection ends
    setImmediate(() => void this.link?.stop('UNBOUND'));
  }

  private onSyncNow(): void {
    if (!this.uploader) {
      this.log.info('sync-now: no uploader (the device is not bound); nothing to do');
      return;
    }
    this.uploader.syncNow();
  }

  private onUploadMode(mode: UploadMode): void {
    if (!this.journal.isOpen) return;
    const before = this.uploadModeNow;
    this.journal.setUploadMode(mode);
    this.uploadModeNow = mode;
    if (before !== mode) this.log.info({ mode, before }, 'upload mode changed');
    // continuous footage still on the device goes now, oldest first
    if (mode === 'continuous') this.uploader?.wake();
  }

  // ---- the device clock, as the cloud sees it (issue 8) ----------------------

  /**
   * The uploader's calls to the cloud, with presign watching for a wrong
   * device clock. The cloud takes a clip whose start lies between 7 days
   * before and 5 minutes after its own time (DESIGN, "What the cloud does
   * not take on trust"). When it refuses a start that the device's own clock
   * calls fresh, the device clock is what is wrong, and every clip recorded
   * now would get the same answer: marking each one failed would throw away
   * footage that becomes acceptable once NTP sets the clock, and retrying
   * each would hammer the cloud. So that presign waits (holding its upload
   * slot, so the queue stops once every slot waits) and asks again after
   * parkMs; the clips stay queued, `agent status` says why in its clock
   * line, and the first start the cloud takes ends it.
   */
  private checkedUploadApi(): UploadApi {
    const client = this.client;
    return {
      presign: (req, opts) => this.presignWithClockCheck(req, opts),
      streamPut: (target, path, opts) => client.streamPut(target, path, opts),
      streamPart: (part, path, opts) => client.streamPart(part, path, opts),
      complete: (clipId, opts, body) => client.complete(clipId, opts, body),
    };
  }

  private async presignWithClockCheck(req: PresignRequest, opts: CallOptions = {}): Promise<PresignResponse> {
    for (;;) {
      await this.clockHold(opts.signal);
      let res: PresignResponse;
      try {
        res = await this.client.presign(req, opts);
      } catch (err) {
        const startMs = Date.parse(req.start);
        if (!(err instanceof CloudError) || err.code !== 'CLIP_START_OUT_OF_RANGE' || !freshByDeviceClock(startMs, this.clock.now())) throw err;
        this.clockRefused(req.clipId, startMs);
        continue;
      }
      this.clockTaken();
      return res;
    }
  }

  /**
   * Waits out a hold. Only the uploader's own abort (its stop's grace ran
   * out, or the ring buffer withdrew the clip) ends the wait early, as
   * ABORTED: an abort the uploader did not ask for would send the clip back
   * to the queue and have it handed out again at once.
   */
  private async clockHold(signal: AbortSignal | undefined): Promise<void> {
    for (let waitMs = this.clockHoldUntil - this.clock.now(); waitMs > 0; waitMs = this.clockHoldUntil - this.clock.now()) {
      if (signal?.aborted) throw new CloudError(0, 'ABORTED', 'aborted');
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', done);
          resolve();
        };
        const timer = setTimeout(done, waitMs);
        signal?.addEventListener('abort', done, { once: true });
      });
    }
  }

  private clockRefused(clipId: string, startMs: number): void {
    const now = this.clock.now();
    const holdMs = this.retryPolicy?.parkMs ?? DEFAULT_RETRY_POLICY.parkMs;
    this.clockHoldUntil = Math.max(this.clockHoldUntil, now + holdMs);
    const since = this.clockState?.state === 'wrong' ? this.clockState.since : now;
    this.clockState = { state: 'wrong', since, lastRefusal: { clipId, startMs, at: now } };
    const first = !this.clockWarned;
    this.clockWarned = true;
    if (this.journal.isOpen) {
      this.journal.addStats({ [CLOCK_STAT]: 1 });
      this.journal.setStatInfo(CLOCK_STAT, this.clockState);
      if (first) {
        const message = 'the cloud refuses clip start times this device calls fresh: the device clock is wrong; uploads wait, footage stays queued';
        this.journal.setStatInfo('last_error', { code: 'CLIP_START_OUT_OF_RANGE', status: 400, clipId, at: now, message });
      }
    }
    this.log[first ? 'error' : 'debug'](
      { code: 'CLIP_START_OUT_OF_RANGE', clipId, clipStart: new Date(startMs).toISOString(), retryInMs: holdMs },
      "the cloud refuses the start time of a clip this device's clock calls fresh: the device clock is more than 5 minutes ahead of the cloud's, or days behind (is NTP running?); uploads wait and the footage stays queued",
    );
    this.emit('clock-refused', { clipId, startMs, at: now, first });
  }

  private clockTaken(): void {
    this.clockHoldUntil = 0;
    this.clockWarned = false;
    if (this.clockState?.state !== 'wrong') return;
    const now = this.clock.now();
    this.clockState = { state: 'ok', since: now, lastRefusal: this.clockState.lastRefusal };
    if (this.journal.isOpen) this.journal.setStatInfo(CLOCK_STAT, this.clockState);
    this.log.warn('the cloud takes clip start times from this device again: its clock agrees with the cloud now');
    this.emit('clock-ok', { at: now });
  }

  /**
   * A clip stamped while the clock ran ahead, refused now that the clock is
   * right: the cloud takes it once its start is less than 5 minutes ahead of
   * the cloud's time, so instead of staying failed it waits in the queue
   * until then (a start more than 7 days ahead is not worth waiting for).
   */
  private deferAheadStamped(e: UploadFailed): void {
    if (e.code !== 'CLIP_START_OUT_OF_RANGE' || e.next !== 'failed' || !this.journal.isOpen) return;
    const clip = this.journal.getClip(e.clipId);
    const now = this.clock.now();
    if (!clip || clip.state !== 'failed' || clip.startMs <= now + CLIP_AHEAD_SLACK_MS || clip.startMs > now + 7 * DAY_MS) return;
    const dueAt = clip.startMs - CLIP_AHEAD_SLACK_MS + 60_000;
    this.journal.markQueued(clip.id, { code: e.code, notBeforeMs: dueAt });
    this.log.warn(
      { clipId: clip.id, clipStart: new Date(clip.startMs).toISOString(), retryAt: new Date(dueAt).toISOString() },
      'a clip stamped while the device clock ran ahead waits in the queue until the cloud can take its start time',
    );
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
