import { open, type FileHandle } from 'node:fs/promises';

/**
 * Just enough of ISO/IEC 14496-12 (ISO BMFF) to read the segments our recorder
 * writes: top-level box headers from a file, the tracks of a `moov`, and where
 * each sample of a `moof` lies in the file. Boxes are parsed from buffers that
 * hold one `moov` or one `moof` (a few KiB); the big `mdat`s are never loaded.
 */

export class Mp4FormatError extends Error {
  override readonly name = 'Mp4FormatError';
}

export interface BoxHeader {
  type: string;
  /** file (or buffer) offset of the box's first byte */
  start: number;
  /** 8, or 16 with a 64-bit largesize */
  headerSize: number;
  /** start + size; may lie past the end of a truncated file */
  end: number;
}

/**
 * The header of the box at `off`, or undefined when fewer than 8 bytes (16 for
 * a largesize) are there or the size cannot be right. A size of 0 ("to the end
 * of the file") is refused: ffmpeg never writes it in a fragmented file, while
 * a zero-filled tail reads as exactly that.
 */
export function parseBoxHeader(buf: Buffer, off: number, limit = buf.length): BoxHeader | undefined {
  if (off < 0 || off + 8 > limit) return undefined;
  const size32 = buf.readUInt32BE(off);
  const type = buf.toString('latin1', off + 4, off + 8);
  let size = size32;
  let headerSize = 8;
  if (size32 === 1) {
    if (off + 16 > limit) return undefined;
    size = Number(buf.readBigUInt64BE(off + 8));
    headerSize = 16;
  }
  if (size < headerSize || !Number.isSafeInteger(size)) return undefined;
  return { type, start: off, headerSize, end: off + size };
}

/** Reads the box header at file offset `pos` with one positioned read. */
export async function readBoxHeader(fh: FileHandle, pos: number, fileSize: number): Promise<BoxHeader | undefined> {
  const buf = Buffer.alloc(16);
  const { bytesRead } = await fh.read(buf, 0, Math.max(0, Math.min(16, fileSize - pos)), pos);
  const h = parseBoxHeader(buf, 0, bytesRead);
  return h && { ...h, start: pos, end: pos + (h.end - h.start) };
}

/** The child boxes of the box `parent` in `buf`, skipping `skip` bytes of fields first. */
export function childBoxes(buf: Buffer, parent: BoxHeader, skip = 0): BoxHeader[] {
  const out: BoxHeader[] = [];
  let off = parent.start + parent.headerSize + skip;
  while (off < parent.end) {
    const h = parseBoxHeader(buf, off, parent.end);
    if (!h || h.end > parent.end) throw new Mp4FormatError(`malformed box inside ${parent.type} at ${off}`);
    out.push(h);
    off = h.end;
  }
  return out;
}

function child(buf: Buffer, parent: BoxHeader, type: string, skip = 0): BoxHeader | undefined {
  return childBoxes(buf, parent, skip).find((b) => b.type === type);
}

function need(buf: Buffer, box: BoxHeader, bytes: number): number {
  const at = box.start + box.headerSize;
  if (at + bytes > box.end) throw new Mp4FormatError(`${box.type} too short`);
  return at;
}

/** Defaults from a `trex` box, used by `moof`s that leave a field out. */
export interface TrackDefaults {
  sampleSize: number;
  sampleDuration: number;
}

export interface Mp4Track {
  id: number;
  /** hdlr handler type: 'vide', 'soun', … */
  handler: string;
  /** the first sample entry's type: 'avc1', 'hvc1', 'hev1', 'mp4a', … */
  codec: string;
  /** bytes of each NAL unit's length prefix (from avcC/hvcC), for H.264/H.265 */
  nalLengthSize?: number;
  /**
   * The sequence parameter sets of the sample entry (avcC/hvcC), whole NAL
   * units: an in-band SPS that differs from all of them means the stream
   * changed (picture size, profile) after the segment's moov was written.
   * Undefined when the config box could not be read.
   */
  sps?: Buffer[];
  /** units per second of the track's sample durations (mdhd) */
  timescale?: number;
  /** the picture size the sample entry declares, for video */
  width?: number;
  height?: number;
  defaults?: TrackDefaults;
}

/** Sample entries whose samples are length-prefixed NAL units. */
export const NAL_CODECS = new Set(['avc1', 'avc3', 'hvc1', 'hev1']);
export function isHevc(codec: string): boolean {
  return codec === 'hvc1' || codec === 'hev1';
}

/** Size of a VisualSampleEntry's fields before its child boxes (ISO/IEC 14496-12 12.1.3). */
const VISUAL_SAMPLE_ENTRY_FIELDS = 78;

/** The tracks of a `moov` box held in `buf` (the box starts at offset 0). */
export function parseMoov(buf: Buffer): Mp4Track[] {
  const moov = parseBoxHeader(buf, 0);
  if (!moov || moov.type !== 'moov' || moov.end > buf.length) throw new Mp4FormatError('not a complete moov');
  const defaults = new Map<number, TrackDefaults>();
  const mvex = child(buf, moov, 'mvex');
  if (mvex) {
    for (const trex of childBoxes(buf, mvex).filter((b) => b.type === 'trex')) {
      const at = need(buf, trex, 24);
      defaults.set(buf.readUInt32BE(at + 4), { sampleDuration: buf.readUInt32BE(at + 12), sampleSize: buf.readUInt32BE(at + 16) });
    }
  }
  const tracks: Mp4Track[] = [];
  for (const trak of childBoxes(buf, moov).filter((b) => b.type === 'trak')) {
    const tkhd = child(buf, trak, 'tkhd');
    const mdia = child(buf, trak, 'mdia');
    if (!tkhd || !mdia) throw new Mp4FormatError('trak without tkhd or mdia');
    const version = buf[need(buf, tkhd, 16)] ?? 0;
    const id = buf.readUInt32BE(need(buf, tkhd, version === 1 ? 24 : 16) + (version === 1 ? 20 : 12));
    const hdlr = child(buf, mdia, 'hdlr');
    if (!hdlr) throw new Mp4FormatError('mdia without hdlr');
    const handler = buf.toString('latin1', need(buf, hdlr, 12) + 8, hdlr.start + hdlr.headerSize + 12);
    const minf = child(buf, mdia, 'minf');
    const stbl = minf && child(buf, minf, 'stbl');
    const stsd = stbl && child(buf, stbl, 'stsd');
    if (!stsd) throw new Mp4FormatError('track without stsd');
    need(buf, stsd, 8);
    const entry = childBoxes(buf, stsd, 8)[0];
    if (!entry) throw new Mp4FormatError('stsd without a sample entry');
    const track: Mp4Track = { id, handler, codec: entry.type, defaults: defaults.get(id) };
    const mdhd = child(buf, mdia, 'mdhd');
    if (mdhd) {
      // version 1 has 64-bit creation and modification times before the timescale
      const v = buf[need(buf, mdhd, 4)] ?? 0;
      const at = need(buf, mdhd, v === 1 ? 24 : 16) + (v === 1 ? 20 : 12);
      track.timescale = buf.readUInt32BE(at) || undefined;
    }
    if (handler === 'vide' && entry.end - entry.start >= entry.headerSize + 28) {
      // VisualSampleEntry: width and height follow 24 bytes of other fields
      const width = buf.readUInt16BE(entry.start + entry.headerSize + 24);
      const height = buf.readUInt16BE(entry.start + entry.headerSize + 26);
      if (width > 0 && height > 0) Object.assign(track, { width, height });
    }
    if (NAL_CODECS.has(entry.type)) {
      const config = child(buf, entry, isHevc(entry.type) ? 'hvcC' : 'avcC', VISUAL_SAMPLE_ENTRY_FIELDS);
      // lengthSizeMinusOne: the low 2 bits of avcC byte 4, of hvcC byte 21
      const at = config && need(buf, config, isHevc(entry.type) ? 22 : 5) + (isHevc(entry.type) ? 21 : 4);
      track.nalLengthSize = at === undefined ? 4 : ((buf[at] ?? 3) & 3) + 1;
      const sps = config && readConfigSps(buf, config, isHevc(entry.type));
      if (sps && sps.length > 0) track.sps = sps;
    }
    tracks.push(track);
  }
  return tracks;
}

/**
 * The SPS NAL units of an avcC (ISO/IEC 14496-15 5.3.3.1) or hvcC (8.3.3.1)
 * box, or undefined when the box does not add up.
 */
function readConfigSps(buf: Buffer, config: BoxHeader, hevc: boolean): Buffer[] | undefined {
  const end = config.end;
  let p = config.start + config.headerSize;
  const out: Buffer[] = [];
  const unit = (): Buffer | undefined => {
    if (p + 2 > end) return undefined;
    const len = buf.readUInt16BE(p);
    if (p + 2 + len > end) return undefined;
    const nal = buf.subarray(p + 2, p + 2 + len);
    p += 2 + len;
    return nal;
  };
  if (hevc) {
    p += 22;
    if (p + 1 > end) return undefined;
    const arrays = buf[p] ?? 0;
    p += 1;
    for (let i = 0; i < arrays; i += 1) {
      if (p + 3 > end) return undefined;
      const type = (buf[p] ?? 0) & 0x3f;
      const count = buf.readUInt16BE(p + 1);
      p += 3;
      for (let j = 0; j < count; j += 1) {
        const nal = unit();
        if (!nal) return undefined;
        if (type === HEVC_SPS) out.push(Buffer.from(nal));
      }
    }
    return out;
  }
  p += 5;
  if (p + 1 > end) return undefined;
  const count = (buf[p] ?? 0) & 0x1f;
  p += 1;
  for (let i = 0; i < count; i += 1) {
    const nal = unit();
    if (!nal) return undefined;
    out.push(Buffer.from(nal));
  }
  return out;
}

/** NAL unit types of a sequence parameter set (H.264 7.4.1, H.265 7.4.2.2). */
export const H264_SPS = 7;
export const HEVC_SPS = 33;

/** The NAL unit type from the first header byte (or two, for H.265). */
export function nalUnitType(firstByte: number, hevc: boolean): number {
  return hevc ? (firstByte >> 1) & 0x3f : firstByte & 0x1f;
}

/** A run of contiguous samples of one track, located in the file. */
export interface SampleRun {
  trackId: number;
  /** file offset of the first sample */
  start: number;
  sizes: number[];
  /** the run's samples' durations added up, in the track's timescale */
  duration: number;
}

/** No fragment of ours comes near this; a bigger count is a garbled trun. */
const MAX_SAMPLES_PER_RUN = 100_000;

/**
 * Where the samples of a `moof` (held in `buf`, starting at offset 0, which
 * was file offset `moofStart`) lie in the file, from its tfhd and trun boxes.
 * The base offset rules are those of ISO/IEC 14496-12 8.8.7.1 and 8.8.8.1.
 */
export function parseMoof(buf: Buffer, moofStart: number, tracks: ReadonlyMap<number, Mp4Track>): SampleRun[] {
  const moof = parseBoxHeader(buf, 0);
  if (!moof || moof.type !== 'moof' || moof.end > buf.length) throw new Mp4FormatError('not a complete moof');
  const runs: SampleRun[] = [];
  let previousTrafEnd = moofStart;
  let firstTraf = true;
  for (const traf of childBoxes(buf, moof).filter((b) => b.type === 'traf')) {
    const tfhd = child(buf, traf, 'tfhd');
    if (!tfhd) throw new Mp4FormatError('traf without tfhd');
    let at = need(buf, tfhd, 8);
    const flags = buf.readUInt32BE(at) & 0xffffff;
    const trackId = buf.readUInt32BE(at + 4);
    const track = tracks.get(trackId);
    if (!track) throw new Mp4FormatError(`traf for unknown track ${trackId}`);
    at += 8;
    let base: number;
    if (flags & 0x1) {
      if (at + 8 > tfhd.end) throw new Mp4FormatError('tfhd too short');
      base = Number(buf.readBigUInt64BE(at));
      at += 8;
    } else {
      base = flags & 0x20000 || firstTraf ? moofStart : previousTrafEnd;
    }
    if (flags & 0x2) at += 4;
    let defaultDuration = track.defaults?.sampleDuration;
    if (flags & 0x8) {
      if (at + 4 > tfhd.end) throw new Mp4FormatError('tfhd too short');
      defaultDuration = buf.readUInt32BE(at);
      at += 4;
    }
    let defaultSize = track.defaults?.sampleSize;
    if (flags & 0x10) {
      if (at + 4 > tfhd.end) throw new Mp4FormatError('tfhd too short');
      defaultSize = buf.readUInt32BE(at);
    }
    let cursor = base;
    for (const trun of childBoxes(buf, traf).filter((b) => b.type === 'trun')) {
      let p = need(buf, trun, 8);
      const tflags = buf.readUInt32BE(p) & 0xffffff;
      const count = buf.readUInt32BE(p + 4);
      p += 8;
      let start = cursor;
      if (tflags & 0x1) {
        if (p + 4 > trun.end) throw new Mp4FormatError('trun too short');
        start = base + buf.readInt32BE(p);
        p += 4;
      }
      if (tflags & 0x4) p += 4;
      const perSample = [0x100, 0x200, 0x400, 0x800].filter((f) => tflags & f).length * 4;
      if (count > MAX_SAMPLES_PER_RUN || p + count * perSample > trun.end) throw new Mp4FormatError('trun sample table runs past its box');
      const sizeAt = tflags & 0x100 ? 4 : 0;
      const sizes: number[] = [];
      let total = 0;
      let duration = 0;
      for (let i = 0; i < count; i += 1) {
        let size: number | undefined = defaultSize;
        if (tflags & 0x200) size = buf.readUInt32BE(p + i * perSample + sizeAt);
        if (size === undefined) throw new Mp4FormatError('sample size given nowhere');
        sizes.push(size);
        total += size;
        // a duration given nowhere counts as 0: only durations, never offsets, depend on it
        duration += tflags & 0x100 ? buf.readUInt32BE(p + i * perSample) : (defaultDuration ?? 0);
      }
      runs.push({ trackId, start, sizes, duration });
      cursor = start + total;
    }
    previousTrafEnd = cursor;
    firstTraf = false;
  }
  return runs;
}

/** Largest moov or moof read into memory: ours are a few KiB; more is a garbled size. */
export const MAX_HEADER_BOX_BYTES = 4 * 1024 * 1024;

/**
 * The tracks of an MP4 file, from its moov (which must come before any
 * mdat, as in our fragmented segments). For tests and for checking what a
 * recording holds without ffprobe, which the bundled ffmpeg package lacks.
 */
export async function readMp4Tracks(path: string): Promise<Mp4Track[]> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    let pos = 0;
    while (pos < size) {
      const h = await readBoxHeader(fh, pos, size);
      if (!h || h.end > size) break;
      if (h.type === 'moov') {
        if (h.end - h.start > MAX_HEADER_BOX_BYTES) break;
        const buf = Buffer.alloc(h.end - h.start);
        await fh.read(buf, 0, buf.length, h.start);
        return parseMoov(buf);
      }
      if (h.type === 'mdat' || h.type === 'moof') break;
      pos = h.end;
    }
    throw new Mp4FormatError(`${path}: no complete moov before the media data`);
  } finally {
    await fh.close();
  }
}
