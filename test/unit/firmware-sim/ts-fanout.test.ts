import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import {
  parsePatPmtPid,
  parsePmtVideoPid,
  readPacketHeader,
  TS_PACKET_SIZE,
  TsFanout,
  TsPacketizer,
  type ViewerSocket,
} from '../../../firmware-sim/ts-fanout.js';

function packet(head: number[], fill = 0xff): Buffer {
  const b = Buffer.alloc(TS_PACKET_SIZE, fill);
  Buffer.from(head).copy(b);
  return b;
}

// PAT: program 1 → PMT on PID 0x1000
const PAT = packet([0x47, 0x40, 0x00, 0x10, 0x00, 0x00, 0xb0, 13, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01, 0xf0, 0x00, 1, 2, 3, 4]);
// PMT on 0x1000: one H.264 stream (type 0x1b) on PID 0x100
const PMT = packet([0x47, 0x50, 0x00, 0x10, 0x00, 0x02, 0xb0, 18, 0x00, 0x01, 0xc1, 0x00, 0x00, 0xe1, 0x00, 0xf0, 0x00, 0x1b, 0xe1, 0x00, 0xf0, 0x00, 1, 2, 3, 4]);
// video PES start with adaptation field, random_access_indicator set: a keyframe
const KEY = packet([0x47, 0x41, 0x00, 0x30, 0x07, 0x50, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0x01, 0xe0], 0xaa);
// video PES start without random access: a P frame
const PFRAME = packet([0x47, 0x41, 0x00, 0x10, 0x00, 0x00, 0x01, 0xe0], 0xbb);
// continuation of a PES
const CONT = packet([0x47, 0x01, 0x00, 0x10], 0xcc);

class FakeViewer extends EventEmitter {
  chunks: Buffer[] = [];
  writableLength = 0;
  remoteAddress = '127.0.0.1';
  remotePort = 1;
  destroyed = false;
  write(b: Buffer): boolean {
    this.chunks.push(Buffer.from(b));
    return true;
  }
  destroy(): this {
    this.destroyed = true;
    this.emit('close');
    return this;
  }
  resume(): this {
    return this;
  }
  get data(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

function feed(f: TsFanout, data: Buffer, chunkSize: number): void {
  for (let i = 0; i < data.length; i += chunkSize) f.push(data.subarray(i, i + chunkSize));
}

describe('MPEG-TS packet parsing', () => {
  it('reads PIDs, payload_unit_start and random_access_indicator', () => {
    expect(readPacketHeader(KEY, 0)).toMatchObject({ pid: 0x100, payloadUnitStart: true, randomAccess: true });
    expect(readPacketHeader(PFRAME, 0)).toMatchObject({ pid: 0x100, payloadUnitStart: true, randomAccess: false });
    expect(readPacketHeader(CONT, 0)).toMatchObject({ pid: 0x100, payloadUnitStart: false });
  });

  it('finds the PMT PID in the PAT and the video PID in the PMT', () => {
    expect(parsePatPmtPid(PAT, 0)).toBe(0x1000);
    expect(parsePmtVideoPid(PMT, 0)).toBe(0x100);
  });

  it('cuts any chunking back into whole packets and finds sync again after garbage', () => {
    const p = new TsPacketizer();
    const stream = Buffer.concat([PAT, PMT, KEY, CONT]);
    const out: Buffer[] = [];
    for (let i = 0; i < stream.length; i += 77) out.push(p.push(stream.subarray(i, i + 77)));
    expect(Buffer.concat(out).equals(stream)).toBe(true);
    const q = new TsPacketizer();
    const withJunk = Buffer.concat([Buffer.from([1, 2, 3, 0x47, 9]), PAT, PMT]);
    expect(q.push(withJunk).equals(Buffer.concat([PAT, PMT]))).toBe(true);
    expect(q.dropped).toBe(5);
  });
});

describe('a viewer joining mid-stream', () => {
  it('gets PAT and PMT first and then the stream from the next keyframe, whatever the chunking', () => {
    for (const chunk of [1, 100, 188, 500, 4096]) {
      const f = new TsFanout();
      const early = new FakeViewer();
      f.add(early as unknown as ViewerSocket);
      const gop1 = Buffer.concat([PAT, PMT, KEY, CONT, PFRAME, CONT]);
      const gop2 = Buffer.concat([PAT, PMT, KEY, CONT, PFRAME]);
      feed(f, Buffer.concat([PAT, PMT, PFRAME, CONT]), chunk); // the viewer joins mid-GOP
      const late = new FakeViewer();
      f.add(late as unknown as ViewerSocket);
      feed(f, gop1, chunk);
      feed(f, gop2, chunk);
      // the early viewer started at the first keyframe it saw, with PAT and PMT in front
      expect(early.data.equals(Buffer.concat([PAT, PMT, KEY, CONT, PFRAME, CONT, gop2]))).toBe(true);
      // the late one too: its data begins at a packet boundary with PAT, PMT, keyframe
      expect(late.data.subarray(0, 3 * TS_PACKET_SIZE).equals(Buffer.concat([PAT, PMT, KEY]))).toBe(true);
      expect(late.data.length % TS_PACKET_SIZE).toBe(0);
    }
  });

  it('a slow viewer stops receiving instead of buffering without bound, and resumes at a keyframe', () => {
    const stalls: number[] = [];
    const f = new TsFanout({ maxBufferedBytes: 1000, onViewerStall: (_r, n) => stalls.push(n) });
    const v = new FakeViewer();
    f.add(v as unknown as ViewerSocket);
    f.push(Buffer.concat([PAT, PMT, KEY, CONT]));
    const before = v.data.length;
    v.writableLength = 5000; // the socket is not draining
    f.push(Buffer.concat([CONT, CONT]));
    f.push(Buffer.concat([PFRAME, CONT]));
    expect(v.data.length).toBe(before);
    expect(stalls).toEqual([5000]);
    v.writableLength = 0; // drained
    f.push(Buffer.concat([PFRAME])); // not a keyframe: still waiting
    expect(v.data.length).toBe(before);
    f.push(Buffer.concat([PAT, PMT, KEY, CONT]));
    expect(v.data.subarray(before).equals(Buffer.concat([PAT, PMT, KEY, CONT]))).toBe(true);
  });

  it('an encoder restart disconnects viewers so they start over cleanly', () => {
    const f = new TsFanout();
    const v = new FakeViewer();
    f.add(v as unknown as ViewerSocket);
    f.push(Buffer.concat([PAT, PMT, KEY]));
    f.reset();
    expect(v.destroyed).toBe(true);
    expect(f.viewerCount).toBe(0);
  });
});

// PMT on 0x1000 listing AAC (0x0f) on PID 0x101 first, then H.265 (0x24) on PID 0x100
const PMT_AV = packet([0x47, 0x50, 0x00, 0x10, 0x00, 0x02, 0xb0, 23, 0x00, 0x01, 0xc1, 0x00, 0x00, 0xe1, 0x00, 0xf0, 0x00, 0x0f, 0xe1, 0x01, 0xf0, 0x00, 0x24, 0xe1, 0x00, 0xf0, 0x00, 1, 2, 3, 4]);
// an audio PES start: ffmpeg sets random_access_indicator on those too
const AUDIO = packet([0x47, 0x41, 0x01, 0x30, 0x07, 0x50, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0x01, 0xc0], 0xdd);
const AUDIO_CONT = packet([0x47, 0x01, 0x01, 0x10], 0xde);

describe('a stream with audio and H.265 video', () => {
  it('finds the H.265 video PID after an audio stream in the PMT', () => {
    expect(parsePmtVideoPid(PMT_AV, 0)).toBe(0x100);
  });

  it('starts a viewer at a video keyframe, never at an audio packet marked random access', () => {
    const f = new TsFanout();
    const v = new FakeViewer();
    f.add(v as unknown as ViewerSocket);
    expect(f.push(Buffer.concat([PAT, PMT_AV, AUDIO, AUDIO_CONT, PFRAME]))).toBe(0);
    expect(v.data.length).toBe(0);
    expect(f.push(Buffer.concat([AUDIO, KEY, AUDIO_CONT, CONT]))).toBe(1);
    expect(v.data.equals(Buffer.concat([PAT, PMT_AV, KEY, AUDIO_CONT, CONT]))).toBe(true);
  });
});

describe('a frozen camera', () => {
  it('sends nothing while frozen without closing anyone, then resumes each viewer at a keyframe with PAT and PMT', () => {
    const f = new TsFanout();
    const v = new FakeViewer();
    f.add(v as unknown as ViewerSocket);
    f.push(Buffer.concat([PAT, PMT, KEY, CONT]));
    const before = v.data.length;
    f.freeze();
    expect(f.isFrozen).toBe(true);
    const late = new FakeViewer();
    f.add(late as unknown as ViewerSocket);
    f.push(Buffer.concat([PFRAME, CONT, PAT, PMT, KEY, CONT]));
    expect(v.data.length).toBe(before);
    expect(late.data.length).toBe(0);
    expect(v.destroyed || late.destroyed).toBe(false);
    expect(f.viewerCount).toBe(2);
    f.unfreeze();
    f.push(Buffer.concat([PFRAME, CONT])); // mid-GOP: still nothing
    expect(v.data.length).toBe(before);
    f.push(Buffer.concat([PAT, PMT, KEY, CONT]));
    expect(v.data.subarray(before).equals(Buffer.concat([PAT, PMT, KEY, CONT]))).toBe(true);
    expect(late.data.equals(Buffer.concat([PAT, PMT, KEY, CONT]))).toBe(true);
  });
});
