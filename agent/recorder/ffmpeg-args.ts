import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

/** What the recorder does with a camera's audio. Video is always copied. */
export type AudioMode = 'copy' | 'aac' | 'drop';

/** The camera's video codec, as a probe of the input found it. */
export type InputVideoCodec = 'h264' | 'h265' | 'unknown';

/**
 * Bitrate of audio transcoded to AAC. Cameras that need it send G.711: 8 kHz
 * mono telephone audio, for which 32 kb/s AAC-LC is plenty. ffmpeg's AAC
 * encoder allows at most 6144 bits per channel per frame (48 kb/s at 8 kHz
 * mono) and warns on every launch when asked for more, e.g. 64k.
 */
export const AAC_TRANSCODE_BITRATE = '32k';

export interface RecorderArgsOptions {
  /** any ffmpeg input URL: rtsp://, tcp://, a file */
  input: string;
  segmentSeconds: number;
  /** folder the segments and the segment list go to */
  dir: string;
  /** unique per ffmpeg launch, see newRunId */
  runId: string;
  /**
   * copy (the default) suits AAC; G.711 (pcm_alaw, pcm_mulaw), which MP4 and
   * browsers do not take, needs 'aac' (cheap to transcode) or 'drop'.
   */
  audio?: AudioMode;
  /**
   * H.265 is written as 'hvc1' rather than ffmpeg's default 'hev1': Apple's
   * players refuse 'hev1'. The argv builder cannot see the stream, so the
   * recorder fills this from a probe; 'unknown' and 'h264' change nothing.
   */
  videoCodec?: InputVideoCodec;
  /**
   * How long a stalled network input may stay silent before ffmpeg gives up,
   * in microseconds. Without it a camera that stops sending (but keeps the
   * socket open) would hang the recorder forever.
   */
  inputTimeoutUs?: number;
}

/**
 * The mp4 options each segment is written with. flush_packets=1 must sit
 * here, inside -segment_format_options: given as a plain output option it
 * never reaches the mp4 writer, and ffmpeg 5.1 then buffers 256 KiB (moov
 * included), so a kill leaves a 28-byte file in 9 cases of 10 (DESIGN,
 * "Recording facts"). frag_duration=1000000 caps what a crash loses at ~1 s
 * whatever the camera's GOP.
 */
export const SEGMENT_FORMAT_OPTIONS = 'movflags=+frag_keyframe+empty_moov+default_base_moof:frag_duration=1000000:flush_packets=1';

export const DEFAULT_INPUT_TIMEOUT_US = 10_000_000;

/** The segment list of a run: `<dir>/<runId>.csv`. */
export function segmentListPath(dir: string, runId: string): string {
  return join(dir, `${runId}.csv`);
}

/**
 * The argv (without the ffmpeg path) of one recorder launch. Pure: unit tests
 * assert the strings without running ffmpeg.
 */
export function buildRecorderArgs(opts: RecorderArgsOptions): string[] {
  const { input, segmentSeconds, dir, runId } = opts;
  if (!Number.isFinite(segmentSeconds) || segmentSeconds <= 0) throw new RangeError('segmentSeconds must be positive');
  if (!/^[A-Za-z0-9_-]+$/.test(runId)) throw new RangeError('runId must be plain characters');
  const audio = opts.audio ?? 'copy';

  const inputSide: string[] = [];
  // rw_timeout is a generic AVIO option: it applies to tcp:// (and http) inputs.
  // rtsp has its own socket timeout option whose name changed between ffmpeg
  // versions, so it is left out until it can be tested on both builds.
  if (/^(tcp|http|https):\/\//i.test(input)) {
    inputSide.push('-rw_timeout', String(opts.inputTimeoutUs ?? DEFAULT_INPUT_TIMEOUT_US));
  }

  const codec: string[] = ['-c', 'copy'];
  if (opts.videoCodec === 'h265') codec.push('-tag:v', 'hvc1');
  // the input's sample rate and channels are kept: AAC takes G.711's 8 kHz mono as it is
  if (audio === 'aac') codec.push('-c:a', 'aac', '-b:a', AAC_TRANSCODE_BITRATE);
  else if (audio === 'drop') codec.push('-an');

  // the output pattern is a printf template: a literal % in the folder must be doubled
  const pattern = join(dir, `${runId}_%06d.mp4`).replace(/%(?!06d\.mp4$)/g, '%%');

  return [
    '-nostdin',
    '-hide_banner',
    '-loglevel',
    'warning',
    ...inputSide,
    '-i',
    input,
    '-map',
    '0',
    ...codec,
    '-f',
    'segment',
    '-segment_time',
    String(segmentSeconds),
    '-reset_timestamps',
    '1',
    '-segment_format',
    'mp4',
    '-segment_format_options',
    SEGMENT_FORMAT_OPTIONS,
    '-segment_list',
    segmentListPath(dir, runId),
    '-segment_list_type',
    'csv',
    pattern,
  ];
}

/**
 * A run id: wall time in ms plus random hex. ffmpeg rewrites the segment list
 * and overwrites existing files when it restarts, so every launch needs names
 * no earlier launch used, even if the clock went backwards at boot.
 */
export function newRunId(nowMs: number): string {
  return `${Math.max(0, Math.floor(nowMs))}-${randomBytes(4).toString('hex')}`;
}
