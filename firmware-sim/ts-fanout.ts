import { ViewerSet, type ViewerSocket } from './viewers.js';

/**
 * MPEG-TS fan-out: one encoder, many viewers, each of which may join at any
 * moment. A viewer that starts mid-GOP or mid-packet sees garbage until the next
 * keyframe, and a recorder copying that into MP4 would start its first segment
 * with undecodable frames. So a new viewer gets the latest PAT and PMT first and
 * then the stream from a video packet that starts a PES (payload_unit_start)
 * and carries random_access_indicator, which ffmpeg's mpegts muxer sets on
 * keyframes (ISO/IEC 13818-1, 2.4.3.5).
 */

export const TS_PACKET_SIZE = 188;
export const TS_SYNC_BYTE = 0x47;

/** stream_type values of video elementary streams (ISO/IEC 13818-1 table 2-34 and amendments) */
const VIDEO_STREAM_TYPES = new Set([0x01, 0x02, 0x10, 0x1b, 0x24]);

export interface TsPacketHeader {
  pid: number;
  payloadUnitStart: boolean;
  randomAccess: boolean;
  /** offset of the payload inside the packet, or -1 when it has none */
  payloadOffset: number;
}

export function readPacketHeader(buf: Buffer, off: number): TsPacketHeader {
  const b1 = buf[off + 1] ?? 0;
  const b2 = buf[off + 2] ?? 0;
  const b3 = buf[off + 3] ?? 0;
  const pid = ((b1 & 0x1f) << 8) | b2;
  const payloadUnitStart = (b1 & 0x40) !== 0;
  const afc = (b3 >> 4) & 0x3;
  let randomAccess = false;
  let payloadOffset = 4;
  if (afc & 0x2) {
    const afLen = buf[off + 4] ?? 0;
    if (afLen > 0) randomAccess = ((buf[off + 5] ?? 0) & 0x40) !== 0;
    payloadOffset = 5 + afLen;
  }
  if (!(afc & 0x1) || payloadOffset >= TS_PACKET_SIZE) payloadOffset = -1;
  return { pid, payloadUnitStart, randomAccess, payloadOffset };
}

/** Start of the PSI section in a packet that begins one (pointer_field skipped). */
function sectionStart(buf: Buffer, off: number, h: TsPacketHeader): number {
  if (h.payloadOffset < 0 || !h.payloadUnitStart) return -1;
  const pointer = buf[off + h.payloadOffset] ?? 0;
  const s = off + h.payloadOffset + 1 + pointer;
  return s < off + TS_PACKET_SIZE - 3 ? s : -1;
}

/** The PMT PID of the first program in a PAT packet (single-packet PAT, as ffmpeg writes). */
export function parsePatPmtPid(buf: Buffer, off: number): number | undefined {
  const h = readPacketHeader(buf, off);
  const s = sectionStart(buf, off, h);
  if (s < 0 || buf[s] !== 0x00) return undefined;
  const sectionLength = (((buf[s + 1] ?? 0) & 0x0f) << 8) | (buf[s + 2] ?? 0);
  const end = Math.min(s + 3 + sectionLength - 4, off + TS_PACKET_SIZE);
  for (let p = s + 8; p + 4 <= end; p += 4) {
    const program = ((buf[p] ?? 0) << 8) | (buf[p + 1] ?? 0);
    const pid = (((buf[p + 2] ?? 0) & 0x1f) << 8) | (buf[p + 3] ?? 0);
    if (program !== 0) return pid;
  }
  return undefined;
}

/** The PID of the first video stream listed in a PMT packet. */
export function parsePmtVideoPid(buf: Buffer, off: number): number | undefined {
  const h = readPacketHeader(buf, off);
  const s = sectionStart(buf, off, h);
  if (s < 0 || buf[s] !== 0x02) return undefined;
  const sectionLength = (((buf[s + 1] ?? 0) & 0x0f) << 8) | (buf[s + 2] ?? 0);
  const end = Math.min(s + 3 + sectionLength - 4, off + TS_PACKET_SIZE);
  const programInfoLength = (((buf[s + 10] ?? 0) & 0x0f) << 8) | (buf[s + 11] ?? 0);
  for (let p = s + 12 + programInfoLength; p + 5 <= end; ) {
    const streamType = buf[p] ?? 0;
    const pid = (((buf[p + 1] ?? 0) & 0x1f) << 8) | (buf[p + 2] ?? 0);
    const esInfoLength = (((buf[p + 3] ?? 0) & 0x0f) << 8) | (buf[p + 4] ?? 0);
    if (VIDEO_STREAM_TYPES.has(streamType)) return pid;
    p += 5 + esInfoLength;
  }
  return undefined;
}

/**
 * Cuts a byte stream into whole 188-byte packets, holding back a partial tail
 * and resynchronising on the sync byte if the stream ever loses alignment.
 */
export class TsPacketizer {
  private rest: Buffer = Buffer.alloc(0);
  /** bytes thrown away while looking for sync */
  dropped = 0;

  push(chunk: Buffer): Buffer {
    let buf = this.rest.length ? Buffer.concat([this.rest, chunk]) : chunk;
    let start = 0;
    // find sync: a 0x47 followed by another one 188 bytes later (or the end of data)
    while (start < buf.length) {
      if (buf[start] === TS_SYNC_BYTE && (start + TS_PACKET_SIZE >= buf.length || buf[start + TS_PACKET_SIZE] === TS_SYNC_BYTE)) break;
      start += 1;
    }
    this.dropped += start;
    buf = buf.subarray(start);
    // stop at the first packet that lost sync; resync on the next push
    let n = 0;
    while ((n + 1) * TS_PACKET_SIZE <= buf.length && buf[n * TS_PACKET_SIZE] === TS_SYNC_BYTE) n += 1;
    const whole = buf.subarray(0, n * TS_PACKET_SIZE);
    const tail = buf.subarray(n * TS_PACKET_SIZE);
    // copy the tail: it must not keep the whole chunk alive
    this.rest = Buffer.from(tail);
    return whole;
  }

  reset(): void {
    this.rest = Buffer.alloc(0);
  }
}

export type { ViewerSocket } from './viewers.js';

export interface TsFanoutOptions {
  /** a viewer whose socket buffer exceeds this stops receiving until it drains */
  maxBufferedBytes?: number;
  onViewerStall?: (remote: string, bufferedBytes: number) => void;
}

export class TsFanout {
  private readonly packetizer = new TsPacketizer();
  private readonly viewers: ViewerSet;
  private pat: Buffer | undefined;
  private pmt: Buffer | undefined;
  private pmtPid: number | undefined;
  private videoPid: number | undefined;
  /** set once a keyframe went by: the stream is usable */
  keyframes = 0;

  constructor(opts: TsFanoutOptions = {}) {
    this.viewers = new ViewerSet({ ...opts, repeatHeader: true });
  }

  get viewerCount(): number {
    return this.viewers.size;
  }

  add(socket: ViewerSocket): void {
    this.viewers.add(socket);
  }

  /** Feeds encoder output; returns the number of keyframes seen in it. */
  push(chunk: Buffer): number {
    const region = this.packetizer.push(chunk);
    if (region.length === 0) return 0;
    let keyframeAt = -1;
    let keyframesHere = 0;
    let headerAtKeyframe: Buffer | undefined;
    for (let off = 0; off < region.length; off += TS_PACKET_SIZE) {
      const h = readPacketHeader(region, off);
      if (h.pid === 0 && h.payloadUnitStart) {
        const pmtPid = parsePatPmtPid(region, off);
        if (pmtPid !== undefined) {
          this.pat = Buffer.from(region.subarray(off, off + TS_PACKET_SIZE));
          if (pmtPid !== this.pmtPid) {
            this.pmtPid = pmtPid;
            this.pmt = undefined;
          }
        }
      } else if (h.pid === this.pmtPid && h.payloadUnitStart) {
        const videoPid = parsePmtVideoPid(region, off);
        if (videoPid !== undefined) {
          this.pmt = Buffer.from(region.subarray(off, off + TS_PACKET_SIZE));
          this.videoPid = videoPid;
        }
      } else if (h.pid === this.videoPid && h.payloadUnitStart && h.randomAccess) {
        keyframesHere += 1;
        if (keyframeAt < 0 && this.pat && this.pmt) {
          keyframeAt = off;
          headerAtKeyframe = Buffer.concat([this.pat, this.pmt]);
        }
      }
    }
    this.keyframes += keyframesHere;
    this.viewers.deliver(region, keyframeAt, headerAtKeyframe);
    return keyframesHere;
  }

  get isFrozen(): boolean {
    return this.viewers.isFrozen;
  }

  /** A frozen camera: viewers stay connected and get nothing. */
  freeze(): void {
    this.viewers.freeze();
  }

  /** Viewers get the stream again from the next keyframe, PAT and PMT first. */
  unfreeze(): void {
    this.viewers.unfreeze();
  }

  /**
   * After an encoder restart, timestamps and continuity counters start over:
   * viewers are disconnected so they reconnect to a clean stream, as they
   * would from a real camera whose pipeline restarted.
   */
  reset(): void {
    this.packetizer.reset();
    this.pat = undefined;
    this.pmt = undefined;
    this.pmtPid = undefined;
    this.videoPid = undefined;
    this.closeAll();
  }

  closeAll(): void {
    this.viewers.closeAll();
  }
}
