import { describe, expect, it } from 'vitest';
import { InputDescriber, LogBudget, parseFfmpegLogLine, parseStreamLine, segmentOpened, type InputDescription } from '../../../agent/recorder/ffmpeg-log.js';

/** Lines as the bundled 2018 ffmpeg printed them with -loglevel level+info (pipeStderrLines trims each line). */
const TS_H264_AAC = [
  "[info] Input #0, mpegts, from 'tcp://127.0.0.1:45887':",
  '[info]   Duration: N/A, start: 2.104000, bitrate: N/A',
  '[info]   Program 1',
  '[info]     Metadata:',
  '[info]       service_name    : Service01',
  '[info]     Stream #0:0[0x100]: Video: h264 (Constrained Baseline) ([27][0][0][0] / 0x001B), yuv420p(progressive), 320x180 [SAR 1:1 DAR 16:9], 10 fps, 10 tbr, 90k tbn, 20 tbc',
  '[info]     Stream #0:1[0x101]: Audio: aac (LC) ([15][0][0][0] / 0x000F), 16000 Hz, mono, fltp, 31 kb/s',
  "[segment @ 0x1d8f1ec0] [info] Opening '/tmp/x/1795936704930-deece7f5.csv' for writing",
  "[segment @ 0x1d8f1ec0] [info] Opening '/tmp/x/1795936704930-deece7f5_000000.mp4' for writing",
  "[info] Output #0, segment, to '/tmp/x/1795936704930-deece7f5_%06d.mp4':",
  '[info]     Stream #0:0: Video: h264 (Constrained Baseline) ([27][0][0][0] / 0x001B), yuv420p(progressive), 320x180 [SAR 1:1 DAR 16:9], q=2-31, 10 fps, 10 tbr, 10240 tbn, 10 tbc',
];

const MKV_HEVC_ALAW = [
  "[info] Input #0, matroska,webm, from 'tcp://127.0.0.1:43241':",
  '[info]   Metadata:',
  '[info]     ENCODER         : Lavf58.24.100',
  '[info]   Duration: N/A, start: 0.000000, bitrate: N/A',
  '[info]     Stream #0:0: Video: hevc (Main), yuv420p(tv, progressive), 320x180 [SAR 1:1 DAR 16:9], 10 fps, 10 tbr, 1k tbn, 10 tbc (default)',
  '[info]     Metadata:',
  '[info]       ENCODER         : Lavc58.42.100 libx265',
  '[info]     Stream #0:1: Audio: pcm_alaw ([6][0][0][0] / 0x0006), 8000 Hz, mono, s16, 64 kb/s (default)',
  "[segment @ 0x3a8e0c0] [info] Opening '/tmp/x/1-ab.csv' for writing",
];

function describe_(lines: string[]): InputDescription | undefined {
  const d = new InputDescriber();
  for (const l of lines) {
    const r = d.push(parseFfmpegLogLine(l));
    if (r) return r;
  }
  return d.finish();
}

describe('ffmpeg log lines', () => {
  it('carry their level and the component that logged them', () => {
    expect(parseFfmpegLogLine('[mpegts @ 0x39a0ee40] [warning] DTS 131760 < 671760 out of order')).toEqual({
      level: 'warning',
      context: 'mpegts',
      text: 'DTS 131760 < 671760 out of order',
    });
    expect(parseFfmpegLogLine('[NULL @ 0x187c2a40] [error] sps_id 1 out of range')).toMatchObject({ level: 'error', context: 'NULL' });
    expect(parseFfmpegLogLine('[info] Stream mapping:')).toEqual({ level: 'info', text: 'Stream mapping:' });
    // a build that ignores the level flag, or half a message: treated as a warning by the recorder
    expect(parseFfmpegLogLine('tcp://127.0.0.1:5000: Connection refused')).toEqual({ level: 'unknown', text: 'tcp://127.0.0.1:5000: Connection refused' });
  });

  it('tell which segment file ffmpeg opened, and not the list', () => {
    expect(segmentOpened(parseFfmpegLogLine(TS_H264_AAC[8] as string))).toBe('/tmp/x/1795936704930-deece7f5_000000.mp4');
    expect(segmentOpened(parseFfmpegLogLine(TS_H264_AAC[7] as string))).toBeUndefined();
  });

  it("describe an MPEG-TS input's H.264 and AAC, from the input block only", () => {
    expect(describe_(TS_H264_AAC)).toEqual({
      format: 'mpegts',
      incomplete: false,
      streams: [
        { index: 0, kind: 'video', codec: 'h264', width: 320, height: 180, incomplete: false },
        { index: 1, kind: 'audio', codec: 'aac', incomplete: false },
      ],
    });
  });

  it("describe a Matroska input's H.265 and G.711, skipping metadata lines", () => {
    expect(describe_(MKV_HEVC_ALAW)).toEqual({
      format: 'matroska,webm',
      incomplete: false,
      streams: [
        { index: 0, kind: 'video', codec: 'hevc', width: 320, height: 180, incomplete: false },
        { index: 1, kind: 'audio', codec: 'pcm_alaw', incomplete: false },
      ],
    });
  });

  it('mark an input whose parameters ffmpeg did not find while probing', () => {
    const d = describe_([
      "[mpegts @ 0x1] [warning] Could not find codec parameters for stream 1 (Audio: aac ([15][0][0][0] / 0x000F), 0 channels, fltp): unspecified sample rate",
      "[info] Input #0, mpegts, from 'tcp://h:1':",
      '[info]     Stream #0:0[0x100]: Video: h264 ([27][0][0][0] / 0x001B), none, 90k tbr, 90k tbn',
      '[info]     Stream #0:1[0x101]: Audio: aac ([15][0][0][0] / 0x000F), 0 channels, fltp',
      '[info] Stream mapping:',
    ]);
    expect(d?.incomplete).toBe(true);
    expect(d?.streams.map((s) => s.incomplete)).toEqual([true, true]);
  });

  it('end the input block at the first problem after it, as when the header cannot be written', () => {
    const d = new InputDescriber();
    for (const l of MKV_HEVC_ALAW.slice(0, 8)) expect(d.push(parseFfmpegLogLine(l))).toBeUndefined();
    const r = d.push(parseFfmpegLogLine('[mp4 @ 0x2] [error] Could not find tag for codec pcm_alaw in stream #1, codec not currently supported in container'));
    expect(r?.streams.map((s) => s.codec)).toEqual(['hevc', 'pcm_alaw']);
    expect(d.done).toBe(true);
    expect(d.finish()).toMatchObject({ streams: [{ codec: 'hevc' }, { codec: 'pcm_alaw' }] });
  });

  it('read stream lines with a language and other kinds of stream', () => {
    expect(parseStreamLine('Stream #0:2(eng): Data: none (KLVA / 0x41564C4B)')).toEqual({ index: 2, kind: 'data', codec: 'none', incomplete: false });
    expect(parseStreamLine('Stream #0:1(und): Audio: pcm_mulaw, 8000 Hz, mono, s16, 64 kb/s')).toMatchObject({ kind: 'audio', codec: 'pcm_mulaw' });
    expect(parseStreamLine('Stream #0:0: Video: mjpeg, yuvj420p(pc, bt470bg/unknown/unknown), 1280x720, 25 tbr')).toMatchObject({ codec: 'mjpeg', width: 1280, height: 720 });
    expect(parseStreamLine('Duration: N/A')).toBeUndefined();
  });

  it('say nothing about an input when ffmpeg exited before describing it', () => {
    const d = new InputDescriber();
    d.push(parseFfmpegLogLine('tcp://127.0.0.1:1: Connection refused'));
    expect(d.finish()).toBeUndefined();
  });
});

describe('the ffmpeg log budget', () => {
  it('lets maxLines through a window, counts the rest and reports the count with the next window', () => {
    let t = 0;
    const b = new LogBudget(2, 1000, () => t);
    expect(b.take()).toEqual({ ok: true, suppressed: 0 });
    expect(b.take()).toEqual({ ok: true, suppressed: 0 });
    expect(b.take()).toEqual({ ok: false, suppressed: 0 });
    expect(b.take()).toEqual({ ok: false, suppressed: 0 });
    t = 1000;
    expect(b.take()).toEqual({ ok: true, suppressed: 2 });
    expect(b.take()).toEqual({ ok: true, suppressed: 0 });
  });
});
