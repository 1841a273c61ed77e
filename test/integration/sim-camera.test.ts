import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MotionEvents } from '../../agent/events.js';
import { SimCamera, type MotionEvent } from '../../firmware-sim/camera.js';
import { parsePatPmtPid, parsePmtVideoPid, readPacketHeader, TS_PACKET_SIZE } from '../../firmware-sim/ts-fanout.js';
import { createLogger } from '../../shared/log.js';
import { decode, pidAlive, waitFor } from '../helpers/media.js';

const logger = createLogger({ level: 'silent' });
const SERIAL = 'SIMCAM000001';
let camera: SimCamera;

beforeAll(async () => {
  camera = await SimCamera.start({ serial: SERIAL, width: 320, height: 180, fps: 10, gopSeconds: 1, motionEverySec: 1, logger });
});
afterAll(async () => {
  await camera?.stop();
});

function open(url: string): { socket: Socket; data: () => Buffer } {
  const u = new URL(url);
  const chunks: Buffer[] = [];
  const socket = connect(Number(u.port), u.hostname);
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('error', () => undefined);
  return { socket, data: () => Buffer.concat(chunks) };
}

async function capture(url: string, ms: number): Promise<Buffer> {
  const v = open(url);
  await new Promise((r) => setTimeout(r, ms));
  v.socket.destroy();
  return v.data();
}

/** The first three packets a viewer got must be PAT, PMT and a keyframe's first packet. */
function expectCleanStart(ts: Buffer): void {
  expect(ts.length).toBeGreaterThan(3 * TS_PACKET_SIZE);
  for (let off = 0; off + TS_PACKET_SIZE <= ts.length; off += TS_PACKET_SIZE) expect(ts[off]).toBe(0x47);
  const pat = readPacketHeader(ts, 0);
  expect(pat.pid).toBe(0);
  const pmtPid = parsePatPmtPid(ts, 0);
  expect(readPacketHeader(ts, TS_PACKET_SIZE).pid).toBe(pmtPid);
  const videoPid = parsePmtVideoPid(ts, TS_PACKET_SIZE);
  const key = readPacketHeader(ts, 2 * TS_PACKET_SIZE);
  expect(key).toMatchObject({ pid: videoPid, payloadUnitStart: true, randomAccess: true });
}

describe('simulated camera', () => {
  it('serves a stream on 127.0.0.1 and an event feed on another port', () => {
    expect(camera.serial).toBe(SERIAL);
    expect(camera.streamUrl).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
    expect(camera.eventsUrl).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
    expect(camera.streamUrl).not.toBe(camera.eventsUrl);
  });

  it('a second viewer joining mid-stream starts with PAT, PMT and a keyframe and decodes without errors', async () => {
    const first = open(camera.streamUrl);
    await new Promise((r) => setTimeout(r, 1300)); // the stream is mid-GOP by now
    const second = await capture(camera.streamUrl, 2500);
    expectCleanStart(second);
    const d = await decode(second, { format: 'mpegts' });
    expect(d.errors).toEqual([]);
    expect(d.frames).toBeGreaterThanOrEqual(10);
    // the first viewer kept receiving meanwhile, also from a clean start
    const got = first.data();
    first.socket.destroy();
    expectCleanStart(got);
    expect(got.length).toBeGreaterThan(second.length);
  });

  it('sends motion events as NDJSON lines to every events client, on schedule and on demand', async () => {
    const a = open(camera.eventsUrl);
    const b = open(camera.eventsUrl);
    const emitted: MotionEvent[] = [];
    camera.on('motion', (e: MotionEvent) => emitted.push(e));
    await waitFor(() => a.data().toString().includes('\n'), 3000, 'a scheduled motion event');
    await waitFor(() => camera.eventsClientCount >= 2, 2000, 'both events clients');
    const triggered = camera.triggerMotion(new Date('2026-05-01T10:00:00.000Z'));
    expect(triggered).toEqual({ serial: SERIAL, at: '2026-05-01T10:00:00.000Z' });
    const line = `{"type":"motion","serial":"${SERIAL}","at":"2026-05-01T10:00:00.000Z"}\n`;
    await waitFor(() => a.data().toString().includes(line) && b.data().toString().includes(line), 2000, 'the triggered event on both');
    for (const l of a.data().toString().trim().split('\n')) {
      expect(JSON.parse(l)).toMatchObject({ type: 'motion', serial: SERIAL });
    }
    expect(emitted).toContainEqual(triggered);
    a.socket.destroy();
    b.socket.destroy();
  });

  it('motion from the feed marks the agent segment around it as an event', async () => {
    const events = new MotionEvents({ url: camera.eventsUrl, serial: SERIAL, logger });
    const seen: number[] = [];
    events.on('motion', (m: { at: number }) => seen.push(m.at));
    events.start();
    try {
      await waitFor(() => events.isConnected, 3000, 'the feed');
      camera.triggerMotion();
      await waitFor(() => seen.length > 0, 3000, 'motion to arrive');
      const at = seen[0] as number;
      expect(events.classify(at - 5000, at + 5000)).toBe('event');
      expect(events.classify(at - 60_000, at - 50_000)).toBe('continuous');
    } finally {
      events.stop();
    }
  });

  it('restarts its encoder when it dies, and a viewer that reconnects gets a clean stream', async () => {
    const old = camera.encoderPid as number;
    const viewer = open(camera.streamUrl);
    let closed = false;
    viewer.socket.on('close', () => (closed = true));
    process.kill(old, 'SIGKILL');
    await waitFor(() => camera.encoderPid !== undefined && camera.encoderPid !== old, 10_000, 'a new encoder');
    // viewers of the dead encoder are let go, so they reconnect to fresh timestamps
    await waitFor(() => closed, 5000, 'the old viewer to be disconnected');
    const ts = await capture(camera.streamUrl, 2500);
    expectCleanStart(ts);
    expect((await decode(ts, { format: 'mpegts' })).errors).toEqual([]);
  });

  it('stop() kills its ffmpeg, closes both ports and can be called twice', async () => {
    const pid = camera.encoderPid as number;
    expect(pidAlive(pid)).toBe(true);
    const stopping = camera.stop();
    expect(camera.stop()).toBe(stopping);
    await stopping;
    expect(pidAlive(pid)).toBe(false);
    for (const url of [camera.streamUrl, camera.eventsUrl]) {
      const u = new URL(url);
      const refused = await new Promise<boolean>((resolve) => {
        const s = connect(Number(u.port), u.hostname);
        s.on('connect', () => {
          s.destroy();
          resolve(false);
        });
        s.on('error', () => resolve(true));
      });
      expect(refused).toBe(true);
    }
  });
});
