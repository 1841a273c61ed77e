import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readMp4Tracks } from '../../agent/recorder/mp4-boxes.js';
import { Recorder, type SegmentClosed, type SegmentDropped, type StreamChanged } from '../../agent/recorder/recorder.js';
import { SimCamera, type SimStreamChange } from '../../firmware-sim/camera.js';
import { createLogger } from '../../shared/log.js';
import { decode, ffmpegPath, waitFor } from '../helpers/media.js';

/**
 * A camera whose owner changes the picture size or the codec while it
 * streams: over MPEG-TS the new stream follows the old one on the same
 * connection (SimCamera.reconfigure()). ffmpeg copying it does not notice;
 * the recorder must, so that a new segment starts and no segment mixes two
 * streams. Every closed segment must decode without a single error, hold
 * frames of one size only, the size its header declares, and the segments
 * after the change must have the new size or codec.
 */

const logger = createLogger({ level: 'silent' });
let root: string;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'camvault-change-'));
});
afterAll(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

/** The size of every frame ffmpeg decodes from a file (its showinfo filter). */
function frameSizes(path: string): Promise<Set<string>> {
  return new Promise((resolve, reject) => {
    const child = spawn(ffmpegPath, ['-nostdin', '-hide_banner', '-i', path, '-map', '0:v', '-vf', 'showinfo', '-f', 'null', '-'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (c: string) => (err += c));
    child.on('error', reject);
    child.on('close', () => resolve(new Set([...err.matchAll(/ s:(\d+x\d+) /g)].map((m) => m[1] as string))));
  });
}

async function recordThroughChange(name: string, serial: string, change: SimStreamChange): Promise<{ segments: SegmentClosed[]; changes: StreamChanged[]; dropped: SegmentDropped[] }> {
  const camera = await SimCamera.start({ serial, width: 320, height: 180, fps: 10, gopSeconds: 1, motionEverySec: 0, audio: 'aac', logger, fontFile: null });
  const rec = new Recorder({ ffmpegPath, input: camera.streamUrl, dir: join(root, name), segmentSeconds: 2, logger, restart: { minDelayMs: 200 }, pollMs: 250 });
  const segments: SegmentClosed[] = [];
  const changes: StreamChanged[] = [];
  const dropped: SegmentDropped[] = [];
  rec.on('segment', (s: SegmentClosed) => segments.push(s));
  rec.on('stream-change', (c: StreamChanged) => changes.push(c));
  rec.on('segment-dropped', (d: SegmentDropped) => dropped.push(d));
  try {
    rec.start();
    await waitFor(() => segments.length >= 2, 20_000, 'two segments before the change');
    // mid-segment: a fragment or more of the old stream is in the segment being written
    await new Promise((r) => setTimeout(r, 1300));
    await camera.reconfigure(change);
    const before = segments.length;
    await waitFor(() => segments.length >= before + 3, 30_000, 'three segments after the change');
  } finally {
    await rec.stop();
    await camera.stop();
  }
  return { segments, changes, dropped };
}

async function checkSegment(s: SegmentClosed): Promise<{ codec: string; size: string }> {
  const d = await decode(s.path);
  expect(d.errors, s.path).toEqual([]);
  expect(d.code, s.path).toBe(0);
  const video = (await readMp4Tracks(s.path)).find((t) => t.handler === 'vide');
  expect(video, s.path).toBeDefined();
  const declared = `${video?.width}x${video?.height}`;
  // one picture size in the whole segment, the one its header declares
  expect([...(await frameSizes(s.path))], s.path).toEqual([declared]);
  return { codec: video?.codec as string, size: declared };
}

describe('a change in the stream mid-recording', () => {
  it('of picture size (H.264, in-band on the same connection) starts a new segment and corrupts none', async () => {
    const { segments, changes, dropped } = await recordThroughChange('size', 'SIMCHG000001', { width: 480, height: 270 });
    expect(changes.length).toBeGreaterThanOrEqual(1);
    expect(changes[0]?.reason).toMatch(/SPS/);
    const seen: string[] = [];
    for (const s of segments) seen.push((await checkSegment(s)).size);
    // the old size, then the new one, never back
    const firstNew = seen.indexOf('480x270');
    expect(firstNew).toBeGreaterThan(0);
    expect(seen.slice(0, firstNew).every((x) => x === '320x180')).toBe(true);
    expect(seen.slice(firstNew).every((x) => x === '480x270')).toBe(true);
    expect(seen.length - firstNew).toBeGreaterThanOrEqual(3);
    // The segment the change fell in was cut before it, at a fragment
    // boundary; or, when ffmpeg had just opened a segment with the old header
    // for the new stream, that one held nothing else and was dropped.
    const cut = segments.find((s) => s.cutBytes > 0);
    const droppedAtChange = dropped.find((d) => /stream change/.test(d.reason));
    expect(cut ?? droppedAtChange).toBeDefined();
    if (cut) expect(cut.durationMs).toBeLessThan(2000);
  });

  it('of codec (H.264 to H.265, in-band) starts a new segment tagged hvc1 and corrupts none', async () => {
    const { segments, changes } = await recordThroughChange('codec', 'SIMCHG000002', { videoCodec: 'h265' });
    expect(changes.length).toBeGreaterThanOrEqual(1);
    const codecs: string[] = [];
    for (const s of segments) codecs.push((await checkSegment(s)).codec);
    const firstNew = codecs.indexOf('hvc1');
    expect(firstNew).toBeGreaterThan(0);
    expect(codecs.slice(0, firstNew).every((c) => c === 'avc1')).toBe(true);
    expect(codecs.slice(firstNew).every((c) => c === 'hvc1')).toBe(true);
    expect(segments.slice(firstNew).every((s) => s.tracks.join('+') === 'hvc1+mp4a')).toBe(true);
  });
});
