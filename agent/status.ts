import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { systemClock, type Clock } from '../shared/clock.js';
import type { AgentConfig } from './config.js';
import { Journal, JOURNAL_FILE, type ClipCounts } from './journal/journal.js';
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
  recording: { stalls: number; streamChanges: number; segmentsWithoutVideo: number };
  disk: {
    /** bytes of the segment files the journal knows */
    segmentsBytes: number;
    maxBytes: number;
    minFreeBytes: number;
    freeBytes: number;
    totalBytes: number;
  } | null;
  counts: ClipCounts;
}

export interface StatusOptions {
  clock?: Clock;
  diskUsage?: (dir: string) => Promise<DiskUsage>;
}

type StatusConfig = Pick<AgentConfig, 'dataDir' | 'channel' | 'storage'>;

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
      recording: { stalls: n('recorder_stalls'), streamChanges: n('stream_changes'), segmentsWithoutVideo: n('segments_without_video') },
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

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

/** The human-readable status, a line per fact. */
export function formatDeviceStatus(st: DeviceStatus, now: number = Date.now()): string {
  const q = st.queue;
  const when = (at: number): string => `${new Date(at).toISOString()} (${formatAge(Math.max(0, now - at))} ago)`;
  const lines = [
    `device:        ${st.serial ?? '(not claimed)'}`,
    `queue:         ${plural(q.depth, 'clip')} waiting (${q.events} event, ${q.continuous} continuous; ${q.uploading} uploading now)`,
    `oldest:        ${q.oldestAgeMs === null ? 'nothing waiting' : `${formatAge(q.oldestAgeMs)} old (${q.oldestClipId})`}`,
    `at risk:       ${formatBytes(q.bytesAtRisk)} not in the cloud${st.failed.clips > 0 ? ` (${plural(st.failed.clips, 'clip')}, ${formatBytes(st.failed.bytes)}, refused by the cloud)` : ''}`,
    `last upload:   ${st.lastUpload ? `${st.lastUpload.clipId} at ${when(st.lastUpload.at)}` : 'none yet'}`,
    `last error:    ${st.lastError ? `${st.lastError.code} at ${when(st.lastError.at)}${st.lastError.clipId ? ` on clip ${st.lastError.clipId}` : ''}: ${st.lastError.message}` : 'none'}`,
    `footage lost:  ${plural(st.lost.clips, 'clip')}, ${formatBytes(st.lost.bytes)}; dropped segments: ${st.droppedSegments}`,
    `ring buffer:   ${plural(st.evicted.clips, 'clip')} evicted, ${formatBytes(st.evicted.bytes)}`,
    `recording:     ${plural(st.recording.stalls, 'stall')} (input frozen, ffmpeg restarted), ${plural(st.recording.streamChanges, 'stream change')}, ${plural(st.recording.segmentsWithoutVideo, 'segment')} without video`,
    st.disk
      ? `disk:          segments ${formatBytes(st.disk.segmentsBytes)} of a ${formatBytes(st.disk.maxBytes)} quota; ${formatBytes(st.disk.freeBytes)} free of ${formatBytes(st.disk.totalBytes)} (reserve ${formatBytes(st.disk.minFreeBytes)})`
      : 'disk:          cannot be measured',
    `clips by state: ${Object.entries(st.counts)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
  ];
  return lines.join('\n');
}
