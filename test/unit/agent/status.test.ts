import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Journal } from '../../../agent/journal/journal.js';
import { formatDeviceStatus, readDeviceStatus } from '../../../agent/status.js';
import { ManualClock } from '../../../shared/clock.js';
import { newClipId } from '../../../shared/ids.js';

const T0 = Date.parse('2026-03-01T12:00:00Z');
let dir: string;
const disk = async () => ({ freeBytes: 5 * 1024 ** 3, totalBytes: 10 * 1024 ** 3 });
const config = () => ({ dataDir: dir, channel: 'main', storage: { minFreeBytes: 256 * 1024 * 1024 } });

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'camvault-status-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function add(j: Journal, kind: 'event' | 'continuous', startMs: number, size: number) {
  const id = newClipId(startMs);
  return j.addClip({ id, channel: 'main', path: join(dir, `${id}.mp4`), startMs, durationMs: 10_000, size, md5: 'x', sha256: 'y', kind });
}

describe('agent status', () => {
  it('reports the queue, bytes at risk, the last upload and error, footage lost, and the disk against its quota', async () => {
    const clock = new ManualClock(T0);
    const j = Journal.open(dir, { clock });
    const oldest = add(j, 'continuous', T0 - 3_600_000, 1000);
    add(j, 'event', T0 - 60_000, 2000);
    const up = add(j, 'continuous', T0 - 7_200_000, 4000);
    j.markUploading(up.id);
    clock.advance(1000);
    j.markUploaded(up.id);
    const lost = add(j, 'continuous', T0 - 8_000_000, 8000);
    j.markEvicted([lost.id, up.id]);
    j.setStatInfo('last_error', { code: 'NETWORK_ERROR', status: 0, clipId: oldest.id, at: T0, message: 'POST /v1/device/uploads: ECONNREFUSED' });
    j.addStats({ dropped_segments: 2 });
    j.addStats({ recorder_stalls: 3, stream_changes: 1 });
    j.close();

    const st = await readDeviceStatus(config(), { clock: new ManualClock(T0 + 60_000), diskUsage: disk });
    expect(st).toMatchObject({
      queue: { depth: 2, events: 1, continuous: 1, uploading: 0, bytesAtRisk: 3000, oldestClipId: oldest.id, oldestAgeMs: 3_660_000 },
      lastUpload: { clipId: up.id, at: T0 + 1000 },
      lastError: { code: 'NETWORK_ERROR', clipId: oldest.id },
      lost: { clips: 1, bytes: 8000 },
      evicted: { clips: 2, bytes: 12_000 },
      droppedSegments: 2,
      recording: { stalls: 3, streamChanges: 1, segmentsWithoutVideo: 0 },
      disk: { segmentsBytes: 3000, maxBytes: Math.floor(10 * 1024 ** 3 * 0.8), minFreeBytes: 256 * 1024 * 1024, freeBytes: 5 * 1024 ** 3 },
      counts: { queued: 2, uploaded: 1, lost: 1 },
    });
    const text = formatDeviceStatus(st, T0 + 60_000);
    expect(text).toContain('queue:         2 clips waiting (1 event, 1 continuous; 0 uploading now)');
    expect(text).toContain('oldest:        1 h 1 min old');
    expect(text).toContain('at risk:       2.9 KiB not in the cloud');
    expect(text).toMatch(/last error: +NETWORK_ERROR at 2026-03-01T12:00:00.000Z \(1 min 0 s ago\) on clip \w+: POST/);
    expect(text).toContain('footage lost:  1 clip, 7.8 KiB; dropped segments: 2');
    expect(text).toContain('recording:     3 stalls (input frozen, ffmpeg restarted), 1 stream change, 0 segments without video');
    expect(text).toContain('disk:          segments 2.9 KiB of a 8.0 GiB quota; 5.0 GiB free of 10 GiB (reserve 256 MiB)');
  });

  it('says so in one line when there is no journal', async () => {
    await expect(readDeviceStatus(config(), { diskUsage: disk })).rejects.toThrow(/no agent journal in/);
  });

  it('reads the journal of an older agent, without the ring buffer columns', async () => {
    const j = Journal.open(dir);
    add(j, 'continuous', T0, 1000);
    j.close();
    // what an agent from before issue 4 left: schema 2, no evicted_at, no agent_stats
    const raw = new Database(join(dir, 'agent.db'));
    raw.exec('DROP INDEX clips_on_disk; DROP TABLE agent_stats; ALTER TABLE clips DROP COLUMN evicted_at');
    raw.pragma('user_version = 2');
    raw.close();
    const st = await readDeviceStatus(config(), { diskUsage: disk });
    expect(st.queue.depth).toBe(1);
    expect(st.lost.clips).toBe(0);
    expect(st.lastError).toBeNull();
  });
});
