import { describe, expect, it } from 'vitest';
import {
  AAC_TRANSCODE_BITRATE,
  buildRecorderArgs,
  FAST_PROBE,
  newRunId,
  SEGMENT_FORMAT_OPTIONS,
  THOROUGH_PROBE,
} from '../../../agent/recorder/ffmpeg-args.js';

const base = { input: 'rtsp://cam.local/stream', segmentSeconds: 10, dir: '/data/segments/main', runId: '1700000000000-abcdef01' };

describe('recorder ffmpeg arguments', () => {
  it("are the argv DESIGN measured, with a short probe, level-tagged info logs and only video and audio mapped, for an rtsp input", () => {
    expect(buildRecorderArgs(base)).toEqual([
      '-nostdin',
      '-hide_banner',
      '-loglevel',
      'level+info',
      '-nostats',
      '-analyzeduration',
      '1000000',
      '-probesize',
      '2000000',
      '-i',
      'rtsp://cam.local/stream',
      '-map',
      '0:v?',
      '-map',
      '0:a?',
      '-c',
      'copy',
      '-f',
      'segment',
      '-segment_time',
      '10',
      '-reset_timestamps',
      '1',
      '-segment_format',
      'mp4',
      '-segment_format_options',
      'movflags=+frag_keyframe+empty_moov+default_base_moof:frag_duration=1000000:flush_packets=1',
      '-segment_list',
      '/data/segments/main/1700000000000-abcdef01.csv',
      '-segment_list_type',
      'csv',
      '/data/segments/main/1700000000000-abcdef01_%06d.mp4',
    ]);
  });

  it('put flush_packets=1 inside -segment_format_options, never as a plain output option', () => {
    const args = buildRecorderArgs(base);
    const i = args.indexOf('-segment_format_options');
    expect(args[i + 1]).toBe(SEGMENT_FORMAT_OPTIONS);
    expect(args[i + 1]?.split(':')).toContain('flush_packets=1');
    expect(args[i + 1]?.split(':')).toContain('frag_duration=1000000');
    expect(args).not.toContain('-flush_packets');
    expect(args.filter((a) => a.includes('flush_packets'))).toHaveLength(1);
  });

  it('copy video without transcoding whatever the audio setting', () => {
    for (const audio of ['copy', 'aac', 'drop'] as const) {
      const args = buildRecorderArgs({ ...base, audio });
      const i = args.indexOf('-c');
      expect(args.slice(i, i + 2)).toEqual(['-c', 'copy']);
      expect(args).not.toContain('-c:v');
    }
    expect(buildRecorderArgs({ ...base, audio: 'aac' })).toEqual(expect.arrayContaining(['-c:a', 'aac']));
    expect(buildRecorderArgs({ ...base, audio: 'drop' })).toContain('-an');
    expect(buildRecorderArgs(base)).not.toContain('-an');
  });

  it('map the video and the audio, each optional, and no data stream (MP4 takes none); dropped audio is not mapped', () => {
    const maps = (args: string[]): string[] => args.flatMap((a, i) => (a === '-map' ? [args[i + 1] as string] : []));
    expect(maps(buildRecorderArgs(base))).toEqual(['0:v?', '0:a?']);
    expect(maps(buildRecorderArgs({ ...base, audio: 'aac' }))).toEqual(['0:v?', '0:a?']);
    expect(maps(buildRecorderArgs({ ...base, audio: 'drop' }))).toEqual(['0:v?']);
    expect(buildRecorderArgs(base)).not.toContain('0');
  });

  it('probe the input for 1 s and 2 MB before -i by default, or as long as avformat does by itself when asked', () => {
    const at = (args: string[], opt: string): string | undefined => {
      const i = args.indexOf(opt);
      expect(i).toBeGreaterThan(-1);
      expect(i).toBeLessThan(args.indexOf('-i'));
      return args[i + 1];
    };
    const fast = buildRecorderArgs(base);
    expect(at(fast, '-analyzeduration')).toBe(String(FAST_PROBE.analyzeDurationUs));
    expect(at(fast, '-probesize')).toBe(String(FAST_PROBE.probeSizeBytes));
    expect(FAST_PROBE).toEqual({ analyzeDurationUs: 1_000_000, probeSizeBytes: 2_000_000 });
    const thorough = buildRecorderArgs({ ...base, probe: THOROUGH_PROBE });
    expect(at(thorough, '-analyzeduration')).toBe('5000000');
    expect(at(thorough, '-probesize')).toBe('5000000');
  });

  it('tag every log line with its level and print no progress lines, so the recorder can read the input block', () => {
    const args = buildRecorderArgs(base);
    expect(args[args.indexOf('-loglevel') + 1]).toBe('level+info');
    expect(args).toContain('-nostats');
  });

  it('tag H.265 as hvc1, which Apple players need, and leave other video untagged', () => {
    const args = buildRecorderArgs({ ...base, videoCodec: 'h265' });
    const c = args.indexOf('-c');
    expect(args.slice(c, c + 4)).toEqual(['-c', 'copy', '-tag:v', 'hvc1']);
    for (const videoCodec of ['h264', 'unknown', undefined] as const) {
      expect(buildRecorderArgs({ ...base, videoCodec }).some((a) => a.startsWith('-tag'))).toBe(false);
    }
  });

  it('transcode audio to AAC at a bitrate 8 kHz G.711 allows, keeping its rate and channels; drop it; or copy it', () => {
    const aac = buildRecorderArgs({ ...base, audio: 'aac', videoCodec: 'h265' });
    const a = aac.indexOf('-c:a');
    expect(aac.slice(a, a + 4)).toEqual(['-c:a', 'aac', '-b:a', AAC_TRANSCODE_BITRATE]);
    expect(Number.parseInt(AAC_TRANSCODE_BITRATE, 10)).toBeLessThanOrEqual(48);
    expect(aac).not.toContain('-ar');
    expect(aac).not.toContain('-ac');
    expect(aac).toEqual(expect.arrayContaining(['-tag:v', 'hvc1']));
    const drop = buildRecorderArgs({ ...base, audio: 'drop' });
    expect(drop).toContain('-an');
    expect(drop).not.toContain('-c:a');
    const copy = buildRecorderArgs({ ...base, audio: 'copy' });
    expect(copy).not.toContain('-c:a');
    expect(copy).not.toContain('-an');
    expect(copy).toEqual(buildRecorderArgs(base));
  });

  it('give a tcp input a read timeout before -i, so a silent camera is noticed', () => {
    const args = buildRecorderArgs({ ...base, input: 'tcp://127.0.0.1:5000' });
    const t = args.indexOf('-rw_timeout');
    expect(t).toBeGreaterThan(-1);
    expect(t).toBeLessThan(args.indexOf('-i'));
    expect(args[t + 1]).toBe('10000000');
    expect(buildRecorderArgs({ ...base, input: 'tcp://127.0.0.1:5000', inputTimeoutUs: 3_000_000 })).toContain('3000000');
    expect(buildRecorderArgs(base)).not.toContain('-rw_timeout');
  });

  it('use the segment length given', () => {
    const args = buildRecorderArgs({ ...base, segmentSeconds: 2 });
    expect(args[args.indexOf('-segment_time') + 1]).toBe('2');
  });

  it('escape a % in the folder so the output template stays one number', () => {
    const args = buildRecorderArgs({ ...base, dir: '/data/100%/main' });
    expect(args[args.length - 1]).toBe('/data/100%%/main/1700000000000-abcdef01_%06d.mp4');
    expect(args[args.indexOf('-segment_list') + 1]).toBe('/data/100%/main/1700000000000-abcdef01.csv');
  });

  it('refuse a run id that could change the paths', () => {
    expect(() => buildRecorderArgs({ ...base, runId: '../x' })).toThrow();
    expect(() => buildRecorderArgs({ ...base, segmentSeconds: 0 })).toThrow();
  });
});

describe('run ids', () => {
  it('start with the time in ms and differ on every launch, even at the same ms', () => {
    const a = newRunId(1_700_000_000_000);
    const b = newRunId(1_700_000_000_000);
    expect(a).toMatch(/^1700000000000-[0-9a-f]{8}$/);
    expect(a).not.toBe(b);
  });
});
