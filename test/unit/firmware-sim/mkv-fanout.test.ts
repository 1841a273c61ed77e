import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { clusterStartsWithKeyframe, MkvFanout, MkvFormatError, readVint } from '../../../firmware-sim/mkv-fanout.js';
import type { ViewerSocket } from '../../../firmware-sim/viewers.js';

/** An EBML element: id bytes, a size vint (1, 2 or 4 bytes), the payload. */
function el(id: number[], ...payload: (Buffer | number[])[]): Buffer {
  const body = Buffer.concat(payload.map((p) => Buffer.from(p)));
  const n = body.length;
  const size = n < 0x7f ? [0x80 | n] : n < 0x3fff ? [0x40 | (n >> 8), n & 0xff] : [0x10 | (n >>> 24), (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
  return Buffer.concat([Buffer.from(id), Buffer.from(size), body]);
}

const EBML = el([0x1a, 0x45, 0xdf, 0xa3], el([0x42, 0x82], Buffer.from('matroska')));
/** a Segment of unknown size, as ffmpeg writes to a pipe (1-byte form, which the fan-out rewrites) */
const SEGMENT = Buffer.from([0x18, 0x53, 0x80, 0x67, 0xff]);
const SEGMENT_UNKNOWN_8 = Buffer.from([0x18, 0x53, 0x80, 0x67, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
const INFO = el([0x15, 0x49, 0xa9, 0x66], el([0x2a, 0xd7, 0xb1], [0x0f, 0x42, 0x40]));
// track 1 audio (type 2), track 2 video (type 1): the fan-out must read the types, not guess
const TRACKS = el([0x16, 0x54, 0xae, 0x6b], el([0xae], el([0xd7], [1]), el([0x83], [2])), el([0xae], el([0xd7], [2]), el([0x83], [1])));
const HEADER = Buffer.concat([EBML, SEGMENT_UNKNOWN_8, INFO, TRACKS]);

const simpleBlock = (track: number, key: boolean, fill = 0x55): Buffer => el([0xa3], [0x80 | track, 0, 0, key ? 0x80 : 0], Buffer.alloc(200, fill));
const cluster = (...blocks: Buffer[]): Buffer => el([0x1f, 0x43, 0xb6, 0x75], el([0xe7], [0]), ...blocks);

const AUDIO = simpleBlock(1, true, 0x11);
const KEY = simpleBlock(2, true, 0x22);
const DELTA = simpleBlock(2, false, 0x33);
/** a keyframe Cluster that opens with audio, as ffmpeg's often do */
const GOP_A = cluster(AUDIO, KEY, AUDIO, DELTA);
const GOP_B = cluster(KEY, DELTA, AUDIO);
/** a Cluster cut by time or size: its first video block is not a keyframe */
const MID = cluster(AUDIO, DELTA, DELTA);

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

function feed(f: MkvFanout, data: Buffer, chunkSize: number): number {
  let k = 0;
  for (let i = 0; i < data.length; i += chunkSize) k += f.push(data.subarray(i, i + chunkSize));
  return k;
}

describe('EBML parsing', () => {
  it('reads variable-size integers, with and without the length marker, and unknown sizes', () => {
    expect(readVint(Buffer.from([0x81]), 0)).toEqual({ value: 1, length: 1, unknown: false });
    expect(readVint(Buffer.from([0x40, 0x02]), 0)).toEqual({ value: 2, length: 2, unknown: false });
    expect(readVint(Buffer.from([0x1f, 0x43, 0xb6, 0x75]), 0, true)).toMatchObject({ value: 0x1f43b675, length: 4 });
    expect(readVint(SEGMENT_UNKNOWN_8, 4)).toMatchObject({ length: 8, unknown: true });
    expect(readVint(Buffer.from([0x40]), 0)).toBeUndefined();
  });

  it('tells a Cluster that opens on a video keyframe from one that does not, BlockGroups included', () => {
    expect(clusterStartsWithKeyframe(GOP_A, 2)).toBe(true);
    expect(clusterStartsWithKeyframe(MID, 2)).toBe(false);
    const block = (track: number): Buffer => el([0xa1], [0x80 | track, 0, 0, 0], Buffer.alloc(10, 0x44));
    expect(clusterStartsWithKeyframe(cluster(el([0xa0], block(2))), 2)).toBe(true);
    expect(clusterStartsWithKeyframe(cluster(el([0xa0], block(2), el([0xfb], [0xfe]))), 2)).toBe(false);
  });
});

describe('Matroska fan-out', () => {
  it('gives a viewer joining mid-stream the header, then the stream from a keyframe Cluster, whatever the chunking', () => {
    for (const chunk of [1, 7, 100, 333, 4096]) {
      const f = new MkvFanout();
      const early = new FakeViewer();
      f.add(early as unknown as ViewerSocket);
      expect(feed(f, Buffer.concat([EBML, SEGMENT, INFO, TRACKS, MID]), chunk)).toBe(0);
      expect(early.data.length).toBe(0);
      const late = new FakeViewer();
      f.add(late as unknown as ViewerSocket);
      expect(feed(f, Buffer.concat([GOP_A, MID, GOP_B]), chunk)).toBe(2);
      expect(early.data.equals(Buffer.concat([HEADER, GOP_A, MID, GOP_B]))).toBe(true);
      expect(late.data.equals(Buffer.concat([HEADER, GOP_A, MID, GOP_B]))).toBe(true);
      const later = new FakeViewer();
      f.add(later as unknown as ViewerSocket);
      feed(f, Buffer.concat([MID, GOP_B]), chunk);
      expect(later.data.equals(Buffer.concat([HEADER, GOP_B]))).toBe(true);
    }
  });

  it('while frozen sends nothing and closes nobody; then resumes at a keyframe Cluster without repeating the header', () => {
    const f = new MkvFanout();
    const v = new FakeViewer();
    f.add(v as unknown as ViewerSocket);
    f.push(Buffer.concat([EBML, SEGMENT, INFO, TRACKS, GOP_A]));
    const before = v.data.length;
    f.freeze();
    const late = new FakeViewer();
    f.add(late as unknown as ViewerSocket);
    f.push(Buffer.concat([MID, GOP_B]));
    expect(v.data.length).toBe(before);
    expect(late.data.length).toBe(0);
    expect(v.destroyed || late.destroyed).toBe(false);
    f.unfreeze();
    f.push(MID);
    expect(v.data.length).toBe(before);
    f.push(GOP_A);
    expect(v.data.subarray(before).equals(GOP_A)).toBe(true);
    // a viewer that never had the header still gets it first
    expect(late.data.equals(Buffer.concat([HEADER, GOP_A]))).toBe(true);
  });

  it('refuses a stream that is not Matroska, and starts over after reset()', () => {
    const f = new MkvFanout();
    expect(() => f.push(Buffer.from([0x47, 0x40, 0x00, 0x10, 0, 0, 0, 0]))).toThrow(MkvFormatError);
    f.reset();
    const v = new FakeViewer();
    f.add(v as unknown as ViewerSocket);
    f.push(Buffer.concat([EBML, SEGMENT, INFO, TRACKS, GOP_B]));
    expect(v.data.equals(Buffer.concat([HEADER, GOP_B]))).toBe(true);
    f.reset();
    expect(v.destroyed).toBe(true);
    expect(f.viewerCount).toBe(0);
  });
});
