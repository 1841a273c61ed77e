import { open, type FileHandle } from 'node:fs/promises';
import {
  MAX_HEADER_BOX_BYTES,
  Mp4FormatError,
  NAL_CODECS,
  parseBoxHeader,
  parseMoof,
  parseMoov,
  readBoxHeader,
  type BoxHeader,
  type Mp4Track,
  type SampleRun,
} from './mp4-boxes.js';
import { aacFrameEndIsSet, hasNoZeroHole, nalChainIsIntact, trailingZeros, WindowReader } from './sample-checks.js';

/**
 * Salvage of a segment cut short by a kill or a power loss (DESIGN, "Recording
 * facts"). Our segments are fragmented MP4: ftyp, moov, then one moof+mdat
 * pair per second, and an mfra once ffmpeg closes the file. A partial segment
 * misses its tail, and after a power cut the tail may read as zeros or as
 * whatever the card held before.
 *
 * The walker keeps ftyp, moov and every moof directly followed by a complete
 * mdat that the moof's samples fill exactly, where every video sample is an
 * intact chain of length-prefixed NAL units, and cuts the file after the last
 * such fragment. Then the last fragment kept gets a closer look (tailIsClean),
 * and garbage right behind it drops it. The file is read with positioned
 * reads: box headers, each moof (a few KiB), a few bytes per NAL unit, and the
 * last fragment's video, through one 64 KiB window, so a 100 MB segment costs
 * the same memory as a 1 MB one (a 174 MB segment cut short: 0.3 s).
 *
 * Only call it on a file no ffmpeg is writing (at start-up, on files no
 * segment list names).
 */

export type SalvageStatus = 'intact' | 'truncated' | 'empty' | 'unreadable';

export interface SalvageResult {
  /**
   * intact: every byte was kept, the file is untouched. truncated: the file was
   * cut after its last good fragment. empty: ftyp and moov are there but no
   * playable fragment (ffprobe accepts such a file, yet it holds no frame).
   * unreadable: not even a moov. The file is left as it is in the last two
   * cases: the caller drops it and counts it.
   */
  status: SalvageStatus;
  /** the file's size after salvage; 0 when nothing playable was found */
  keptBytes: number;
  originalBytes: number;
  /** moof+mdat pairs kept */
  fragmentsKept: number;
  /** why the walk stopped where it did, for a log line */
  reason?: string;
}

export interface SalvageOptions {
  /** report what would be kept without truncating */
  dryRun?: boolean;
}

/** Top-level boxes a fragmented file may hold after its moov. */
const KNOWN_BOXES = new Set(['moof', 'mdat', 'mfra', 'free', 'skip', 'styp', 'sidx', 'prft', 'emsg']);

/** Trailing zero bytes of a video track's NAL units in one fragment (see trailingZeros). */
interface TrailingZeros {
  /** the most on any unit but the last */
  others: number;
  /** on the unit that ends last */
  last: number;
}

interface Fragment {
  /** the moof's first byte */
  start: number;
  /** the byte after its mdat */
  end: number;
  runs: SampleRun[];
  zeros: Map<number, TrailingZeros>;
}

export async function salvageSegment(path: string, opts: SalvageOptions = {}): Promise<SalvageResult> {
  const fh = await open(path, 'r');
  let result: SalvageResult;
  try {
    result = await inspect(fh);
  } finally {
    await fh.close();
  }
  if (result.status === 'truncated' && !opts.dryRun) {
    const w = await open(path, 'r+');
    try {
      await w.truncate(result.keptBytes);
      // durable before the caller hashes and journals the file
      await w.sync();
    } finally {
      await w.close();
    }
  }
  return result;
}

async function inspect(fh: FileHandle): Promise<SalvageResult> {
  const size = (await fh.stat()).size;
  const unreadable = (reason: string): SalvageResult => ({ status: 'unreadable', keptBytes: 0, originalBytes: size, fragmentsKept: 0, reason });
  const head = await readHead(fh, size);
  if (typeof head === 'string') return unreadable(head);
  const tracks = new Map(head.tracks.map((t) => [t.id, t]));
  const reader = new WindowReader(fh);

  const fragments: Fragment[] = [];
  let mfraEnd: number | undefined;
  let reason = 'end of file';
  let pos = head.end;
  while (pos < size) {
    const h = await readBoxHeader(fh, pos, size);
    if (!h || !KNOWN_BOXES.has(h.type)) {
      reason = `no box at ${pos}`;
      break;
    }
    if (h.end > size) {
      reason = `${h.type} at ${pos} runs past the end of the file`;
      break;
    }
    if (h.type === 'moof') {
      const f = await readFragment(fh, reader, h, size, tracks);
      if (typeof f === 'string') {
        reason = f;
        break;
      }
      fragments.push(f);
      pos = f.end;
    } else if (h.type === 'mfra') {
      // what ffmpeg writes on closing the file: proof that the file is complete
      if (await mfraIsWhole(fh, h)) mfraEnd = h.end;
      else reason = `damaged mfra at ${pos}`;
      break;
    } else if (h.type === 'mdat') {
      reason = `mdat at ${pos} without a moof`;
      break;
    } else {
      pos = h.end;
    }
  }

  let kept = fragments.length;
  if (mfraEnd === undefined) {
    const lastEnd = fragments[kept - 1]?.end ?? head.end;
    // Garbage right behind the last fragment may have begun inside it, at a
    // place the NAL chain cannot see (in a NAL's payload, or in audio): drop
    // it. Zeros or a real box header there do not raise that doubt.
    if ((await whatFollows(fh, lastEnd, size)) === 'garbage' && kept > 0) kept -= 1;
    // A zero-filled tail can also end exactly where a fragment ends, which
    // only a closer look at the last fragment's bytes finds.
    while (kept > 0 && !(await tailIsClean(reader, fragments, kept - 1, tracks))) kept -= 1;
    if (kept < fragments.length) reason = `the last ${fragments.length - kept} fragment(s) before the damage were doubtful`;
  }
  if (kept === 0) return { status: 'empty', keptBytes: 0, originalBytes: size, fragmentsKept: 0, reason: `no playable fragment (${reason})` };
  const keptBytes = mfraEnd ?? (fragments[kept - 1] as Fragment).end;
  if (keptBytes === size) return { status: 'intact', keptBytes, originalBytes: size, fragmentsKept: kept };
  return { status: 'truncated', keptBytes, originalBytes: size, fragmentsKept: kept, reason };
}

/** ftyp, then moov (free boxes allowed between), or why not. */
async function readHead(fh: FileHandle, size: number): Promise<{ tracks: Mp4Track[]; end: number } | string> {
  const ftyp = await readBoxHeader(fh, 0, size);
  if (!ftyp || ftyp.type !== 'ftyp' || ftyp.end > size) return 'no ftyp';
  let pos = ftyp.end;
  for (;;) {
    const h = await readBoxHeader(fh, pos, size);
    if (!h || h.end > size) return 'no complete moov';
    if (h.type === 'free' || h.type === 'skip') {
      pos = h.end;
      continue;
    }
    if (h.type !== 'moov' || h.end - h.start > MAX_HEADER_BOX_BYTES) return 'no moov after ftyp';
    try {
      const tracks = parseMoov(await readBox(fh, h));
      return tracks.length > 0 ? { tracks, end: h.end } : 'moov without tracks';
    } catch (err) {
      if (err instanceof Mp4FormatError) return `damaged moov: ${err.message}`;
      throw err;
    }
  }
}

async function readBox(fh: FileHandle, h: BoxHeader): Promise<Buffer> {
  const buf = Buffer.alloc(h.end - h.start);
  const { bytesRead } = await fh.read(buf, 0, buf.length, h.start);
  if (bytesRead !== buf.length) throw new Mp4FormatError('short read');
  return buf;
}

/** A moof and the mdat after it, checked; or why they fail. */
async function readFragment(
  fh: FileHandle,
  reader: WindowReader,
  moof: BoxHeader,
  size: number,
  tracks: ReadonlyMap<number, Mp4Track>,
): Promise<Fragment | string> {
  if (moof.end - moof.start > MAX_HEADER_BOX_BYTES) return `oversized moof at ${moof.start}`;
  let runs: SampleRun[];
  try {
    runs = parseMoof(await readBox(fh, moof), moof.start, tracks);
  } catch (err) {
    if (err instanceof Mp4FormatError) return `damaged moof at ${moof.start}: ${err.message}`;
    throw err;
  }
  const mdat = await readBoxHeader(fh, moof.end, size);
  if (!mdat || mdat.type !== 'mdat') return `moof at ${moof.start} not followed by an mdat`;
  if (mdat.end > size) return `mdat at ${mdat.start} runs past the end of the file`;
  // The samples must fill the mdat exactly, without gaps or overlaps: ffmpeg
  // writes nothing else there, and a trun garbled by zeros or junk rarely
  // adds up to the mdat's size. Sorted, the runs are also in file order.
  runs.sort((a, b) => a.start - b.start);
  let at = mdat.start + mdat.headerSize;
  let samples = 0;
  for (const run of runs) {
    if (run.start !== at) return `fragment at ${moof.start}: samples do not fill its mdat`;
    for (const s of run.sizes) at += s;
    samples += run.sizes.length;
  }
  if (at !== mdat.end) return `fragment at ${moof.start}: samples do not fill its mdat`;
  if (samples === 0) return `fragment at ${moof.start} has no samples`;

  const zeros = new Map<number, TrailingZeros>();
  for (const run of runs) {
    const track = tracks.get(run.trackId) as Mp4Track;
    if (!NAL_CODECS.has(track.codec)) continue;
    const z = zeros.get(track.id) ?? { others: 0, last: 0 };
    zeros.set(track.id, z);
    const visit = async (start: number, len: number): Promise<boolean> => {
      z.others = Math.max(z.others, z.last);
      z.last = await trailingZeros(reader, start, len);
      return true;
    };
    let p = run.start;
    for (const s of run.sizes) {
      if (!(await nalChainIsIntact(reader, p, s, track, visit))) return `broken NAL chain in the sample at ${p}`;
      p += s;
    }
  }
  return { start: moof.start, end: mdat.end, runs, zeros };
}

/**
 * The closer look at the last fragment kept, which a zero-filled tail may
 * reach exactly to its end. Zeros that pass the NAL chain can only sit in the
 * payload of a track's last NAL unit (or in audio after it): every length
 * field after them would read 0. So that unit may end in no more zeros than
 * the track's other units in the file do, no NAL unit of the fragment may
 * hold a zero run, and every AAC frame must end in a non-zero byte.
 */
async function tailIsClean(r: WindowReader, fragments: readonly Fragment[], k: number, tracks: ReadonlyMap<number, Mp4Track>): Promise<boolean> {
  const f = fragments[k] as Fragment;
  for (const [trackId, z] of f.zeros) {
    let allowed = z.others;
    for (const earlier of fragments.slice(0, k)) {
      const e = earlier.zeros.get(trackId);
      if (e) allowed = Math.max(allowed, e.others, e.last);
    }
    if (z.last > allowed) return false;
  }
  const noHole = (start: number, len: number): Promise<boolean> => hasNoZeroHole(r, start, len);
  for (const run of f.runs) {
    const track = tracks.get(run.trackId) as Mp4Track;
    let p = run.start;
    for (const s of run.sizes) {
      if (NAL_CODECS.has(track.codec) ? !(await nalChainIsIntact(r, p, s, track, noHole)) : track.codec === 'mp4a' && !(await aacFrameEndIsSet(r, p, s))) {
        return false;
      }
      p += s;
    }
  }
  return true;
}

/** What lies at `pos`: the end of the file, a known box header, zeros, or garbage. */
async function whatFollows(fh: FileHandle, pos: number, size: number): Promise<'eof' | 'box' | 'zeros' | 'garbage'> {
  if (pos >= size) return 'eof';
  const buf = Buffer.alloc(Math.min(4096, size - pos));
  const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
  const h = parseBoxHeader(buf, 0, bytesRead);
  if (h && KNOWN_BOXES.has(h.type)) return 'box';
  // fewer than 8 bytes: the start of a header the writer never finished
  if (bytesRead < 8) return 'box';
  // zeros, maybe behind the first bytes of a header that was being written
  return buf.subarray(7, bytesRead).every((b) => b === 0) ? 'zeros' : 'garbage';
}

/** mfra ends with an mfro box that repeats the mfra's size (ISO/IEC 14496-12 8.8.11). */
async function mfraIsWhole(fh: FileHandle, mfra: BoxHeader): Promise<boolean> {
  if (mfra.end - mfra.start < mfra.headerSize + 16) return false;
  const buf = Buffer.alloc(16);
  await fh.read(buf, 0, 16, mfra.end - 16);
  return buf.readUInt32BE(0) === 16 && buf.toString('latin1', 4, 8) === 'mfro' && buf.readUInt32BE(12) === mfra.end - mfra.start;
}
