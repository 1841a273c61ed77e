import { FAST_PROBE, THOROUGH_PROBE, type AudioMode, type InputProbe, type InputVideoCodec } from './ffmpeg-args.js';
import type { InputDescription } from './ffmpeg-log.js';

/**
 * What a launch of the recorder's ffmpeg does with the camera's streams:
 * video is always copied (tagged hvc1 when H.265), audio is copied when it is
 * AAC, transcoded to AAC when it is anything else (G.711 above all, which MP4
 * cannot carry: "Could not find tag for codec pcm_alaw"), or dropped, as the
 * configuration says (DESIGN, "Real cameras are not testsrc").
 *
 * The recorder learns the codecs from the input block ffmpeg prints as each
 * run starts, rather than from a separate probe before each launch: a probe
 * would open a second connection to the camera (some allow only a few) and
 * throw away the second or so of footage it reads. A launch whose argv does
 * not fit what it found is stopped at once and started again with the right
 * one; the recorder remembers the input, so that happens on the first launch
 * (for anything but H.264 with AAC or no audio) and when the camera changes
 * codec, not on every restart.
 */

/** What ffmpeg does with the audio: copied, transcoded to AAC, dropped, or there is none. */
export type AudioAction = 'copy' | 'transcode' | 'drop' | 'none';

export interface RecordingPlan {
  videoCodec: InputVideoCodec;
  audio: AudioAction;
  /** the input needed avformat's full probe to find every stream's parameters */
  thoroughProbe: boolean;
}

/** Before the first launch nothing is known: H.264 with AAC (or no audio) needs nothing more. */
export function initialPlan(mode: AudioMode): RecordingPlan {
  return { videoCodec: 'unknown', audio: mode === 'drop' ? 'drop' : 'copy', thoroughProbe: false };
}

/** The plan for an input whose streams ffmpeg described. */
export function planRecording(input: InputDescription, mode: AudioMode, previous?: RecordingPlan): RecordingPlan {
  const video = input.streams.find((s) => s.kind === 'video');
  const videoCodec: InputVideoCodec = video?.codec === 'h264' ? 'h264' : video?.codec === 'hevc' ? 'h265' : 'unknown';
  const audio = input.streams.filter((s) => s.kind === 'audio');
  let action: AudioAction;
  if (audio.length === 0) action = 'none';
  else if (mode === 'drop') action = 'drop';
  else if (audio.every((s) => s.codec === 'aac')) action = 'copy';
  else action = 'transcode';
  // once an input needed the full probe it keeps it: the fast one would miss again
  return { videoCodec, audio: action, thoroughProbe: input.incomplete || previous?.thoroughProbe === true };
}

/** The argv options a plan sets. */
export function planArgs(plan: RecordingPlan): { videoCodec: InputVideoCodec; audio: AudioMode; probe: InputProbe } {
  return {
    videoCodec: plan.videoCodec,
    audio: plan.audio === 'transcode' ? 'aac' : plan.audio === 'drop' ? 'drop' : 'copy',
    probe: plan.thoroughProbe ? THOROUGH_PROBE : FAST_PROBE,
  };
}

/**
 * Whether a run launched with plan `a` records what plan `b` wants, so it
 * needs no relaunch: the same hvc1 tagging and probe, and the same audio
 * handling unless there is no audio, for which any handling does.
 */
export function sameArgs(a: RecordingPlan, b: RecordingPlan): boolean {
  const x = planArgs(a);
  const y = planArgs(b);
  const audioFits = a.audio === 'none' || b.audio === 'none' || x.audio === y.audio;
  return (x.videoCodec === 'h265') === (y.videoCodec === 'h265') && audioFits && x.probe === y.probe;
}

export interface PlanDescription {
  level: 'info' | 'warn' | 'error';
  /** one line for the log: which path was chosen for each stream, and why */
  message: string;
}

/** The log line that says which path the recording takes. Never silent: no video is an error. */
export function describePlan(input: InputDescription, plan: RecordingPlan, mode: AudioMode): PlanDescription {
  const video = input.streams.find((s) => s.kind === 'video');
  const audio = input.streams.filter((s) => s.kind === 'audio');
  const audioCodecs = [...new Set(audio.map((s) => s.codec))].join(', ');
  const parts: string[] = [];
  let level: PlanDescription['level'] = 'info';
  if (!video) {
    level = 'error';
    parts.push('the camera sends no video: segments will hold none');
  } else {
    const size = video.width && video.height ? ` ${video.width}x${video.height}` : '';
    if (plan.videoCodec === 'h265') parts.push(`video hevc${size} copied, tagged hvc1`);
    else if (plan.videoCodec === 'h264') parts.push(`video h264${size} copied`);
    else {
      level = 'warn';
      parts.push(`video ${video.codec}${size} copied as it is (browsers may not play ${video.codec})`);
    }
  }
  if (plan.audio === 'none') parts.push('no audio');
  else if (plan.audio === 'drop') parts.push(`audio ${audioCodecs} dropped (audio: 'drop')`);
  else if (plan.audio === 'copy') parts.push(`audio ${audioCodecs} copied`);
  else parts.push(`audio ${audioCodecs} transcoded to AAC (audio: '${mode}'; MP4 and browsers take AAC, not ${audioCodecs})`);
  if (plan.thoroughProbe) parts.push("the input's parameters needed avformat's full probe (5 s)");
  return { level, message: `recording ${parts.join('; ')}` };
}
