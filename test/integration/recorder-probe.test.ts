import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AudioMode } from '../../agent/recorder/ffmpeg-args.js';
import { buildRecorderArgs, FAST_PROBE, newRunId, THOROUGH_PROBE, type InputProbe } from '../../agent/recorder/ffmpeg-args.js';
import { readMp4Tracks } from '../../agent/recorder/mp4-boxes.js';
import { Recorder, type InputDescribed, type RunStarted, type SegmentClosed } from '../../agent/recorder/recorder.js';
import { SimCamera, type SimAudio, type SimVideoCodec } from '../../firmware-sim/camera.js';
import { createLogger } from '../../shared/log.js';
import { decode, ffmpegPath, waitFor } from '../helpers/media.js';

/**
 * The recorder learns what the camera sends from its own ffmpeg's input
 * block, and chooses the argv from it: H.265 tagged hvc1, AAC copied, G.711
 * transcoded to AAC (config 'copy' or 'aac') or dropped. And it probes the
 * input for 1 s instead of avformat's 5 s, without losing the audio of the
 * sim's AAC (MPEG-TS) or G.711 (Matroska).
 */

const logger = createLogger({ level: 'silent' });
let root: string;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'camvault-probe-'));
});
afterAll(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

function startCamera(serial: string, videoCodec: SimVideoCodec, audio: SimAudio): Promise<SimCamera> {
  return SimCamera.start({ serial, width: 320, height: 180, fps: 10, gopSeconds: 1, motionEverySec: 0, videoCodec, audio, logger, fontFile: null });
}

function firstWritten(dir: string): boolean {
  try {
    return readdirSync(dir).some((n) => n.endsWith('.mp4') && statSync(join(dir, n)).size > 0);
  } catch {
    return false;
  }
}

/** ffmpeg with the recorder's argv and the given probe: ms from launch to the first byte of a segment. */
async function timeToFirstWrite(camera: SimCamera, name: string, probe: InputProbe): Promise<number> {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  const args = buildRecorderArgs({ input: camera.streamUrl, segmentSeconds: 2, dir, runId: newRunId(Date.now()), probe });
  const started = Date.now();
  const child = spawn(ffmpegPath, args, { stdio: ['ignore', 'ignore', 'ignore'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await waitFor(() => firstWritten(dir), 20_000, 'the first segment bytes');
    return Date.now() - started;
  } finally {
    child.kill('SIGKILL');
    await exited;
  }
}

interface Recorded {
  segments: SegmentClosed[];
  inputs: InputDescribed[];
  runs: (RunStarted & { at: number })[];
  /** ms from the launch of the run that recorded to its first segment bytes */
  firstWriteMs: number;
}

async function record(camera: SimCamera, name: string, audio: AudioMode, count = 2): Promise<Recorded> {
  const dir = join(root, name);
  const rec = new Recorder({ ffmpegPath, input: camera.streamUrl, dir, segmentSeconds: 2, audio, logger, restart: { minDelayMs: 200 }, pollMs: 100 });
  const out: Recorded = { segments: [], inputs: [], runs: [], firstWriteMs: 0 };
  rec.on('segment', (s: SegmentClosed) => out.segments.push(s));
  rec.on('input', (i: InputDescribed) => out.inputs.push(i));
  rec.on('run-start', (r: RunStarted) => out.runs.push({ ...r, at: Date.now() }));
  try {
    rec.start();
    await waitFor(() => firstWritten(dir), 20_000, 'the first segment bytes');
    out.firstWriteMs = Date.now() - (out.runs[out.runs.length - 1] as { at: number }).at;
    await waitFor(() => out.segments.length >= count, 20_000, `${count} segments`);
  } finally {
    await rec.stop();
  }
  return out;
}

async function expectTracks(segments: SegmentClosed[], codecs: string[]): Promise<void> {
  for (const s of segments) {
    const tracks = await readMp4Tracks(s.path);
    expect(tracks.map((t) => t.codec), s.path).toEqual(codecs);
    expect(s.tracks).toEqual(codecs);
    expect(s.hasVideo).toBe(true);
    expect((await decode(s.path)).errors, s.path).toEqual([]);
  }
}

describe('the recorder reads the input from its own ffmpeg and records each codec the right way', () => {
  it('H.264 + AAC over MPEG-TS: first written within ~2.5 s of launch instead of 5–6.5 s, audio copied, no relaunch', async () => {
    const camera = await startCamera('SIMPRB000001', 'h264', 'aac');
    try {
      const defaults = await timeToFirstWrite(camera, 'defaults', THOROUGH_PROBE);
      const fast = await timeToFirstWrite(camera, 'fast', FAST_PROBE);
      const r = await record(camera, 'h264-aac', 'copy');
      console.log(`first segment bytes after launch, MPEG-TS H.264 + AAC: avformat defaults ${defaults} ms, recorder's probe ${fast} ms (ffmpeg alone), ${r.firstWriteMs} ms (Recorder)`);
      expect(defaults).toBeGreaterThan(4000);
      expect(fast).toBeLessThan(3500);
      expect(r.firstWriteMs).toBeLessThan(3500);
      expect(r.runs).toHaveLength(1);
      expect(r.inputs[0]).toMatchObject({ relaunch: false, plan: { videoCodec: 'h264', audio: 'copy', thoroughProbe: false } });
      expect(r.inputs[0]?.input.streams.map((s) => s.codec)).toEqual(['h264', 'aac']);
      await expectTracks(r.segments, ['avc1', 'mp4a']);
    } finally {
      await camera.stop();
    }
  });

  it("H.265 + G.711 A-law over Matroska, audio 'copy': relaunched once, then hvc1 video and AAC audio (G.711 cannot be copied into MP4)", async () => {
    const camera = await startCamera('SIMPRB000002', 'h265', 'pcm_alaw');
    try {
      const r = await record(camera, 'h265-alaw', 'copy');
      console.log(`first segment bytes after the (second) launch, Matroska H.265 + G.711: ${r.firstWriteMs} ms`);
      expect(r.firstWriteMs).toBeLessThan(3500);
      expect(r.inputs[0]).toMatchObject({ relaunch: true, plan: { videoCodec: 'h265', audio: 'transcode' } });
      expect(r.runs).toHaveLength(2);
      expect(r.inputs.slice(1).every((i) => !i.relaunch)).toBe(true);
      // nothing of the relaunched run stays behind
      expect(r.segments.every((s) => s.runId === r.runs[1]?.runId)).toBe(true);
      expect(readdirSync(join(root, 'h265-alaw')).filter((n) => n.startsWith(r.runs[0]?.runId as string))).toEqual([]);
      await expectTracks(r.segments, ['hvc1', 'mp4a']);
    } finally {
      await camera.stop();
    }
  });

  it("H.265 + AAC over MPEG-TS with audio 'aac' copies the AAC, and 'drop' records video alone", async () => {
    const camera = await startCamera('SIMPRB000003', 'h265', 'aac');
    try {
      const [aac, drop] = await Promise.all([record(camera, 'h265-aac', 'aac'), record(camera, 'h265-drop', 'drop')]);
      expect(aac.inputs.at(-1)?.plan).toEqual({ videoCodec: 'h265', audio: 'copy', thoroughProbe: false });
      await expectTracks(aac.segments, ['hvc1', 'mp4a']);
      expect(drop.inputs.at(-1)?.plan).toEqual({ videoCodec: 'h265', audio: 'drop', thoroughProbe: false });
      await expectTracks(drop.segments, ['hvc1']);
    } finally {
      await camera.stop();
    }
  });
});
