import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Recorder, type RecorderOptions, type RecorderStall, type RunExited, type SegmentClosed } from '../../agent/recorder/recorder.js';
import { SimCamera } from '../../firmware-sim/camera.js';
import { createLogger } from '../../shared/log.js';
import { decode, ffmpegPath, waitFor } from '../helpers/media.js';

/**
 * A camera that freezes with its connection open (SimCamera.stall()) must not
 * hang the recorder: the stall is caught (by ffmpeg's own read timeout on a
 * tcp input, or by the recorder's watchdog on segment progress), ffmpeg is
 * started again, and once the camera sends again recording resumes within
 * two segment lengths (issue 4's acceptance). 320x180 at 10 fps, 2 s segments.
 */

const SEGMENT_SECONDS = 2;
const logger = createLogger({ level: 'silent' });
let root: string;
let camera: SimCamera;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'camvault-stall-'));
  camera = await SimCamera.start({ serial: 'SIMSTL000001', width: 320, height: 180, fps: 10, gopSeconds: 1, motionEverySec: 0, logger, fontFile: null });
});

afterAll(async () => {
  await camera?.stop();
  if (root) rmSync(root, { recursive: true, force: true });
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Observed {
  rec: Recorder;
  dir: string;
  segments: SegmentClosed[];
  stalls: (RecorderStall & { at: number })[];
  exits: RunExited[];
}

function recorder(name: string, over: Partial<RecorderOptions> = {}): Observed {
  const dir = join(root, name);
  const rec = new Recorder({
    ffmpegPath,
    input: camera.streamUrl,
    dir,
    segmentSeconds: SEGMENT_SECONDS,
    logger,
    restart: { minDelayMs: 200 },
    pollMs: 250,
    ...over,
  });
  const o: Observed = { rec, dir, segments: [], stalls: [], exits: [] };
  rec.on('segment', (s: SegmentClosed) => o.segments.push(s));
  rec.on('stall', (s: RecorderStall) => o.stalls.push({ ...s, at: Date.now() }));
  rec.on('run-exit', (e: RunExited) => o.exits.push(e));
  return o;
}

/** Segment files written (header and all) since `before` was taken: ffmpeg has data again. */
function newSegmentFiles(dir: string, before: Set<string>): string[] {
  return readdirSync(dir).filter((n) => n.endsWith('.mp4') && !before.has(n) && statSync(join(dir, n)).size > 0);
}

/**
 * Records two segments, freezes the camera for `stallMs`, and resumes it.
 * Returns when the stall was seen, and how long after the resume the first
 * new segment was opened and the first one closed.
 */
async function stallAndResume(o: Observed, stallMs: number): Promise<{ detectedAfterMs: number; reopenedAfterMs: number; closedAfterMs: number }> {
  o.rec.start();
  await waitFor(() => o.segments.length >= 2, 20_000, 'two segments before the stall');
  const stalledAt = Date.now();
  camera.stall();
  await waitFor(() => o.stalls.length >= 1, o.rec.stallTimeoutMs + 5000, 'the stall to be caught');
  const detectedAfterMs = (o.stalls[0] as { at: number }).at - stalledAt;
  await sleep(Math.max(0, stallMs - (Date.now() - stalledAt)));
  const before = new Set(readdirSync(o.dir));
  const segmentsBefore = o.segments.length;
  const resumedAt = Date.now();
  camera.resume();
  await waitFor(() => newSegmentFiles(o.dir, before).length > 0, 15_000, 'a segment opened after the resume');
  const reopenedAfterMs = Date.now() - resumedAt;
  await waitFor(() => o.segments.slice(segmentsBefore).some((s) => !before.has(s.path.split('/').pop() as string)), 15_000, 'a segment closed after the resume');
  const closedAfterMs = Date.now() - resumedAt;
  return { detectedAfterMs, reopenedAfterMs, closedAfterMs };
}

describe('a camera that stalls without closing its connection', () => {
  it("is caught by ffmpeg's read timeout on a tcp input, which closes the segment cleanly; recording resumes within two segment lengths", async () => {
    const o = recorder('read-timeout');
    try {
      const t = await stallAndResume(o, 7000);
      console.log(`stall (read timeout): caught ${t.detectedAfterMs} ms after the freeze; after the resume a segment opened in ${t.reopenedAfterMs} ms, closed in ${t.closedAfterMs} ms`);
      expect(o.stalls[0]?.detectedBy).toBe('input-timeout');
      // the read timeout sits 2 s under the watchdog's 1.5 segments + 2 s
      expect(t.detectedAfterMs).toBeLessThan(o.rec.stallTimeoutMs);
      expect(t.reopenedAfterMs).toBeLessThanOrEqual(2 * SEGMENT_SECONDS * 1000);
      // ffmpeg ended by its read timeout closed and listed the segment it was writing: nothing was salvaged or dropped
      expect(o.segments.every((s) => s.closedBy === 'list')).toBe(true);
      const first = o.exits[0] as RunExited;
      expect(first).toMatchObject({ code: 0, signal: null, endReason: null });
      expect(first.restartInMs).toBe(0);
    } finally {
      await o.rec.stop();
    }
    for (const s of o.segments) expect((await decode(s.path)).errors, s.path).toEqual([]);
  });

  it('is caught by the watchdog on segment progress when ffmpeg itself would wait (SIGINT, then SIGKILL), and recording resumes within two segment lengths', async () => {
    // a read timeout longer than the test: only the watchdog can act
    const o = recorder('watchdog', { inputTimeoutUs: 120_000_000, killGraceMs: 1000 });
    try {
      const t = await stallAndResume(o, 7000);
      console.log(`stall (watchdog, ${o.rec.stallTimeoutMs} ms): caught ${t.detectedAfterMs} ms after the freeze; after the resume a segment opened in ${t.reopenedAfterMs} ms, closed in ${t.closedAfterMs} ms`);
      const stall = o.stalls[0] as RecorderStall;
      expect(stall.detectedBy).toBe('watchdog');
      expect(stall.silentMs).toBeGreaterThan(o.rec.stallTimeoutMs);
      // no progress for the timeout, counted from the last fragment written (up to 1 s before the freeze), plus a poll
      expect(t.detectedAfterMs).toBeLessThan(o.rec.stallTimeoutMs + 1000);
      expect(t.reopenedAfterMs).toBeLessThanOrEqual(2 * SEGMENT_SECONDS * 1000);
      // blocked in its read, ffmpeg ignores SIGINT: it was killed, and started again at once
      const stalledRun = o.exits.find((e) => e.runId === stall.runId) as RunExited;
      expect(stalledRun).toMatchObject({ endReason: 'stall', signal: 'SIGKILL', restartInMs: 0 });
    } finally {
      await o.rec.stop();
    }
    // what the killed run left open was salvaged or dropped, never reported broken
    for (const s of o.segments) expect((await decode(s.path)).errors, s.path).toEqual([]);
  });
});
