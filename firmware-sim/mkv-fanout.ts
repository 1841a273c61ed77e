import { ViewerSet, type ViewerSocket } from './viewers.js';

/**
 * Matroska fan-out, for streams MPEG-TS cannot carry: ffmpeg writes G.711
 * (pcm_alaw, pcm_mulaw) into MPEG-TS as an opaque data stream (stream_type
 * 0x06, no descriptor), which no demuxer reads back as audio.
 *
 * ffmpeg's Matroska muxer on a pipe writes the EBML header, a Segment of
 * unknown size, Info and Tracks, then Clusters of known size (it buffers each
 * one whole). A new viewer gets the EBML header, the Segment start and the
 * elements before the first Cluster, then the stream from a Cluster whose
 * first video block is a keyframe. Unlike MPEG-TS, the header cannot be sent
 * again mid-stream, so a viewer that resumes after a stall or freeze gets
 * Clusters only.
 */

const EBML_ID = 0x1a45dfa3;
const SEGMENT_ID = 0x18538067;
const CLUSTER_ID = 0x1f43b675;
const TRACKS_ID = 0x1654ae6b;
const TRACK_ENTRY_ID = 0xae;
const TRACK_NUMBER_ID = 0xd7;
const TRACK_TYPE_ID = 0x83;
const SIMPLE_BLOCK_ID = 0xa3;
const BLOCK_GROUP_ID = 0xa0;
const BLOCK_ID = 0xa1;
const REFERENCE_BLOCK_ID = 0xfb;
/** a Segment of unknown size: the stream never ends */
const SEGMENT_START = Buffer.from([0x18, 0x53, 0x80, 0x67, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
/** no element of ours comes near this; a bigger size means the stream is not what we think */
const MAX_ELEMENT_BYTES = 64 * 1024 * 1024;

export class MkvFormatError extends Error {
  override readonly name = 'MkvFormatError';
}

/**
 * An EBML variable-size integer at `off`: its value, its length, and whether
 * it is all ones (unknown size). Undefined when `buf` ends first; a zero first
 * byte (a length over 8) is not EBML at all.
 */
export function readVint(buf: Buffer, off: number, keepMarker = false): { value: number; length: number; unknown: boolean } | undefined {
  const first = buf[off];
  if (first === undefined) return undefined;
  if (first === 0) throw new MkvFormatError(`invalid EBML integer at ${off}`);
  const length = Math.clz32(first) - 23;
  if (off + length > buf.length) return undefined;
  let value = keepMarker ? first : first & (0xff >> length);
  let allOnes = value === 0xff >> length;
  for (let i = 1; i < length; i += 1) {
    const b = buf[off + i] as number;
    value = value * 256 + b;
    if (b !== 0xff) allOnes = false;
  }
  return { value, length, unknown: !keepMarker && allOnes };
}

interface Element {
  id: number;
  /** offset of the payload, relative to the element's start */
  headerSize: number;
  /** whole element, header included */
  size: number;
  unknown: boolean;
}

/** The element header at `off`, or undefined if `buf` ends before it does. */
function readElement(buf: Buffer, off: number): Element | undefined {
  const id = readVint(buf, off, true);
  if (!id) return undefined;
  if (id.length > 4) throw new MkvFormatError(`bad element id at ${off}`);
  const size = readVint(buf, off + id.length);
  if (!size) return undefined;
  const headerSize = id.length + size.length;
  return { id: id.value, headerSize, size: headerSize + size.value, unknown: size.unknown };
}

/** Children of the element payload buf[start, end). */
function* children(buf: Buffer, start: number, end: number): Generator<Element & { at: number }> {
  for (let at = start; at < end; ) {
    const e = readElement(buf, at);
    if (!e || e.unknown || at + e.size > end) return;
    yield { ...e, at };
    at += e.size;
  }
}

function readUint(buf: Buffer, start: number, end: number): number {
  let v = 0;
  for (let i = start; i < end; i += 1) v = v * 256 + (buf[i] as number);
  return v;
}

/** The track number of the first video track in a Tracks element. */
export function videoTrackNumber(tracks: Buffer): number | undefined {
  const head = readElement(tracks, 0);
  if (!head) return undefined;
  for (const entry of children(tracks, head.headerSize, head.size)) {
    if (entry.id !== TRACK_ENTRY_ID) continue;
    let number: number | undefined;
    let type: number | undefined;
    for (const f of children(tracks, entry.at + entry.headerSize, entry.at + entry.size)) {
      if (f.id === TRACK_NUMBER_ID) number = readUint(tracks, f.at + f.headerSize, f.at + f.size);
      if (f.id === TRACK_TYPE_ID) type = readUint(tracks, f.at + f.headerSize, f.at + f.size);
    }
    if (type === 1) return number;
  }
  return undefined;
}

/**
 * Whether a Cluster's first block of the video track is a keyframe: a
 * SimpleBlock with its keyframe flag, or a BlockGroup without ReferenceBlock.
 * Audio blocks before it do no harm.
 */
export function clusterStartsWithKeyframe(cluster: Buffer, videoTrack: number): boolean {
  const head = readElement(cluster, 0);
  if (!head) return false;
  for (const e of children(cluster, head.headerSize, head.size)) {
    let block: Element & { at: number } = e;
    let referenced = false;
    if (e.id === BLOCK_GROUP_ID) {
      const inner = [...children(cluster, e.at + e.headerSize, e.at + e.size)];
      referenced = inner.some((c) => c.id === REFERENCE_BLOCK_ID);
      const b = inner.find((c) => c.id === BLOCK_ID);
      if (!b) continue;
      block = b;
    } else if (e.id !== SIMPLE_BLOCK_ID) {
      continue;
    }
    const track = readVint(cluster, block.at + block.headerSize);
    if (!track || track.value !== videoTrack) continue;
    if (e.id === BLOCK_GROUP_ID) return !referenced;
    const flags = cluster[block.at + block.headerSize + track.length + 2] ?? 0;
    return (flags & 0x80) !== 0;
  }
  return false;
}

export interface MkvFanoutOptions {
  maxBufferedBytes?: number;
  onViewerStall?: (remote: string, bufferedBytes: number) => void;
}

export class MkvFanout {
  private readonly viewers: ViewerSet;
  private pending: Buffer = Buffer.alloc(0);
  private phase: 'ebml' | 'segment' | 'body' = 'ebml';
  /** EBML header, Segment start and the level-1 elements before the first Cluster */
  private headerParts: Buffer[] = [];
  private header: Buffer | undefined;
  private videoTrack: number | undefined;
  keyframes = 0;

  constructor(opts: MkvFanoutOptions = {}) {
    this.viewers = new ViewerSet({ ...opts, repeatHeader: false });
  }

  get viewerCount(): number {
    return this.viewers.size;
  }

  add(socket: ViewerSocket): void {
    this.viewers.add(socket);
  }

  /**
   * Feeds encoder output; returns the number of keyframe Clusters completed
   * by it. Throws MkvFormatError when the stream is not what ffmpeg writes;
   * reset() before feeding a new stream.
   */
  push(chunk: Buffer): number {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    const out: Buffer[] = [];
    let outBytes = 0;
    let startAt = -1;
    let keyframes = 0;
    let off = 0;
    for (;;) {
      const e = readElement(this.pending, off);
      if (!e) break;
      if (this.phase === 'ebml' && e.id !== EBML_ID) throw new MkvFormatError(`expected an EBML header, found id ${e.id.toString(16)}`);
      if (this.phase === 'segment') {
        if (e.id !== SEGMENT_ID) throw new MkvFormatError(`expected a Segment, found id ${e.id.toString(16)}`);
        // the Segment's size (unknown on a pipe) is replaced by "unknown" for every viewer
        this.headerParts.push(SEGMENT_START);
        this.phase = 'body';
        off += e.headerSize;
        continue;
      }
      if (e.unknown || e.size > MAX_ELEMENT_BYTES) throw new MkvFormatError(`element ${e.id.toString(16)} of unknown or huge size`);
      if (off + e.size > this.pending.length) break;
      const element = this.pending.subarray(off, off + e.size);
      off += e.size;
      if (this.phase === 'ebml') {
        this.headerParts = [Buffer.from(element)];
        this.phase = 'segment';
        continue;
      }
      if (e.id !== CLUSTER_ID) {
        if (this.header) {
          out.push(element);
          outBytes += element.length;
        } else {
          this.headerParts.push(Buffer.from(element));
          if (e.id === TRACKS_ID) this.videoTrack = videoTrackNumber(element);
        }
        continue;
      }
      this.header ??= Buffer.concat(this.headerParts);
      if (this.videoTrack !== undefined && clusterStartsWithKeyframe(element, this.videoTrack)) {
        keyframes += 1;
        if (startAt < 0) startAt = outBytes;
      }
      out.push(element);
      outBytes += element.length;
    }
    // copy the rest: it must not keep the whole chunk alive
    this.pending = Buffer.from(this.pending.subarray(off));
    this.keyframes += keyframes;
    if (out.length > 0) this.viewers.deliver(Buffer.concat(out), startAt, this.header);
    return keyframes;
  }

  get isFrozen(): boolean {
    return this.viewers.isFrozen;
  }

  /** A frozen camera: viewers stay connected and get nothing. */
  freeze(): void {
    this.viewers.freeze();
  }

  /** Viewers get the stream again from the next keyframe Cluster. */
  unfreeze(): void {
    this.viewers.unfreeze();
  }

  /** A new encoder: a new stream, so viewers reconnect and the parser starts over. */
  reset(): void {
    this.pending = Buffer.alloc(0);
    this.phase = 'ebml';
    this.headerParts = [];
    this.header = undefined;
    this.videoTrack = undefined;
    this.closeAll();
  }

  closeAll(): void {
    this.viewers.closeAll();
  }
}
