/**
 * What the recorder's ffmpeg says on stderr, read line by line. The recorder
 * runs it with `-loglevel level+info`, so each line carries its level:
 *
 *   [info]     Stream #0:0[0x100]: Video: hevc (Main) ([36][0][0][0] / 0x0024), yuv420p(tv), 320x180 [SAR 1:1 DAR 16:9], …
 *   [segment @ 0x1d8f1ec0] [info] Opening '/data/segments/main/1700000000000-0a1b2c3d_000001.mp4' for writing
 *   [mpegts @ 0x39a0ee40] [warning] DTS 131760 < 671760 out of order
 *
 * From these the recorder learns the input's codecs (to choose the argv of
 * the launch: hvc1 tagging, audio copied, transcoded or dropped), when a new
 * segment opens, and what deserves a log line. Pure: unit-tested on lines
 * captured from the bundled 2018 build.
 */

export type FfmpegLogLevel = 'panic' | 'fatal' | 'error' | 'warning' | 'info' | 'verbose' | 'debug' | 'trace' | 'unknown';

export interface FfmpegLogLine {
  level: FfmpegLogLevel;
  /** the component that logged it ('mpegts', 'segment', …), when ffmpeg says */
  context?: string;
  /** the message, trimmed */
  text: string;
}

const LINE = /^(?:\[([^\]@]+?) @ 0x[0-9a-f]+\]\s*)?\[(panic|fatal|error|warning|info|verbose|debug|trace)\]\s?(.*)$/;

/**
 * One stderr line. A line without a level tag (a build that ignores the
 * `level` flag, or the rest of a message split over two lines) is 'unknown'
 * and is treated like a warning: logged, never ignored.
 */
export function parseFfmpegLogLine(line: string): FfmpegLogLine {
  const m = LINE.exec(line.trim());
  if (!m) return { level: 'unknown', text: line.trim() };
  const out: FfmpegLogLine = { level: m[2] as FfmpegLogLevel, text: (m[3] ?? '').trim() };
  if (m[1]) out.context = m[1].trim();
  return out;
}

/** warning, error and worse, and lines of unknown level: what the recorder logs at warn or error. */
export function isProblem(line: FfmpegLogLine): boolean {
  return line.level === 'warning' || line.level === 'error' || line.level === 'fatal' || line.level === 'panic' || line.level === 'unknown';
}

/** The segment file ffmpeg has just opened, from `Opening '<path>' for writing` (the list is opened that way too). */
export function segmentOpened(line: FfmpegLogLine): string | undefined {
  const m = /^Opening '(.+\.mp4)' for writing$/.exec(line.text);
  return m ? m[1] : undefined;
}

export type StreamKind = 'video' | 'audio' | 'data' | 'subtitle' | 'other';

export interface InputStream {
  /** the stream's index in the input (#0:index) */
  index: number;
  kind: StreamKind;
  /** ffmpeg's codec name: h264, hevc, aac, pcm_alaw, pcm_mulaw, … */
  codec: string;
  width?: number;
  height?: number;
  /** ffmpeg lacked parameters (a video size, audio channels) when it stopped probing */
  incomplete: boolean;
}

export interface InputDescription {
  /** the demuxer: mpegts, matroska,webm, rtsp, … */
  format?: string;
  streams: InputStream[];
  /** ffmpeg said "Could not find codec parameters" for some stream, or a stream line shows missing ones */
  incomplete: boolean;
}

const STREAM = /^Stream #0:(\d+)(?:\[0x[0-9a-f]+\])?(?:\([^)]*\))?: (\w+): ([A-Za-z0-9_]+)(.*)$/;

/** One `Stream #0:N…` line of the input block, or undefined. */
export function parseStreamLine(text: string): InputStream | undefined {
  const m = STREAM.exec(text);
  if (!m) return undefined;
  const type = (m[2] ?? '').toLowerCase();
  const kind: StreamKind = type === 'video' || type === 'audio' || type === 'data' || type === 'subtitle' ? type : 'other';
  const rest = m[4] ?? '';
  const stream: InputStream = { index: Number(m[1]), kind, codec: (m[3] ?? '').toLowerCase(), incomplete: false };
  if (kind === 'video') {
    // the first WxH after the codec: "320x180 [SAR 1:1 DAR 16:9]"; a hex tag like 0x001B has one digit before the x
    const size = /(?:^|[\s,])(\d{2,5})x(\d{2,5})\b/.exec(rest);
    if (size) {
      stream.width = Number(size[1]);
      stream.height = Number(size[2]);
    } else {
      stream.incomplete = true;
    }
  }
  if (kind === 'audio' && /\b0 channels\b/.test(rest)) stream.incomplete = true;
  return stream;
}

/**
 * Collects the input's block (`Input #0, mpegts, from '…':` and its
 * `Stream #0:N` lines) from a run's stderr. push() returns the description
 * once the block has ended: at the output's block, the stream mapping, the
 * first file opened, or the first problem ffmpeg reports after it (a failure
 * to write the header, say). finish() returns what was seen when ffmpeg
 * exited before that.
 */
export class InputDescriber {
  private state: 'before' | 'input' | 'done' = 'before';
  private format: string | undefined;
  private readonly streams: InputStream[] = [];
  private incomplete = false;

  get done(): boolean {
    return this.state === 'done';
  }

  push(line: FfmpegLogLine): InputDescription | undefined {
    if (this.state === 'done') return undefined;
    const text = line.text;
    if (/^Could not find codec parameters for stream/.test(text)) {
      this.incomplete = true;
      return undefined;
    }
    if (this.state === 'before') {
      const m = /^Input #0, (.+?), from '/.exec(text);
      if (m) {
        this.state = 'input';
        this.format = m[1];
      }
      return undefined;
    }
    const stream = line.level === 'info' ? parseStreamLine(text) : undefined;
    if (stream) {
      this.streams.push(stream);
      return undefined;
    }
    const ended = /^Output #0\b/.test(text) || /^Stream mapping:/.test(text) || segmentOpened(line) !== undefined || /^Opening '/.test(text) || isProblem(line);
    return ended ? this.finish() : undefined;
  }

  finish(): InputDescription | undefined {
    if (this.state === 'before') return undefined;
    this.state = 'done';
    const streams = [...this.streams];
    return { format: this.format, streams, incomplete: this.incomplete || streams.some((s) => s.incomplete) };
  }
}

/**
 * At most maxLines log lines a window; the rest are counted, and the count
 * is handed over with the first line of the next window. A camera that makes
 * ffmpeg warn on every packet must not fill the SD card with logs.
 */
export class LogBudget {
  private windowStart: number;
  private used = 0;
  private suppressed = 0;

  constructor(
    private readonly maxLines = 20,
    private readonly windowMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {
    this.windowStart = now();
  }

  /** Whether a line may be logged now, and how many were suppressed before it (0 mostly). */
  take(): { ok: boolean; suppressed: number } {
    const t = this.now();
    let suppressed = 0;
    if (t - this.windowStart >= this.windowMs) {
      suppressed = this.suppressed;
      this.windowStart = t;
      this.used = 0;
      this.suppressed = 0;
    }
    if (this.used < this.maxLines) {
      this.used += 1;
      return { ok: true, suppressed };
    }
    this.suppressed += 1;
    return { ok: false, suppressed };
  }
}
