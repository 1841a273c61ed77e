import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

/**
 * What the configuration asks of a camera's audio (config `audio`). Video is
 * always copied. AAC is copied in both 'copy' and 'aac'; any other audio
 * (G.711 above all, which MP4 cannot carry) is transcoded to AAC in both, and
 * 'drop' records no audio at all (see stream-plan.ts).
 */
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
   * What ffmpeg does with the audio, as stream-plan.ts decided it from the
   * input's codecs: 'copy' (the default) for AAC; 'aac' transcodes (G.711,
   * which MP4 and browsers do not take, is cheap to transcode); 'drop'.
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
  /** how much of the input ffmpeg reads to learn its streams before it writes; default FAST_PROBE */
  probe?: InputProbe;
}

/**
 * avformat reads the start of the input to learn its streams before the
 * first segment is written: analyzeduration (µs of stream time) and probesize
 * (bytes) cap that read, whichever comes first.
 */
export interface InputProbe {
  analyzeDurationUs: number;
  probeSizeBytes: number;
}

/**
 * With avformat's defaults (5 s, 5 MB) the bundled ffmpeg took 5.4–6.4 s from
 * launch to the first byte written on the simulator's MPEG-TS. With 1 s it
 * takes 1.4–2.5 s (6 launches), and the sim's AAC in MPEG-TS and G.711 in
 * Matroska keep their audio track (test/integration/recorder-probe.test.ts).
 * 0.5 s and 0.7 s were a little faster (1.3–2.1 s) but left the first AAC
 * packets without timestamps in 4 and 2 launches of 6 ("Timestamps are unset
 * in a packet for stream 1"); 1 s never did. Matroska takes ~1 s whatever
 * the value, and over RTSP the SDP already names every stream's parameters.
 * Nothing is lost to the probe: the packets it reads are written once it
 * ends. The 2 MB probesize covers 1 s of stream up to 16 Mb/s, and bounds the
 * wait when a camera's timestamps are so broken that analyzeduration never
 * ends the read (5 MB would be 20 s at 2 Mb/s).
 */
export const FAST_PROBE: InputProbe = { analyzeDurationUs: 1_000_000, probeSizeBytes: 2_000_000 };

/**
 * avformat's own defaults: for an input on which the fast probe missed a
 * stream's parameters (ffmpeg says "Could not find codec parameters"), so
 * the recorder launches again with these.
 */
export const THOROUGH_PROBE: InputProbe = { analyzeDurationUs: 5_000_000, probeSizeBytes: 5_000_000 };

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

  const probe = opts.probe ?? FAST_PROBE;
  const inputSide: string[] = ['-analyzeduration', String(probe.analyzeDurationUs), '-probesize', String(probe.probeSizeBytes)];
  // rw_timeout is a generic AVIO option: it applies to tcp:// (and http) inputs.
  // rtsp has its own socket timeout option whose name changed between ffmpeg
  // versions, so it is left out until it can be tested on both builds.
  if (/^(tcp|http|https):\/\//i.test(input)) {
    inputSide.push('-rw_timeout', String(opts.inputTimeoutUs ?? DEFAULT_INPUT_TIMEOUT_US));
  }

  // Video and audio only: MP4 takes no data streams (an ONVIF metadata track,
  // KLV in MPEG-TS), and with -map 0 one of those fails every launch. The '?'
  // makes each optional: a camera without audio records video alone, and one
  // without video records segments the recorder reports as an error.
  const map = ['-map', '0:v?'];
  if (audio !== 'drop') map.push('-map', '0:a?');
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
    // info, each line tagged with its level: the recorder reads the input's
    // streams and each segment opened from it, and logs only warnings and errors
    '-loglevel',
    'level+info',
    '-nostats',
    ...inputSide,
    '-i',
    input,
    ...map,
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
