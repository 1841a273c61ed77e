import { open, type FileHandle } from 'node:fs/promises';
import {
  H264_SPS,
  HEVC_SPS,
  isHevc,
  MAX_HEADER_BOX_BYTES,
  Mp4FormatError,
  NAL_CODECS,
  nalUnitType,
  parseMoof,
  parseMoov,
  readBoxHeader,
  type BoxHeader,
  type Mp4Track,
} from './mp4-boxes.js';
import { nalChainIsIntact, WindowReader } from './sample-checks.js';

/**
 * Reads a segment's fragments as ffmpeg writes them (or once it has closed
 * the file) and checks that the video in each still is what the segment's
 * moov describes.
 *
 * Why: ffmpeg copying a live stream (-c copy) does not notice when the camera
 * changes its picture size or codec mid-stream. Measured with the bundled
 * build on MPEG-TS: after a resolution change the segment being written goes
 * on with frames of the new size behind a moov that declares the old one
 * (ffmpeg's own decoder copes; an MP4 player that trusts the avcC does not),
 * and after a switch from H.264 to H.265 it writes H.265 NAL units into an
 * avc1 track and stops cutting segments. Either shows in the fragments: an
 * in-band SPS that matches none in the sample entry, or samples that are not
 * a valid NAL unit chain of the track's codec. The recorder then restarts
 * ffmpeg (the next segment gets the new moov) and cuts the segment before the
 * first changed fragment, so no segment ever mixes two streams.
 */

export interface StreamChangeFound {
  /** file offset of the first changed fragment's moof: where the segment is cut */
  at: number;
  /** fragments before it */
  fragmentIndex: number;
  reason: string;
}

export interface SegmentState {
  tracks: Mp4Track[] | undefined;
  /** the first video track, which the checks and the duration follow */
  video: Mp4Track | undefined;
  /** complete moof+mdat pairs before any change */
  fragments: number;
  /** byte after the last complete fragment kept (or after the mfra of a closed, unchanged file) */
  goodEnd: number;
  /** media time of those fragments, in ms (video track; else the longest track) */
  durationMs: number;
  change: StreamChangeFound | undefined;
}

/** Largest in-band SPS compared; real ones are tens of bytes. */
const MAX_SPS_BYTES = 4096;

/**
 * Incremental: update() reads only what ffmpeg appended since the last call,
 * so the recorder can call it on the segment being written at every poll (a
 * moof and a few bytes per NAL unit, each second). Once a change is found the
 * state stays as it was at the change.
 */
export class SegmentInspector {
  private pos = 0;
  private readonly state: SegmentState = { tracks: undefined, video: undefined, fragments: 0, goodEnd: 0, durationMs: 0, change: undefined };
  private readonly mediaTime = new Map<number, number>();
  private tracksById = new Map<number, Mp4Track>();

  constructor(readonly path: string) {}

  get current(): Readonly<SegmentState> {
    return this.state;
  }

  /**
   * Reads the boxes completed since the last call. Throws Mp4FormatError when
   * the file is not a fragmented MP4 (no moov before the first moof).
   */
  async update(): Promise<Readonly<SegmentState>> {
    if (this.state.change) return this.state;
    let fh: FileHandle;
    try {
      fh = await open(this.path, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return this.state;
      throw err;
    }
    try {
      const size = (await fh.stat()).size;
      const reader = new WindowReader(fh);
      while (this.pos < size && !this.state.change) {
        const h = await readBoxHeader(fh, this.pos, size);
        // an incomplete header or box: ffmpeg is still writing it
        if (!h || h.end > size) break;
        if (h.type === 'moov') {
          if (h.end - h.start > MAX_HEADER_BOX_BYTES) throw new Mp4FormatError(`${this.path}: oversized moov`);
          this.setTracks(parseMoov(await readBox(fh, h)));
          this.pos = h.end;
        } else if (h.type === 'moof') {
          if (!this.state.tracks) throw new Mp4FormatError(`${this.path}: a moof before the moov`);
          const mdat = await readBoxHeader(fh, h.end, size);
          if (!mdat || mdat.end > size) break;
          if (mdat.type !== 'mdat') throw new Mp4FormatError(`${this.path}: moof at ${h.start} not followed by an mdat`);
          await this.readFragment(fh, reader, h);
          if (this.state.change) break;
          this.pos = mdat.end;
          this.state.goodEnd = mdat.end;
        } else {
          // ftyp, free, mfra (ffmpeg closed the file), anything else: passed over
          this.pos = h.end;
          if (h.type === 'mfra' && this.state.fragments > 0) this.state.goodEnd = h.end;
        }
      }
    } finally {
      await fh.close();
    }
    return this.state;
  }

  private setTracks(tracks: Mp4Track[]): void {
    this.state.tracks = tracks;
    this.state.video = tracks.find((t) => t.handler === 'vide');
    this.tracksById = new Map(tracks.map((t) => [t.id, t]));
  }

  private async readFragment(fh: FileHandle, reader: WindowReader, moof: BoxHeader): Promise<void> {
    if (moof.end - moof.start > MAX_HEADER_BOX_BYTES) throw new Mp4FormatError(`${this.path}: oversized moof at ${moof.start}`);
    const runs = parseMoof(await readBox(fh, moof), moof.start, this.tracksById);
    const video = this.state.video;
    if (video && NAL_CODECS.has(video.codec)) {
      const reason = await videoChange(reader, runs.filter((r) => r.trackId === video.id), video);
      if (reason) {
        this.state.change = { at: moof.start, fragmentIndex: this.state.fragments, reason };
        return;
      }
    }
    for (const r of runs) this.mediaTime.set(r.trackId, (this.mediaTime.get(r.trackId) ?? 0) + r.duration);
    this.state.fragments += 1;
    this.state.durationMs = this.durationMs();
  }

  private durationMs(): number {
    const ms = (t: Mp4Track): number => (t.timescale ? ((this.mediaTime.get(t.id) ?? 0) * 1000) / t.timescale : 0);
    const video = this.state.video;
    if (video) return Math.round(ms(video));
    return Math.round(Math.max(0, ...(this.state.tracks ?? []).map(ms)));
  }
}

/** Why a fragment's video samples are not the stream the moov describes, or undefined when they are. */
async function videoChange(reader: WindowReader, runs: { start: number; sizes: number[] }[], track: Mp4Track): Promise<string | undefined> {
  const hevc = isHevc(track.codec);
  const spsType = hevc ? HEVC_SPS : H264_SPS;
  const known = track.sps?.map(withoutTrailingZeros);
  let changed: string | undefined;
  const visit = async (start: number, len: number): Promise<boolean> => {
    const first = (await reader.bytes(start, 1))[0] ?? 0;
    if (nalUnitType(first, hevc) !== spsType || !known || known.length === 0) return true;
    if (len > MAX_SPS_BYTES) {
      changed = 'an in-band SPS of an implausible size';
      return false;
    }
    const sps = withoutTrailingZeros(Buffer.from(await reader.bytes(start, len)));
    if (!known.some((k) => k.equals(sps))) {
      changed = 'an in-band SPS differs from the segment header (new picture size or encoder settings)';
      return false;
    }
    return true;
  };
  for (const run of runs) {
    let p = run.start;
    for (const s of run.sizes) {
      if (!(await nalChainIsIntact(reader, p, s, track, visit))) {
        return changed ?? `video samples are not ${hevc ? 'H.265' : 'H.264'} NAL units any more (the camera changed codec?)`;
      }
      p += s;
    }
  }
  return undefined;
}

/** Annex B to MP4 conversion may leave the first zero of a 4-byte start code at the end of a NAL unit. */
function withoutTrailingZeros(b: Buffer): Buffer {
  let end = b.length;
  while (end > 0 && b[end - 1] === 0) end -= 1;
  return b.subarray(0, end);
}

async function readBox(fh: FileHandle, h: BoxHeader): Promise<Buffer> {
  const buf = Buffer.alloc(h.end - h.start);
  const { bytesRead } = await fh.read(buf, 0, buf.length, h.start);
  if (bytesRead !== buf.length) throw new Mp4FormatError('short read');
  return buf;
}

/** The whole check of a file no ffmpeg writes any more. */
export async function inspectSegment(path: string): Promise<Readonly<SegmentState>> {
  return new SegmentInspector(path).update();
}

/** Cuts a segment at `at` and makes the cut durable before the caller hashes and journals it. */
export async function truncateSegment(path: string, at: number): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.truncate(at);
    await fh.sync();
  } finally {
    await fh.close();
  }
}
