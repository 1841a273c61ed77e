import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readMp4Tracks } from '../../../agent/recorder/mp4-boxes.js';
import { salvageSegment } from '../../../agent/recorder/salvage.js';

/**
 * Salvage on small hand-built fragmented MP4s, for the layouts and damage a
 * real ffmpeg rarely produces on demand. The real-segment cuts are in
 * test/integration/salvage.test.ts.
 */

function box(type: string, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(8);
  head.writeUInt32BE(8 + body.length, 0);
  head.write(type, 4, 'latin1');
  return Buffer.concat([head, body]);
}
function full(type: string, flags: number, ...parts: Buffer[]): Buffer {
  return box(type, u32(flags & 0xffffff), ...parts);
}
function u32(...values: number[]): Buffer {
  const b = Buffer.alloc(4 * values.length);
  values.forEach((v, i) => b.writeUInt32BE(v >>> 0, 4 * i));
  return b;
}

type Codec = 'avc1' | 'hvc1' | 'mp4a';
interface TrackSpec {
  id: number;
  codec: Codec;
  nalLengthSize?: number;
}

function sampleEntry(t: TrackSpec): Buffer {
  const lsm1 = (t.nalLengthSize ?? 4) - 1;
  if (t.codec === 'avc1') return box('avc1', Buffer.alloc(78), box('avcC', Buffer.from([1, 0x64, 0, 0x1f, 0xfc | lsm1, 0xe0])));
  if (t.codec === 'hvc1') {
    const c = Buffer.alloc(23);
    c[0] = 1;
    c[21] = 0x0c | lsm1;
    return box('hvc1', Buffer.alloc(78), box('hvcC', c));
  }
  return box('mp4a', Buffer.alloc(28));
}

function moov(tracks: TrackSpec[]): Buffer {
  const traks = tracks.map((t) =>
    box(
      'trak',
      full('tkhd', 7, u32(0, 0, t.id, 0, 0), Buffer.alloc(60)),
      box(
        'mdia',
        full('mdhd', 0, Buffer.alloc(20)),
        full('hdlr', 0, u32(0), Buffer.from(t.codec === 'mp4a' ? 'soun' : 'vide'), Buffer.alloc(13)),
        box('minf', box('stbl', full('stsd', 0, u32(1), sampleEntry(t)))),
      ),
    ),
  );
  const trexes = tracks.map((t) => full('trex', 0, u32(t.id, 1, 0, 0, 0)));
  return box('moov', full('mvhd', 0, Buffer.alloc(96)), ...traks, box('mvex', ...trexes));
}

const FTYP = box('ftyp', Buffer.from('isom'), u32(512), Buffer.from('isomiso2avc1mp41'));

/** An H.264 (or, with hevc, H.265) NAL unit with its length prefix; the payload ends in its stop bit. */
function nal(payload: number, opts: { hevc?: boolean; lengthSize?: number; header?: number[] } = {}): Buffer {
  const header = opts.header ?? (opts.hevc ? [0x02, 0x01] : [0x41]);
  const body = Buffer.concat([Buffer.from(header), Buffer.alloc(payload, 0xaa), Buffer.from([0x80])]);
  const len = Buffer.alloc(opts.lengthSize ?? 4);
  len.writeUIntBE(body.length, 0, len.length);
  return Buffer.concat([len, body]);
}

/** An AAC-like frame that would break any NAL chain: zeros first, a non-zero last byte. */
function audioFrame(n: number): Buffer {
  const b = Buffer.alloc(n, 0x21);
  b.fill(0, 0, Math.min(4, n - 1));
  b[n - 1] = 0x1c;
  return b;
}

interface TrafSpec {
  trackId: number;
  samples: Buffer[];
}

/**
 * A moof+mdat. 'moof-relative': default-base-is-moof and a data_offset in
 * every trun, as ffmpeg writes. 'implicit': no base flags; only the first trun
 * has a data_offset, later trafs start where the previous one's data ended
 * (ISO/IEC 14496-12 8.8.7.1). `mdatSize` overrides the size written.
 */
function fragment(seq: number, trafs: TrafSpec[], style: 'moof-relative' | 'implicit' = 'moof-relative', largesize = false): Buffer {
  const build = (dataStart: number): Buffer => {
    let offset = dataStart;
    const boxes = trafs.map((t, i) => {
      const withOffset = style === 'moof-relative' || i === 0;
      const trun = full('trun', (withOffset ? 0x1 : 0) | 0x200, u32(t.samples.length), ...(withOffset ? [u32(offset)] : []), ...t.samples.map((s) => u32(s.length)));
      offset += t.samples.reduce((n, s) => n + s.length, 0);
      return box('traf', full('tfhd', style === 'moof-relative' ? 0x20000 : 0, u32(t.trackId)), full('tfdt', 0, u32(0)), trun);
    });
    return box('moof', full('mfhd', 0, u32(seq)), ...boxes);
  };
  const mdatHeader = largesize ? 16 : 8;
  const moofSize = build(0).length;
  const data = Buffer.concat(trafs.flatMap((t) => t.samples));
  const head = Buffer.alloc(mdatHeader);
  if (largesize) {
    head.writeUInt32BE(1, 0);
    head.writeBigUInt64BE(BigInt(mdatHeader + data.length), 8);
  } else {
    head.writeUInt32BE(mdatHeader + data.length, 0);
  }
  head.write('mdat', 4, 'latin1');
  return Buffer.concat([build(moofSize + mdatHeader), head, data]);
}

const VIDEO: TrackSpec = { id: 1, codec: 'avc1' };
const AUDIO: TrackSpec = { id: 2, codec: 'mp4a' };

function videoFragment(seq: number, samples = 3): Buffer {
  return fragment(seq, [{ trackId: 1, samples: Array.from({ length: samples }, (_, i) => Buffer.concat([nal(20 + i), nal(50 + seq)])) }]);
}

let dir: string;
let n = 0;
function file(...parts: Buffer[]): string {
  const path = join(dir, `f${(n += 1)}.mp4`);
  writeFileSync(path, Buffer.concat(parts));
  return path;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'camvault-salvage-unit-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('salvage: files with nothing to play', () => {
  it('calls a file shorter than one box header, or empty, unreadable and leaves it alone', async () => {
    for (const bytes of [Buffer.alloc(0), Buffer.from([0, 0, 0, 24, 0x66])]) {
      const path = file(bytes);
      expect(await salvageSegment(path)).toMatchObject({ status: 'unreadable', keptBytes: 0, originalBytes: bytes.length, fragmentsKept: 0 });
      expect(readFileSync(path).equals(bytes)).toBe(true);
    }
  });

  it('calls a file whose first box runs past its end, or that does not start with ftyp, unreadable', async () => {
    expect((await salvageSegment(file(FTYP.subarray(0, 20)))).status).toBe('unreadable');
    expect((await salvageSegment(file(moov([VIDEO]), FTYP))).status).toBe('unreadable');
    expect((await salvageSegment(file(FTYP, moov([VIDEO]).subarray(0, 100)))).status).toBe('unreadable');
    expect((await salvageSegment(file(Buffer.alloc(5000)))).status).toBe('unreadable');
  });

  it('calls ftyp and moov alone empty (ffprobe accepts it, yet it holds no frame) and leaves it for the caller to drop', async () => {
    const bytes = Buffer.concat([FTYP, moov([VIDEO, AUDIO])]);
    const path = file(bytes);
    expect(await salvageSegment(path)).toEqual(expect.objectContaining({ status: 'empty', keptBytes: 0, originalBytes: bytes.length, fragmentsKept: 0 }));
    expect(readFileSync(path).equals(bytes)).toBe(true);
    // the same with the first moof cut short or a zero-filled tail
    expect((await salvageSegment(file(bytes, videoFragment(1).subarray(0, 30))))).toMatchObject({ status: 'empty', fragmentsKept: 0 });
    expect((await salvageSegment(file(bytes, Buffer.alloc(9000))))).toMatchObject({ status: 'empty', fragmentsKept: 0 });
  });
});

describe('salvage: what it keeps', () => {
  it('reports a complete file intact without touching it', async () => {
    const path = file(FTYP, moov([VIDEO]), videoFragment(1), videoFragment(2));
    const before = statSync(path);
    expect(await salvageSegment(path)).toEqual({ status: 'intact', keptBytes: before.size, originalBytes: before.size, fragmentsKept: 2 });
    expect(statSync(path).mtimeMs).toBe(before.mtimeMs);
  });

  it('cuts after the last whole fragment when the next one runs past the end, and fsyncs the shorter file', async () => {
    const good = Buffer.concat([FTYP, moov([VIDEO]), videoFragment(1), videoFragment(2)]);
    const third = videoFragment(3);
    for (const cut of [1, 7, 8, 40, third.length - 1]) {
      const path = file(good, third.subarray(0, cut));
      const r = await salvageSegment(path);
      expect(r, `cut ${cut}`).toMatchObject({ status: 'truncated', keptBytes: good.length, fragmentsKept: 2 });
      expect(readFileSync(path).equals(good)).toBe(true);
    }
  });

  it('does not truncate in a dry run', async () => {
    const bytes = Buffer.concat([FTYP, moov([VIDEO]), videoFragment(1), Buffer.alloc(100)]);
    const path = file(bytes);
    expect(await salvageSegment(path, { dryRun: true })).toMatchObject({ status: 'truncated', originalBytes: bytes.length });
    expect(readFileSync(path).length).toBe(bytes.length);
  });

  it('stops at the first fragment whose NAL chain is broken: a zero length, a forbidden bit, a length past the sample', async () => {
    const head = Buffer.concat([FTYP, moov([VIDEO]), videoFragment(1)]);
    const broken = [
      Buffer.concat([nal(10), Buffer.from([0, 0, 0, 0])]),
      nal(10, { header: [0xc1] }),
      nal(10, { header: [0x40] }), // nal_unit_type 0: unspecified
      Buffer.concat([nal(10).subarray(0, 3), Buffer.from([200]), nal(10).subarray(4)]),
    ];
    for (const bad of broken) {
      const path = file(head, fragment(2, [{ trackId: 1, samples: [nal(30), bad] }]), videoFragment(3));
      const r = await salvageSegment(path);
      expect(r).toMatchObject({ status: 'truncated', keptBytes: head.length, fragmentsKept: 1 });
    }
  });

  it('stops where the trun sizes do not fill the mdat exactly', async () => {
    const head = Buffer.concat([FTYP, moov([VIDEO]), videoFragment(1)]);
    const f = videoFragment(2);
    const mdatAt = f.indexOf('mdat') - 4;
    const bigger = Buffer.concat([f.subarray(0, mdatAt), u32(f.readUInt32BE(mdatAt) + 4), f.subarray(mdatAt + 4), nal(0).subarray(0, 4)]);
    const r = await salvageSegment(file(head, bigger, videoFragment(3)));
    expect(r).toMatchObject({ status: 'truncated', keptBytes: head.length, fragmentsKept: 1 });
  });

  it('checks only video samples for NAL chains when audio shares the mdat, whichever comes first and however the trafs locate their data', async () => {
    const v = (i: number): Buffer[] => [Buffer.concat([nal(40 + i), nal(7)]), nal(25)];
    const a = (): Buffer[] => [audioFrame(33), audioFrame(21), audioFrame(40)];
    for (const style of ['moof-relative', 'implicit'] as const) {
      const frags = [1, 2, 3].map((i) =>
        fragment(i, i % 2 ? [{ trackId: 1, samples: v(i) }, { trackId: 2, samples: a() }] : [{ trackId: 2, samples: a() }, { trackId: 1, samples: v(i) }], style),
      );
      const path = file(FTYP, moov([VIDEO, AUDIO]), ...frags);
      expect(await salvageSegment(path), style).toMatchObject({ status: 'intact', fragmentsKept: 3 });
      // a video sample broken inside the second fragment is still found
      const bad = fragment(2, [{ trackId: 2, samples: a() }, { trackId: 1, samples: [nal(10, { header: [0x80] })] }], style);
      expect(await salvageSegment(file(FTYP, moov([VIDEO, AUDIO]), frags[0] as Buffer, bad, frags[2] as Buffer)), style).toMatchObject({ fragmentsKept: 1 });
    }
  });

  it('reads 64-bit mdat sizes (size 1 and a largesize)', async () => {
    const good = Buffer.concat([FTYP, moov([VIDEO]), fragment(1, [{ trackId: 1, samples: [nal(30), nal(31)] }], 'moof-relative', true)]);
    expect(await salvageSegment(file(good))).toMatchObject({ status: 'intact', fragmentsKept: 1 });
    const next = fragment(2, [{ trackId: 1, samples: [nal(30)] }], 'moof-relative', true);
    const path = file(good, next.subarray(0, next.length - 3));
    expect(await salvageSegment(path)).toMatchObject({ status: 'truncated', keptBytes: good.length, fragmentsKept: 1 });
  });

  it('follows the NAL length size of avcC and hvcC, and H.265 NAL headers', async () => {
    for (const lengthSize of [1, 2, 4]) {
      const track: TrackSpec = { id: 1, codec: 'avc1', nalLengthSize: lengthSize };
      const frag = fragment(1, [{ trackId: 1, samples: [Buffer.concat([nal(30, { lengthSize }), nal(100, { lengthSize })])] }]);
      expect(await salvageSegment(file(FTYP, moov([track]), frag)), `length size ${lengthSize}`).toMatchObject({ status: 'intact', fragmentsKept: 1 });
    }
    const hevc: TrackSpec = { id: 1, codec: 'hvc1' };
    const good = fragment(1, [{ trackId: 1, samples: [nal(30, { hevc: true })] }]);
    expect(await salvageSegment(file(FTYP, moov([hevc]), good))).toMatchObject({ status: 'intact', fragmentsKept: 1 });
    // nuh_temporal_id_plus1 = 0 is not a valid H.265 NAL header
    const bad = fragment(2, [{ trackId: 1, samples: [nal(30, { hevc: true, header: [0x02, 0x00] })] }]);
    expect(await salvageSegment(file(FTYP, moov([hevc]), good, bad))).toMatchObject({ status: 'truncated', fragmentsKept: 1 });
  });

  it('keeps the last fragment before zeros, but drops it when garbage follows it (the garbage may have begun inside it)', async () => {
    const two = Buffer.concat([FTYP, moov([VIDEO]), videoFragment(1), videoFragment(2)]);
    const one = Buffer.concat([FTYP, moov([VIDEO]), videoFragment(1)]);
    expect(await salvageSegment(file(two, Buffer.alloc(5000)))).toMatchObject({ status: 'truncated', keptBytes: two.length, fragmentsKept: 2 });
    const garbage = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 131 + 7) % 251 || 1));
    expect(await salvageSegment(file(two, garbage))).toMatchObject({ status: 'truncated', keptBytes: one.length, fragmentsKept: 1 });
  });

  it('drops a last fragment whose final NAL unit ends in zeros the earlier ones never had', async () => {
    const head = Buffer.concat([FTYP, moov([VIDEO]), videoFragment(1)]);
    const last = videoFragment(2);
    // the final 3 bytes zeroed: the NAL chain is intact, the payload is not
    const zeroed = Buffer.concat([last.subarray(0, last.length - 3), Buffer.alloc(3)]);
    expect(await salvageSegment(file(head, zeroed))).toMatchObject({ status: 'truncated', keptBytes: head.length, fragmentsKept: 1 });
    // a zero run inside the last fragment's NAL units is a hole too
    const holed = Buffer.from(last);
    holed.fill(0, last.length - 30, last.length - 20);
    expect(await salvageSegment(file(head, holed))).toMatchObject({ fragmentsKept: 1 });
    // an AAC frame ending in 0 at the end of the last fragment
    const av = (frames: Buffer[]): Buffer => fragment(1, [{ trackId: 1, samples: [nal(30)] }, { trackId: 2, samples: frames }]);
    expect(await salvageSegment(file(FTYP, moov([VIDEO, AUDIO]), av([audioFrame(30)]), av([audioFrame(30), Buffer.alloc(20)])))).toMatchObject({ fragmentsKept: 1 });
  });

  it('keeps a complete mfra and cuts whatever follows it', async () => {
    const mfra = box('mfra', full('tfra', 0, u32(1, 0, 0)), full('mfro', 0, u32(8 + 24 + 16)));
    const whole = Buffer.concat([FTYP, moov([VIDEO]), videoFragment(1), mfra]);
    expect(await salvageSegment(file(whole))).toMatchObject({ status: 'intact', fragmentsKept: 1 });
    expect(await salvageSegment(file(whole, Buffer.alloc(64, 0x5a)))).toMatchObject({ status: 'truncated', keptBytes: whole.length, fragmentsKept: 1 });
  });
});

describe('readMp4Tracks', () => {
  it('lists each track with its handler, sample entry and NAL length size', async () => {
    const path = file(FTYP, moov([{ id: 1, codec: 'hvc1', nalLengthSize: 2 }, AUDIO]), videoFragment(1));
    expect(await readMp4Tracks(path)).toEqual([
      { id: 1, handler: 'vide', codec: 'hvc1', nalLengthSize: 2, defaults: { sampleSize: 0, sampleDuration: 0 } },
      { id: 2, handler: 'soun', codec: 'mp4a', defaults: { sampleSize: 0, sampleDuration: 0 } },
    ]);
    await expect(readMp4Tracks(file(FTYP))).rejects.toThrow(/no complete moov/);
  });
});
