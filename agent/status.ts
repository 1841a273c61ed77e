import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { systemClock, type Clock } from '../shared/clock.js';
import type { AgentConfig } from './config.js';
import { formatEmailStatus, readEmailStatus, type EmailStatus } from './email/status.js';
import type { UploadMode } from '../shared/contracts/alerts.js';
import { ALERT_STATS, Journal, JOURNAL_FILE, LOCAL_ONLY_EVICTED_STAT, MQTT_STATUS_STAT, UNBOUND_CLIPS_STAT, type ClipCounts } from './journal/journal.js';
import type { MqttStatus } from './mqtt/connection.js';
import { resolveQuota } from './storage/keeper.js';
import { diskUsage, type DiskUsage } from './storage/ring-buffer.js';
import type { LastUploadError } from './uploader/uploader.js';

/**
 * `agent status` (issue 4, "Status"): what the subscriber's footage is
 * exposed to, read from the journal (read-only, safe while the agent runs)
 * and the disk. Nothing here is kept in memory by a running agent: the
 * counters live in the journal (agent_stats), written in the same
 * transactions as the changes they count, so the numbers survive power cuts
 * and cost the SD card no extra writes.
 */
export interface DeviceStatus {
  serial: string | null;
  claimed: boolean;
  queue: {
    /** clips waiting to be uploaded (queued or uploading) */
    depth: number;
    events: number;
    continuous: number;
    uploading: number;
    /** footage on the device the cloud does not have: waiting clips and refused ones */
    bytesAtRisk: number;
    oldestClipId: string | null;
    /** how long ago the oldest waiting clip started */
    oldestAgeMs: number | null;
  };
  /** clips the cloud refused for good; their files stay on the device */
  failed: { clips: number; bytes: number };
  lastUpload: { clipId: string; at: number } | null;
  lastError: LastUploadError | null;
  /** footage deleted before it reached the cloud (ring buffer, or a file that vanished) */
  lost: { clips: number; bytes: number };
  /** clips the ring buffer deleted, uploaded ones included */
  evicted: { clips: number; bytes: number };
  /** partial segments with nothing playable left, dropped at start-up */
  droppedSegments: number;
  /** the recorder's troubles: frozen inputs caught by the watchdog, stream changes that cut a segment, segments with no video */
  recording: { stalls: number; streamChanges: number; segmentsWithoutVideo: number; ffmpegCrashes: number };
  disk: {
    /** bytes of the segment files the journal knows */
    segmentsBytes: number;
    maxBytes: number;
    minFreeBytes: number;
    freeBytes: number;
    totalBytes: number;
  } | null;
  counts: ClipCounts;
  /** the broker connection as the running agent last journaled it (issue 7); null before it ever tried */
  mqtt: MqttStatus | null;
  /** the alert outbox: waiting for the broker, dropped because it was full, acknowledged by the broker */
  alerts: { waiting: number; dropped: number; sent: number };
  /** set by the owner's command: 'events' uploads event clips only */
  uploadMode: UploadMode;
  /** the owner unbound the camera (an MQTT command): nothing is uploaded until a new bind code claims it */
  unbound: { at: number } | null;
  /** clips never uploaded because of an unbind, and clips kept on the device only (upload mode, unbound) that the ring buffer evicted */
  notUploaded: { unbound: number; localOnlyEvicted: number };
  /** email alerts (issue 7): on or off, how many recipients, the last mail; never the host, user or addresses */
  email?: EmailStatus;
  /** whether the cloud takes the device's clip times (issue 8); null before the question came up */
  clock: (ClockStatus & { refusals: number }) | null;
}

export interface StatusOptions {
  clock?: Clock;
  diskUsage?: (dir: string) => Promise<DiskUsage>;
}

type StatusConfig = Pick<AgentConfig, 'dataDir' | 'channel' | 'storage'>;

/**
 * agent_stats key of the device clock as the cloud sees it (issue 8, clock
 * skew): n counts refusals of clip start times the device's own clock calls
 * fresh, info is the ClockStatus the running agent wrote when it last changed.
 */
export const CLOCK_STAT = 'clock';
/** agent_stats key: ffmpeg killed by a signal the recorder did not send (a crash, the OOM killer); restarted each time */
export const FFMPEG_CRASHES_STAT = 'recorder_crashes';

export interface ClockStatus {
  /** 'wrong': the cloud refused a fresh clip's start time, so the device clock is off; 'ok': the cloud took a clip since */
  state: 'wrong' | 'ok';
  /** when this state began (device clock) */
  since: number;
  /** the last refusal, kept after the clock is right again */
  lastRefusal: { clipId: string; startMs: number; at: number } | null;
}

/** The device's status from its data directory. Throws one clear line when there is no journal. */
export async function readDeviceStatus(config: StatusConfig, opts: StatusOptions = {}): Promise<DeviceStatus> {
  const clock = opts.clock ?? systemClock;
  if (!existsSync(join(config.dataDir, JOURNAL_FILE))) {
    throw new Error(`no agent journal in ${config.dataDir} (has the agent run with this data directory?)`);
  }
  const segmentsDir = join(config.dataDir, 'segments', config.channel);
  let disk: DiskUsage | undefined;
  try {
    disk = await (opts.diskUsage ?? diskUsage)(existsSync(segmentsDir) ? segmentsDir : config.dataDir);
  } catch {
    disk = undefined;
  }
  const journal = Journal.open(config.dataDir, { readonly: true });
  try {
    const creds = journal.getCredentials();
    const q = journal.queueSummary();
    const stats = journal.stats();
    const n = (key: string): number => stats[key]?.n ?? 0;
    // an older agent's journal has no evicted_at: every journaled clip still has its file
    const segmentsBytes = journal.schemaVersion >= 3 ? journal.onDiskBytes() : 0;
    const depth = q.waiting.event + q.waiting.continuous;
    return {
      serial: creds?.serial ?? null,
      claimed: creds !== undefined,
      queue: {
        depth,
        events: q.waiting.event,
        continuous: q.waiting.continuous,
        uploading: q.uploading,
        bytesAtRisk: q.waitingBytes + q.failedBytes,
        oldestClipId: q.oldestWaiting?.clipId ?? null,
        oldestAgeMs: q.oldestWaiting ? Math.max(0, clock.now() - q.oldestWaiting.startMs) : null,
      },
      failed: { clips: q.failed, bytes: q.failedBytes },
      lastUpload: q.lastUpload,
      lastError: (stats.last_error?.info as LastUploadError | undefined) ?? null,
      lost: { clips: n('lost_clips'), bytes: n('lost_bytes') },
      evicted: { clips: n('evicted_clips'), bytes: n('evicted_bytes') },
      droppedSegments: n('dropped_segments'),
      // the keys of RECORDING_STATS in agent.ts (not imported: agent.ts pulls in the whole recorder)
      recording: {
        stalls: n('recorder_stalls'),
        streamChanges: n('stream_changes'),
        segmentsWithoutVideo: n('segments_without_video'),
        ffmpegCrashes: n(FFMPEG_CRASHES_STAT),
      },
      disk: disk
        ? {
            segmentsBytes,
            maxBytes: resolveQuota(config.storage, disk),
            minFreeBytes: config.storage.minFreeBytes,
            freeBytes: disk.freeBytes,
            totalBytes: disk.totalBytes,
          }
        : null,
      counts: journal.countsByState(),
      mqtt: (stats[MQTT_STATUS_STAT]?.info as MqttStatus | null | undefined) ?? null,
      alerts: { waiting: journal.alertOutboxSize(), dropped: n(ALERT_STATS.dropped), sent: n(ALERT_STATS.sent) },
      uploadMode: journal.uploadMode(),
      unbound: ((r) => (r ? { at: r.at } : null))(journal.unboundRecord()),
      notUploaded: { unbound: n(UNBOUND_CLIPS_STAT), localOnlyEvicted: n(LOCAL_ONLY_EVICTED_STAT) },
      email: readEmailStatus(journal),
      clock: ((c) => (c ? { ...c, refusals: n(CLOCK_STAT) } : null))(stats[CLOCK_STAT]?.info as ClockStatus | null | undefined),
    };
  } finally {
    journal.close();
  }
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u += 1;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

export function formatAge(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86_400)} d ${Math.floor((s % 86_400) / 3600)} h`;
}

const plural = (n: number, word: string, many = `${word}s`): string => `${n} ${n === 1 ? word : many}`;

/** The broker line of `agent status`: the state the running agent journaled when it last changed. */
export function formatMqtt(m: MqttStatus | null, when: (at: number) => string): string {
  if (!m) return 'not used yet';
  const next = m.retryAt !== null ? `; next try at ${new Date(m.retryAt).toISOString()}` : '';
  switch (m.state) {
    case 'connected':
      return `connected to ${m.broker ?? '?'} since ${when(m.since)}`;
    case 'connecting':
      return `connecting to ${m.broker ?? '?'} since ${when(m.since)}`;
    case 'refused':
      return `REFUSED the device credential (${m.code ?? '?'}) since ${when(m.since)}: retrying slowly${next}`;
    case 'disconnected':
      return `cannot reach ${m.broker ?? 'the broker'} (${m.code ?? '?'}) since ${when(m.since)}${next}`;
    case 'off':
      return m.code === 'STOPPED' || m.code === 'UNBOUND'
        ? `not connected (${m.code === 'STOPPED' ? 'the agent stopped' : 'unbound'} at ${when(m.since)})`
        : `not connected (${m.code ?? 'no broker yet'})${next}`;
  }
}

/** The clock line of `agent status`: loud while the cloud refuses the device's time. */
export function formatClock(c: DeviceStatus['clock'], when: (at: number) => string): string {
  if (!c) return 'no clip time refused';
  const refusals = `${plural(c.refusals, 'refusal')}, last ${c.lastRefusal ? `clip ${c.lastRefusal.clipId} at ${when(c.lastRefusal.at)}` : 'none'}`;
  return c.state === 'wrong'
    ? `WRONG since ${when(c.since)}: the cloud refuses clip start times this device calls fresh, so its clock is over 5 minutes ahead of the cloud's or days behind (NTP?); uploads wait, footage stays queued (${refusals})`
    : `the cloud takes clip times again since ${when(c.since)} (${refusals})`;
}

/** The human-readable status, a line per fact. */
export function formatDeviceStatus(st: DeviceStatus, now: number = Date.now()): string {
  const q = st.queue;
  const when = (at: number): string => `${new Date(at).toISOString()} (${formatAge(Math.max(0, now - at))} ago)`;
  const lines = [
    `device:        ${st.serial ?? '(not claimed)'}`,
    ...(st.unbound
      ? [`binding:       UNBOUND by the owner at ${when(st.unbound.at)}: nothing is uploaded and no alert is sent; recording goes on into the ring buffer until a new bind code binds it`]
      : []),
    `queue:         ${plural(q.depth, 'clip')} waiting (${q.events} event, ${q.continuous} continuous; ${q.uploading} uploading now)`,
    `oldest:        ${q.oldestAgeMs === null ? 'nothing waiting' : `${formatAge(q.oldestAgeMs)} old (${q.oldestClipId})`}`,
    `at risk:       ${formatBytes(q.bytesAtRisk)} not in the cloud${st.failed.clips > 0 ? ` (${plural(st.failed.clips, 'clip')}, ${formatBytes(st.failed.bytes)}, refused by the cloud)` : ''}`,
    `last upload:   ${st.lastUpload ? `${st.lastUpload.clipId} at ${when(st.lastUpload.at)}` : 'none yet'}`,
    `last error:    ${st.lastError ? `${st.lastError.code} at ${when(st.lastError.at)}${st.lastError.clipId ? ` on clip ${st.lastError.clipId}` : ''}: ${st.lastError.message}` : 'none'}`,
    `footage lost:  ${plural(st.lost.clips, 'clip')}, ${formatBytes(st.lost.bytes)}; dropped segments: ${st.droppedSegments}`,
    `ring buffer:   ${plural(st.evicted.clips, 'clip')} evicted, ${formatBytes(st.evicted.bytes)}`,
    `recording:     ${plural(st.recording.stalls, 'stall')} (input frozen, ffmpeg restarted), ${plural(st.recording.streamChanges, 'stream change')}, ${plural(st.recording.segmentsWithoutVideo, 'segment')} without video, ${plural(st.recording.ffmpegCrashes, 'ffmpeg crash', 'ffmpeg crashes')} (restarted, open segment salvaged)`,
    `clock:         ${formatClock(st.clock, when)}`,
    st.disk
      ? `disk:          segments ${formatBytes(st.disk.segmentsBytes)} of a ${formatBytes(st.disk.maxBytes)} quota; ${formatBytes(st.disk.freeBytes)} free of ${formatBytes(st.disk.totalBytes)} (reserve ${formatBytes(st.disk.minFreeBytes)})`
      : 'disk:          cannot be measured',
    ...(st.email ? [`email alerts:  ${formatEmailStatus(st.email, when)}`] : []),
    `broker:        ${formatMqtt(st.mqtt, when)}`,
    `alerts:        ${st.alerts.waiting} waiting for the broker, ${st.alerts.dropped} dropped (outbox full), ${st.alerts.sent} sent`,
    `upload mode:   ${
      st.uploadMode === 'events'
        ? `events: event clips only; continuous footage stays on the device (${st.queue.continuous} clips now, ${st.notUploaded.localOnlyEvicted} evicted so far)`
        : 'continuous: every clip'
    }${st.notUploaded.unbound > 0 ? `; ${plural(st.notUploaded.unbound, 'clip')} never uploaded because of an unbind` : ''}`,
    `clips by state: ${Object.entries(st.counts)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
  ];
  return lines.join('\n');
}
