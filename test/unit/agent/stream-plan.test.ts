import { describe, expect, it } from 'vitest';
import { FAST_PROBE, THOROUGH_PROBE, type AudioMode } from '../../../agent/recorder/ffmpeg-args.js';
import type { InputDescription, InputStream } from '../../../agent/recorder/ffmpeg-log.js';
import { describePlan, initialPlan, planArgs, planRecording, sameArgs } from '../../../agent/recorder/stream-plan.js';

const video = (codec: string): InputStream => ({ index: 0, kind: 'video', codec, width: 320, height: 180, incomplete: false });
const audio = (codec: string): InputStream => ({ index: 1, kind: 'audio', codec, incomplete: false });
const input = (...streams: InputStream[]): InputDescription => ({ format: 'mpegts', streams, incomplete: false });

describe('the recording plan for what a camera sends', () => {
  const cases: { v: string; a?: string; mode: AudioMode; videoCodec: string; action: string; ffmpegAudio: string }[] = [
    { v: 'h264', a: 'aac', mode: 'copy', videoCodec: 'h264', action: 'copy', ffmpegAudio: 'copy' },
    // AAC is copied even when the configuration says aac: it is AAC already
    { v: 'h264', a: 'aac', mode: 'aac', videoCodec: 'h264', action: 'copy', ffmpegAudio: 'copy' },
    { v: 'h264', a: 'aac', mode: 'drop', videoCodec: 'h264', action: 'drop', ffmpegAudio: 'drop' },
    // G.711 cannot be copied into MP4: 'copy' transcodes it too
    { v: 'hevc', a: 'pcm_alaw', mode: 'copy', videoCodec: 'h265', action: 'transcode', ffmpegAudio: 'aac' },
    { v: 'hevc', a: 'pcm_mulaw', mode: 'aac', videoCodec: 'h265', action: 'transcode', ffmpegAudio: 'aac' },
    { v: 'hevc', a: 'pcm_alaw', mode: 'drop', videoCodec: 'h265', action: 'drop', ffmpegAudio: 'drop' },
    { v: 'h264', mode: 'copy', videoCodec: 'h264', action: 'none', ffmpegAudio: 'copy' },
    { v: 'mjpeg', a: 'pcm_mulaw', mode: 'copy', videoCodec: 'unknown', action: 'transcode', ffmpegAudio: 'aac' },
  ];
  for (const c of cases) {
    it(`${c.v} + ${c.a ?? 'no audio'}, audio '${c.mode}': video copied (${c.videoCodec}), audio ${c.action}`, () => {
      const plan = planRecording(input(video(c.v), ...(c.a ? [audio(c.a)] : [])), c.mode);
      expect(plan).toEqual({ videoCodec: c.videoCodec, audio: c.action, thoroughProbe: false });
      expect(planArgs(plan)).toEqual({ videoCodec: c.videoCodec, audio: c.ffmpegAudio, probe: FAST_PROBE });
    });
  }

  it('needs no relaunch for H.264 with AAC or no audio, and one for H.265 or G.711', () => {
    const first = initialPlan('copy');
    expect(sameArgs(first, planRecording(input(video('h264'), audio('aac')), 'copy'))).toBe(true);
    expect(sameArgs(first, planRecording(input(video('h264')), 'copy'))).toBe(true);
    expect(sameArgs(first, planRecording(input(video('hevc'), audio('aac')), 'copy'))).toBe(false);
    expect(sameArgs(first, planRecording(input(video('h264'), audio('pcm_alaw')), 'copy'))).toBe(false);
    // with audio dropped by configuration, a camera without audio changes nothing
    expect(sameArgs(initialPlan('drop'), planRecording(input(video('h264')), 'drop'))).toBe(true);
  });

  it('keeps the thorough probe once an input needed it', () => {
    const missing = { ...input(video('h264'), audio('aac')), incomplete: true };
    const plan = planRecording(missing, 'copy');
    expect(plan.thoroughProbe).toBe(true);
    expect(planArgs(plan).probe).toBe(THOROUGH_PROBE);
    expect(sameArgs(initialPlan('copy'), plan)).toBe(false);
    expect(planRecording(input(video('h264'), audio('aac')), 'copy', plan).thoroughProbe).toBe(true);
  });

  it('says in one line which path each stream takes, and no video is an error', () => {
    const g711 = input(video('hevc'), audio('pcm_alaw'));
    expect(describePlan(g711, planRecording(g711, 'copy'), 'copy')).toEqual({
      level: 'info',
      message: "recording video hevc 320x180 copied, tagged hvc1; audio pcm_alaw transcoded to AAC (audio: 'copy'; MP4 and browsers take AAC, not pcm_alaw)",
    });
    const dropped = input(video('h264'), audio('aac'));
    expect(describePlan(dropped, planRecording(dropped, 'drop'), 'drop').message).toBe("recording video h264 320x180 copied; audio aac dropped (audio: 'drop')");
    const none = input(audio('aac'));
    expect(describePlan(none, planRecording(none, 'copy'), 'copy')).toMatchObject({ level: 'error', message: expect.stringContaining('no video') });
    const mjpeg = input(video('mjpeg'));
    expect(describePlan(mjpeg, planRecording(mjpeg, 'copy'), 'copy').level).toBe('warn');
  });
});
