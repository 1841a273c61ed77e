import type { FileHandle } from 'node:fs/promises';
import { isHevc, Mp4FormatError, type Mp4Track } from './mp4-boxes.js';

/**
 * Checks on the samples of an MP4 file that need no decoder, for salvage:
 * whether an H.264/H.265 sample is an intact chain of NAL units, and what the
 * bytes of a NAL unit or an AAC frame say about a hole the writer never filled.
 */

/**
 * Small reads at increasing offsets through one reusable window: NAL headers a
 * few bytes long, often close together, in files far bigger than memory.
 */
export class WindowReader {
  static readonly WINDOW = 64 * 1024;
  private readonly buf = Buffer.alloc(WindowReader.WINDOW);
  private from = 0;
  private len = 0;

  constructor(private readonly fh: FileHandle) {}

  /** `n` (at most WINDOW) bytes at `pos`; the caller knows they lie inside the file. */
  async bytes(pos: number, n: number): Promise<Buffer> {
    if (pos < this.from || pos + n > this.from + this.len) {
      const { bytesRead } = await this.fh.read(this.buf, 0, this.buf.length, pos);
      this.from = pos;
      this.len = bytesRead;
      if (bytesRead < n) throw new Mp4FormatError(`short read at ${pos}`);
    }
    return this.buf.subarray(pos - this.from, pos - this.from + n);
  }
}

/** Called for each NAL unit of a sample with its payload's place in the file; false fails the sample. */
export type NalVisitor = (start: number, size: number) => Promise<boolean> | boolean;

/**
 * Whether a sample is a chain of length-prefixed NAL units that fills it
 * exactly. Each length must be non-zero and each NAL header valid: forbidden
 * bit 0, and a NAL unit type that is not unspecified (H.264: 1–23; H.265:
 * below 48, with nuh_temporal_id_plus1 > 0). Garbage rarely passes: its
 * lengths overrun the sample or its headers are out of range.
 */
export async function nalChainIsIntact(r: WindowReader, start: number, size: number, track: Mp4Track, visit?: NalVisitor): Promise<boolean> {
  const lengthSize = track.nalLengthSize ?? 4;
  const hevc = isHevc(track.codec);
  const headerSize = hevc ? 2 : 1;
  const end = start + size;
  if (size === 0) return false;
  let p = start;
  while (p < end) {
    if (p + lengthSize + headerSize > end) return false;
    const b = await r.bytes(p, lengthSize + headerSize);
    const len = b.readUIntBE(0, lengthSize);
    if (len < headerSize || p + lengthSize + len > end) return false;
    const h0 = b[lengthSize] ?? 0x80;
    if (h0 & 0x80) return false;
    if (hevc) {
      if (h0 >> 1 >= 48 || ((b[lengthSize + 1] ?? 0) & 7) === 0) return false;
    } else {
      const type = h0 & 0x1f;
      if (type === 0 || type >= 24) return false;
    }
    if (visit && !(await visit(p + lengthSize, len))) return false;
    p += lengthSize + len;
  }
  return true;
}

/** Zero bytes counted at most at the end of a NAL unit: more are as telling as this many. */
export const TRAILING_ZEROS_COUNTED = 8;

/**
 * How many zero bytes end the NAL unit (up to TRAILING_ZEROS_COUNTED). A NAL
 * unit ends with its rbsp_stop_one_bit, so normally none; but an Annex B to
 * MP4 conversion may keep the first byte of the next 4-byte start code: ffmpeg
 * does with H.265 from MPEG-TS, on the last NAL unit of every sample.
 */
export async function trailingZeros(r: WindowReader, start: number, size: number): Promise<number> {
  const n = Math.min(size, TRAILING_ZEROS_COUNTED);
  const tail = await r.bytes(start + size - n, n);
  let zeros = 0;
  while (zeros < n && tail[n - 1 - zeros] === 0) zeros += 1;
  return zeros;
}

const ZERO_PAIR = Buffer.from([0, 0]);

/**
 * Emulation prevention (H.264 7.4.1, H.265 7.4.2) keeps the byte sequences
 * 00 00 00, 00 00 01 and 00 00 02 out of every NAL unit, so finding one is
 * finding a hole, unless it is the start of the zeros that end the unit
 * (left to trailingZeros). The search for 00 00 is Buffer.indexOf's.
 */
export async function hasNoZeroHole(r: WindowReader, start: number, size: number): Promise<boolean> {
  const end = start + size;
  for (let p = start; p < end; ) {
    const n = Math.min(WindowReader.WINDOW, end - p);
    const chunk = await r.bytes(p, n);
    for (let i = chunk.indexOf(ZERO_PAIR); i >= 0 && i + 2 < n; i = chunk.indexOf(ZERO_PAIR, i + 1)) {
      const v = chunk[i + 2];
      if (v === 1 || v === 2) return false;
      if (v === 0) return isAllZero(r, p + i, end);
    }
    if (p + n >= end) break;
    // overlap by two bytes so a pair split across chunks is still seen
    p += n - 2;
  }
  return true;
}

async function isAllZero(r: WindowReader, start: number, end: number): Promise<boolean> {
  for (let p = start; p < end; ) {
    const n = Math.min(WindowReader.WINDOW, end - p);
    const chunk = await r.bytes(p, n);
    for (const v of chunk) if (v !== 0) return false;
    p += n;
  }
  return true;
}

/**
 * An AAC frame's last byte holds part of its ID_END element (ISO/IEC 14496-3
 * 4.4.2.1: raw_data_block ends with ID_END, then byte alignment), so it is
 * never 0; a zero-filled tail that reaches the end of an mdat makes it 0.
 */
export async function aacFrameEndIsSet(r: WindowReader, start: number, size: number): Promise<boolean> {
  return size === 0 || (await r.bytes(start + size - 1, 1))[0] !== 0;
}
