import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SEGMENT_FORMAT_OPTIONS } from '../../agent/recorder/ffmpeg-args.js';
import { parseBoxHeader } from '../../agent/recorder/mp4-boxes.js';
import { salvageSegment, type SalvageResult } from '../../agent/recorder/salvage.js';
import { decode, ffmpegPath } from '../helpers/media.js';

/**
 * Real fragmented MP4 segments, written by the bundled ffmpeg with the
 * recorder's segment options, cut short at many points, with nothing, zeros
 * or garbage after the cut. Whatever salvage keeps must be a prefix of the
 * original made of whole fragments, hold every fragment completed before the
 * cut, and decode without a single error.
 */

let root: string;
const sources = new Map<string, string>();

const SEGMENT_ARGS = ['-f', 'segment', '-segment_time', '10', '-reset_timestamps', '1', '-segment_format', 'mp4', '-segment_format_options', SEGMENT_FORMAT_OPTIONS];
const VIDEO = ['-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=10'];
const SINE = ['-f', 'lavfi', '-i', 'sine=frequency=440:beep_factor=4:sample_rate=16000'];

function ffmpeg(args: string[]): void {
  const r = spawnSync(ffmpegPath, ['-nostdin', '-hide_banner', '-v', 'error', '-y', ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ffmpeg failed: ${r.stderr}`);
}

/** One segment of `seconds` written by the segment muxer; returns its path. */
function segment(name: string, inputArgs: string[], codecArgs: string[], seconds = 8): string {
  ffmpeg([...inputArgs, '-t', String(seconds), ...codecArgs, ...SEGMENT_ARGS, join(root, `${name}_%03d.mp4`)]);
  return join(root, `${name}_000.mp4`);
}

interface Layout {
  /** end of the moov: cuts before it leave no usable header */
  headEnd: number;
  fragments: { start: number; mdatStart: number; end: number }[];
  mfra?: { start: number; end: number };
  size: number;
}

function layout(buf: Buffer): Layout {
  const out: Layout = { headEnd: 0, fragments: [], size: buf.length };
  let off = 0;
  while (off < buf.length) {
    const h = parseBoxHeader(buf, off);
    if (!h) throw new Error(`bad box at ${off}`);
    if (h.type === 'moov') out.headEnd = h.end;
    if (h.type === 'moof') out.fragments.push({ start: h.start, mdatStart: h.end, end: 0 });
    if (h.type === 'mdat') (out.fragments[out.fragments.length - 1] as { end: number }).end = h.end;
    if (h.type === 'mfra') out.mfra = { start: h.start, end: h.end };
    off = h.end;
  }
  return out;
}

/** Rewrites every mdat with a 64-bit largesize header, moving each trun's data_offset by the 8 bytes added. */
function withLargesizeMdats(buf: Buffer): Buffer {
  const parts: Buffer[] = [];
  let off = 0;
  while (off < buf.length) {
    const h = parseBoxHeader(buf, off) as NonNullable<ReturnType<typeof parseBoxHeader>>;
    const box = Buffer.from(buf.subarray(h.start, h.end));
    if (h.type === 'moof') {
      for (const trun of findAll(box, ['traf', 'trun'])) {
        if (box.readUInt32BE(trun + 8) & 0x1) box.writeInt32BE(box.readInt32BE(trun + 16) + 8, trun + 16);
      }
      parts.push(box);
    } else if (h.type === 'mdat') {
      const head = Buffer.alloc(16);
      head.writeUInt32BE(1, 0);
      head.write('mdat', 4, 'latin1');
      head.writeBigUInt64BE(BigInt(box.length - 8 + 16), 8);
      parts.push(head, box.subarray(8));
    } else if (h.type !== 'mfra') {
      // mfra points at moof offsets that moved; it is optional, so leave it out
      parts.push(box);
    }
    off = h.end;
  }
  return Buffer.concat(parts);
}

/** Offsets of the boxes at `path` (types, one level each) below the box in `box`. */
function findAll(box: Buffer, path: string[]): number[] {
  const [type, ...rest] = path;
  const found: number[] = [];
  for (let off = 8; off < box.length; ) {
    const h = parseBoxHeader(box, off) as NonNullable<ReturnType<typeof parseBoxHeader>>;
    if (h.type === type) {
      if (rest.length === 0) found.push(off);
      else found.push(...findAll(box.subarray(off, h.end), rest).map((o) => o + off));
    }
    off = h.end;
  }
  return found;
}

/** Deterministic random numbers (mulberry32), so every run cuts at the same places. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Tail = 'none' | 'zeros' | 'garbage';

/** The cut points tried on a file: each fragment's edges and insides, the head, the mfra, and random ones. */
function cutPoints(l: Layout, rand: () => number): number[] {
  const cuts = new Set<number>([0, 5, 20, Math.floor(l.headEnd / 2), l.headEnd, l.headEnd + 3]);
  for (const f of l.fragments) {
    for (const c of [f.start, f.start + 3, f.start + 9, Math.floor((f.start + f.mdatStart) / 2), f.mdatStart, f.mdatStart + 4]) cuts.add(c);
    for (const c of [f.mdatStart + 12, Math.floor((f.mdatStart + f.end) / 2), f.end - 40, f.end - 2, f.end - 1, f.end]) cuts.add(c);
  }
  if (l.mfra) cuts.add(l.mfra.start + 10).add(l.mfra.end - 1);
  for (let i = 0; i < 8; i += 1) cuts.add(l.headEnd + Math.floor(rand() * (l.size - l.headEnd)));
  return [...cuts].filter((c) => c >= 0 && c < l.size).sort((a, b) => a - b);
}

interface Expected {
  fragments: number;
  keptBytes: number;
}

function expected(l: Layout, cut: number, tail: Tail): Expected | 'no-head' {
  if (cut < l.headEnd) return 'no-head';
  let complete = l.fragments.filter((f) => f.end <= cut).length;
  // Garbage right after the last complete fragment (no whole box header of the
  // next one survives) casts doubt on that fragment too: it is dropped.
  const last = l.fragments[complete - 1];
  if (tail === 'garbage' && last && cut < last.end + 8) complete -= 1;
  return { fragments: complete, keptBytes: complete > 0 ? (l.fragments[complete - 1] as { end: number }).end : 0 };
}

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'camvault-salvage-'));
  // H.264 High profile (CABAC) with a 2.5 s GOP: fragments are cut by frag_duration, not only at keyframes
  sources.set('h264', segment('h264', VIDEO, ['-c:v', 'libx264', '-preset', 'veryfast', '-g', '25', '-b:v', '300k']));
  // H.264 + AAC: audio samples interleaved in every mdat, after the video's
  sources.set('h264+aac', segment('h264aac', [...VIDEO, ...SINE], ['-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-g', '10', '-c:a', 'aac', '-b:a', '32k']));
  // H.265 + AAC the way the recorder gets them: a camera's MPEG-TS copied into MP4, tagged hvc1
  const ts = join(root, 'h265.ts');
  ffmpeg([...VIDEO, ...SINE, '-t', '8', '-c:v', 'libx265', '-preset', 'ultrafast', '-x265-params', 'keyint=10:min-keyint=10:scenecut=0:open-gop=0:repeat-headers=1:log-level=error', '-c:a', 'aac', '-b:a', '32k', '-f', 'mpegts', ts]);
  sources.set('h265+aac from MPEG-TS', segment('h265', ['-i', ts], ['-map', '0', '-c', 'copy', '-tag:v', 'hvc1'], 100));
  const large = join(root, 'largesize.mp4');
  writeFileSync(large, withLargesizeMdats(readFileSync(sources.get('h264') as string)));
  sources.set('h264 with 64-bit mdat sizes', large);
});

afterAll(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('salvage of real segments', () => {
  it('reports a segment ffmpeg closed as intact and leaves it untouched', async () => {
    for (const [name, src] of sources) {
      const path = join(root, 'untouched.mp4');
      copyFileSync(src, path);
      const before = statSync(path);
      const result = await salvageSegment(path);
      const l = layout(readFileSync(src));
      expect(result, name).toEqual({ status: 'intact', keptBytes: before.size, originalBytes: before.size, fragmentsKept: l.fragments.length });
      expect(statSync(path).mtimeMs).toBe(before.mtimeMs);
      expect(readFileSync(path).equals(readFileSync(src))).toBe(true);
    }
  });

  it('a segment rewritten with 64-bit mdat sizes decodes, so the largesize test input is valid', async () => {
    const d = await decode(sources.get('h264 with 64-bit mdat sizes') as string);
    expect(d.errors).toEqual([]);
    expect(d.frames).toBe(80);
  });

  for (const tail of ['none', 'zeros', 'garbage'] as const) {
    it(`keeps every fragment completed before a cut, and only whole fragments that decode cleanly (cut + ${tail})`, async () => {
      const rand = prng(tail === 'none' ? 1 : tail === 'zeros' ? 2 : 3);
      const decoded = new Map<string, number>();
      let cuts = 0;
      let fragmentsBefore = 0;
      let fragmentsKept = 0;
      for (const [name, src] of sources) {
        const original = readFileSync(src);
        const l = layout(original);
        for (const cut of cutPoints(l, rand)) {
          let extra = Buffer.alloc(0);
          if (tail === 'zeros') {
            // sometimes exactly to the end of the fragment being written, where only the tail check can tell
            const open = l.fragments.find((f) => f.start < cut && f.end > cut);
            extra = Buffer.alloc(open && rand() < 0.3 ? open.end - cut : 1 + Math.floor(rand() * 20_000));
          } else if (tail === 'garbage') {
            let n = 16 + Math.floor(rand() * 20_000);
            // garbage ending exactly where a fragment ends is the one case nothing but a decoder can see
            if (l.fragments.some((f) => f.end === cut + n)) n += 1;
            extra = Buffer.from(Array.from({ length: n }, () => Math.floor(rand() * 256)));
          }
          const damaged = Buffer.concat([original.subarray(0, cut), extra]);
          const path = join(root, 'cut.mp4');
          writeFileSync(path, damaged);
          const result = await salvageSegment(path);
          const want = expected(l, cut, tail);
          const what = `${name}, cut at ${cut} of ${l.size}, ${extra.length} bytes of ${tail}`;
          const after = readFileSync(path);
          cuts += 1;
          if (want === 'no-head') {
            expect(['unreadable', 'empty'], what).toContain(result.status);
            expect(result.fragmentsKept, what).toBe(0);
            expect(after.equals(damaged), what).toBe(true);
            continue;
          }
          fragmentsBefore += l.fragments.filter((f) => f.end <= cut).length;
          fragmentsKept += result.fragmentsKept;
          const status = want.fragments === 0 ? 'empty' : want.keptBytes === damaged.length ? 'intact' : 'truncated';
          expect(result, what).toMatchObject<Partial<SalvageResult>>({
            status,
            fragmentsKept: want.fragments,
            keptBytes: want.keptBytes,
            originalBytes: damaged.length,
          });
          if (status === 'empty') {
            expect(after.equals(damaged), what).toBe(true);
            continue;
          }
          expect(after.length, what).toBe(want.keptBytes);
          expect(after.equals(original.subarray(0, want.keptBytes)), what).toBe(true);
          // every kept file is a prefix of the original: decoding each distinct one once proves them all
          const key = `${name}:${want.keptBytes}`;
          if (!decoded.has(key)) {
            const d = await decode(path);
            expect(d.errors, what).toEqual([]);
            expect(d.frames, what).toBeGreaterThan(0);
            decoded.set(key, d.frames);
          }
        }
      }
      console.log(`salvage, cut + ${tail}: ${cuts} cuts, ${fragmentsKept} of ${fragmentsBefore} fragments completed before the cuts kept, ${decoded.size} distinct files decoded`);
    });
  }
});
