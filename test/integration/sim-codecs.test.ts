import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildRecorderArgs, newRunId, segmentListPath, type AudioMode, type InputVideoCodec } from '../../agent/recorder/ffmpeg-args.js';
import { readMp4Tracks } from '../../agent/recorder/mp4-boxes.js';
import { parseSegmentListLine } from '../../agent/recorder/segment-list.js';
import { SimCamera, simContainer, type SimAudio, type SimVideoCodec } from '../../firmware-sim/camera.js';
import { clusterStartsWithKeyframe, readVint, videoTrackNumber } from '../../firmware-sim/mkv-fanout.js';
import { parsePatPmtPid, parsePmtVideoPid, readPacketHeader, TS_PACKET_SIZE } from '../../firmware-sim/ts-fanout.js';
import { createLogger } from '../../shared/log.js';
import { decode, ffmpegPath, waitFor } from '../helpers/media.js';

/**
 * The simulator sends what real cameras send (H.265, G.711), and the
 * recorder's argv turns each into MP4 segments a browser plays: video copied
 * (tagged hvc1 when H.265), audio copied when AAC, transcoded to AAC when
 * G.711, or dropped. Low CPU: 320x180 at 10 fps, 1 s GOP.
 */

const logger = createLogger({ level: 'silent' });
let root: string;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'camvault-sim-codecs-'));
});
afterAll(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

function startCamera(serial: string, videoCodec: SimVideoCodec, audio: SimAudio): Promise<SimCamera> {
  return SimCamera.start({ serial, width: 320, height: 180, fps: 10, gopSeconds: 1, motionEverySec: 0, videoCodec, audio, logger, fontFile: null });
}

interface Recording {
  segments: string[];
  stderr: string;
}

function listedSegments(dir: string, runId: string): string[] {
  let list: string;
  try {
    list = readFileSync(segmentListPath(dir, runId), 'utf8');
  } catch {
    return [];
  }
  return list
    .split('\n')
    .map(parseSegmentListLine)
    .filter((e) => e !== undefined)
    .map((e) => join(dir, e.filename));
}

/**
 * Runs the recorder's ffmpeg on the camera until it has closed `count`
 * segments, stops it with SIGINT (which closes one more), and returns them.
 * With the recorder's 1 s probe the bundled ffmpeg writes its first bytes
 * 1.4–2.5 s after launch from MPEG-TS (5.4–6.4 s with avformat's defaults),
 * and about 1 s after from Matroska.
 */
async function record(camera: SimCamera, name: string, audio: AudioMode, videoCodec: InputVideoCodec, count: number): Promise<Recording> {
  const dir = join(root, name);
  mkdirSync(dir);
  const runId = newRunId(Date.now());
  const args = buildRecorderArgs({ input: camera.streamUrl, segmentSeconds: 2, dir, runId, audio, videoCodec });
  const child = spawn(ffmpegPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (c: string) => (stderr += c));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await waitFor(() => listedSegments(dir, runId).length >= count || child.exitCode !== null, 25_000, `${count} segments`);
  } finally {
    child.kill('SIGINT');
    await exited;
  }
  return { segments: listedSegments(dir, runId), stderr };
}

describe('simulated cameras with real-camera codecs, recorded with the recorder argv', () => {
  const cases: { name: string; serial: string; video: SimVideoCodec; audio: SimAudio; recordings: { audio: AudioMode; tracks: string[] }[] }[] = [
    { name: 'H.264 + AAC', serial: 'SIMCODEC0001', video: 'h264', audio: 'aac', recordings: [{ audio: 'copy', tracks: ['avc1', 'mp4a'] }] },
    {
      name: 'H.265 + G.711 A-law',
      serial: 'SIMCODEC0002',
      video: 'h265',
      audio: 'pcm_alaw',
      recordings: [
        { audio: 'aac', tracks: ['hvc1', 'mp4a'] },
        { audio: 'drop', tracks: ['hvc1'] },
      ],
    },
    { name: 'H.265 + G.711 µ-law', serial: 'SIMCODEC0003', video: 'h265', audio: 'pcm_mulaw', recordings: [{ audio: 'aac', tracks: ['hvc1', 'mp4a'] }] },
  ];

  for (const c of cases) {
    it(`${c.name} (served as ${simContainer(c.audio)}): segments hold ${c.recordings.map((r) => `${r.tracks.join('+')} with audio '${r.audio}'`).join(', and ')}, and decode cleanly`, async () => {
      const camera = await startCamera(c.serial, c.video, c.audio);
      try {
        // two recorders at once on one camera, where a case has two: the fan-out serves both
        const recordings = await Promise.all(c.recordings.map((r) => record(camera, `${c.serial}-${r.audio}`, r.audio, c.video, 2)));
        for (const [i, rec] of recordings.entries()) {
          const want = c.recordings[i] as { audio: AudioMode; tracks: string[] };
          expect(rec.segments.length, rec.stderr).toBeGreaterThanOrEqual(3);
          for (const [j, path] of rec.segments.entries()) {
            const tracks = await readMp4Tracks(path);
            expect(tracks.map((t) => t.codec)).toEqual(want.tracks);
            expect(tracks.map((t) => t.handler)).toEqual(want.tracks.length === 2 ? ['vide', 'soun'] : ['vide']);
            const d = await decode(path);
            expect(d.errors, path).toEqual([]);
            expect(d.code).toBe(0);
            // the segment SIGINT closed may be a fraction of a second
            expect(d.frames).toBeGreaterThanOrEqual(j < rec.segments.length - 1 ? 15 : 1);
          }
        }
      } finally {
        await camera.stop();
      }
    });
  }
});

function open(url: string): { socket: Socket; data: () => Buffer; closed: () => boolean } {
  const u = new URL(url);
  const chunks: Buffer[] = [];
  let closed = false;
  const socket = connect(Number(u.port), u.hostname);
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('error', () => undefined);
  socket.on('close', () => (closed = true));
  return { socket, data: () => Buffer.concat(chunks), closed: () => closed };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** MPEG-TS that starts with PAT, PMT and the first packet of a keyframe. */
function expectTsCleanStart(ts: Buffer): void {
  expect(ts.length).toBeGreaterThan(3 * TS_PACKET_SIZE);
  expect(readPacketHeader(ts, 0).pid).toBe(0);
  const pmtPid = parsePatPmtPid(ts, 0);
  expect(readPacketHeader(ts, TS_PACKET_SIZE).pid).toBe(pmtPid);
  const videoPid = parsePmtVideoPid(ts, TS_PACKET_SIZE);
  expect(readPacketHeader(ts, 2 * TS_PACKET_SIZE)).toMatchObject({ pid: videoPid, payloadUnitStart: true, randomAccess: true });
}

/** The Tracks element of a Matroska stream's header, found by a plain search (it sits before the first Cluster). */
function mkvVideoTrack(stream: Buffer): number | undefined {
  const at = stream.indexOf(Buffer.from([0x16, 0x54, 0xae, 0x6b]));
  return at < 0 ? undefined : videoTrackNumber(stream.subarray(at));
}

describe('a frozen camera', () => {
  for (const [video, audio] of [
    ['h265', 'aac'],
    ['h264', 'pcm_mulaw'],
  ] as const) {
    it(`stall() keeps viewers connected and sends nothing; resume() restarts at a keyframe (${video} + ${audio}, ${simContainer(audio)})`, async () => {
      const camera = await startCamera(video === 'h265' ? 'SIMSTALL0001' : 'SIMSTALL0002', video, audio);
      try {
        const viewer = open(camera.streamUrl);
        await waitFor(() => viewer.data().length > 20_000, 10_000, 'the stream to flow');
        camera.stall();
        expect(camera.stalled).toBe(true);
        // what was already in flight arrives; then nothing, for 2.5 s
        await sleep(300);
        const frozenAt = viewer.data().length;
        const late = open(camera.streamUrl);
        await sleep(2500);
        expect(viewer.data().length).toBe(frozenAt);
        expect(late.data().length).toBe(0);
        expect(viewer.closed()).toBe(false);
        expect(late.closed()).toBe(false);
        expect(camera.viewerCount).toBe(2);

        camera.resume();
        expect(camera.stalled).toBe(false);
        await waitFor(() => viewer.data().length > frozenAt + 20_000 && late.data().length > 20_000, 10_000, 'data after resume');
        const whole = viewer.data();
        const after = whole.subarray(frozenAt);
        if (simContainer(audio) === 'mpegts') {
          // both restart at a keyframe with PAT and PMT in front, and decode on their own
          expectTsCleanStart(after);
          expectTsCleanStart(late.data());
          expect((await decode(after, { format: 'mpegts' })).errors).toEqual([]);
        } else {
          // Matroska: the header came once; the stream goes on with a Cluster that opens on a keyframe
          expect(after.subarray(0, 4).equals(Buffer.from([0x1f, 0x43, 0xb6, 0x75]))).toBe(true);
          const track = mkvVideoTrack(whole) as number;
          expect(track).toBeGreaterThan(0);
          const size = readVint(after, 4) as { value: number; length: number };
          expect(clusterStartsWithKeyframe(after.subarray(0, 4 + size.length + size.value), track)).toBe(true);
          // the late viewer got the header first, then a keyframe Cluster
          expect(late.data().subarray(0, 4).equals(Buffer.from([0x1a, 0x45, 0xdf, 0xa3]))).toBe(true);
          expect((await decode(late.data(), { format: 'matroska' })).errors).toEqual([]);
          // and the frozen viewer's whole stream, with its gap, decodes too
          expect((await decode(whole, { format: 'matroska' })).errors).toEqual([]);
        }
        viewer.socket.destroy();
        late.socket.destroy();
      } finally {
        await camera.stop();
      }
    });
  }
});
