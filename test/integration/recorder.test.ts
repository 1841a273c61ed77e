import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Recorder, type RunStarted, type SegmentClosed, type SegmentDropped } from '../../agent/recorder/recorder.js';
import { inspectSegment } from '../../agent/recorder/segment-check.js';
import { SimCamera } from '../../firmware-sim/camera.js';
import { createLogger } from '../../shared/log.js';
import { decode, ffmpegPath, mp4BoxTypes, pidAlive, waitFor } from '../helpers/media.js';

const logger = createLogger({ level: 'silent' });
let camera: SimCamera;
let root: string;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'camvault-recorder-'));
  // light on CPU: the machine has 2 cores and other suites run ffmpeg too
  camera = await SimCamera.start({ serial: 'SIMREC000001', width: 320, height: 180, fps: 10, gopSeconds: 1, motionEverySec: 0, logger });
});

afterAll(async () => {
  await camera?.stop();
  if (root) rmSync(root, { recursive: true, force: true });
});

function recorder(name: string): { rec: Recorder; dir: string; segments: SegmentClosed[]; runs: RunStarted[]; dropped: SegmentDropped[] } {
  const dir = join(root, name);
  const rec = new Recorder({ ffmpegPath, input: camera.streamUrl, dir, segmentSeconds: 2, logger, restart: { minDelayMs: 200 }, pollMs: 250 });
  const segments: SegmentClosed[] = [];
  const runs: RunStarted[] = [];
  rec.on('segment', (s: SegmentClosed) => segments.push(s));
  rec.on('run-start', (r: RunStarted) => runs.push(r));
  const dropped: SegmentDropped[] = [];
  rec.on('segment-dropped', (d: SegmentDropped) => dropped.push(d));
  return { rec, dir, segments, runs, dropped };
}

/** Other ffmpeg processes whose command line names this folder. */
function ffmpegsWriting(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmd.includes('ffmpeg') && cmd.includes(dir)) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

describe('recorder with real ffmpeg', () => {
  it('closes at least 2 segments within 15 s, each a playable fragmented MP4 of about the segment length', async () => {
    const { rec, dir, segments } = recorder('playable');
    rec.start();
    try {
      await waitFor(() => segments.length >= 2, 15_000, '2 closed segments');
      // the segments of one run follow each other on the run's clock: no gap, and an overlap
      // only by as much as the clock's estimate improved in between (a poll at most)
      const [a, b] = segments as [SegmentClosed, SegmentClosed];
      expect(b.startMs).toBeLessThanOrEqual(a.startMs + a.durationMs);
      expect(a.startMs + a.durationMs - b.startMs).toBeLessThanOrEqual(300);
      for (const s of segments.slice(0, 2)) {
        expect(s.path.startsWith(dir)).toBe(true);
        expect(basename(s.path)).toMatch(new RegExp(`^${s.runId}_\\d{6}\\.mp4$`));
        const boxes = mp4BoxTypes(s.path);
        expect(boxes[0]).toBe('ftyp');
        expect(boxes).toContain('moov');
        expect(boxes).toContain('moof');
        expect(boxes).toContain('mdat');
        expect(s.durationMs).toBeGreaterThanOrEqual(1500);
        expect(s.durationMs).toBeLessThanOrEqual(3500);
        // placed on the run's clock (segment-clock.ts): never after it was seen closed
        expect(s.startMs + s.durationMs).toBeLessThanOrEqual(s.endedAt);
        expect(s.endedAt - (s.startMs + s.durationMs)).toBeLessThan(2000);
        expect(s).toMatchObject({ closedBy: 'list', hasVideo: true, cutBytes: 0, tracks: ['avc1'] });
        const d = await decode(s.path);
        expect(d.errors).toEqual([]);
        expect(d.code).toBe(0);
        expect(d.frames).toBeGreaterThanOrEqual(10);
        // the media time of its fragments (trun sample durations) is the length ffmpeg listed
        const state = await inspectSegment(s.path);
        expect(state.change).toBeUndefined();
        expect(Math.abs(state.durationMs - s.durationMs)).toBeLessThanOrEqual(100);
        expect(state.video).toMatchObject({ codec: 'avc1', width: 320, height: 180, timescale: 10240 });
      }
    } finally {
      await rec.stop();
    }
  });

  it('restarts ffmpeg under a new run id after it is killed, and segments keep coming', async () => {
    const { rec, dir, segments, runs, dropped } = recorder('restart');
    rec.start();
    try {
      await waitFor(() => segments.length >= 1, 15_000, 'a first segment');
      const firstRun = rec.runId;
      const firstPid = rec.pid as number;
      process.kill(firstPid, 'SIGKILL');
      await waitFor(() => runs.length >= 2, 10_000, 'a second ffmpeg launch');
      expect(runs[1]?.runId).not.toBe(firstRun);
      expect(pidAlive(firstPid)).toBe(false);
      await waitFor(() => segments.some((s) => s.runId === runs[1]?.runId), 15_000, 'a segment from the new run');
      // the new run wrote its own list and its own files: nothing of the first run was overwritten
      const lists = readdirSync(dir).filter((n) => n.endsWith('.csv'));
      expect(lists.sort()).toEqual([`${firstRun}.csv`, `${runs[1]?.runId}.csv`].sort());
      // the segment the killed ffmpeg had open was salvaged (its complete fragments) or, with none, dropped
      const salvaged = segments.filter((s) => s.runId === firstRun && s.closedBy === 'salvage');
      expect(salvaged.length + dropped.filter((d) => d.runId === firstRun).length).toBe(1);
      for (const s of salvaged) expect((await decode(s.path)).errors).toEqual([]);
    } finally {
      await rec.stop();
    }
  });

  it('stop() closes and reports the segment in progress and leaves no ffmpeg running', async () => {
    const { rec, dir, segments } = recorder('stop');
    rec.start();
    await waitFor(() => segments.length >= 1, 15_000, 'a first segment');
    const pid = rec.pid as number;
    expect(pidAlive(pid)).toBe(true);
    const before = segments.length;
    const stopping = rec.stop();
    expect(rec.stop()).toBe(stopping); // a second call joins the first
    await stopping;
    expect(pidAlive(pid)).toBe(false);
    expect(ffmpegsWriting(dir)).toEqual([]);
    expect(segments.length).toBeGreaterThan(before);
    const last = segments[segments.length - 1] as SegmentClosed;
    expect(mp4BoxTypes(last.path)[0]).toBe('ftyp');
    expect((await decode(last.path)).errors).toEqual([]);
  });
});
