import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseSegmentListLine, SegmentListReader } from '../../../agent/recorder/segment-list.js';
import { redactUrls } from '../../../shared/ffmpeg.js';

const dir = mkdtempSync(join(tmpdir(), 'camvault-list-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('segment list', () => {
  it('parses ffmpeg csv lines', () => {
    expect(parseSegmentListLine('123-ab_000001.mp4,10.000000,20.040000')).toEqual({ filename: '123-ab_000001.mp4', startSec: 10, endSec: 20.04 });
    expect(parseSegmentListLine('"a,b.mp4",0.0,1.5')).toEqual({ filename: 'a,b.mp4', startSec: 0, endSec: 1.5 });
    expect(parseSegmentListLine('garbage')).toBeUndefined();
    expect(parseSegmentListLine('')).toBeUndefined();
  });

  it('reports each closed segment once, and a line only once it is complete', async () => {
    const path = join(dir, 'run.csv');
    const r = new SegmentListReader(path);
    expect(await r.readNew()).toEqual([]); // ffmpeg has not created it yet
    writeFileSync(path, 'run_000000.mp4,0.000000,2.000000\nrun_000001.mp4,2.0000');
    expect((await r.readNew()).map((e) => e.filename)).toEqual(['run_000000.mp4']);
    expect(await r.readNew()).toEqual([]);
    appendFileSync(path, '00,4.000000\n');
    expect(await r.readNew()).toEqual([{ filename: 'run_000001.mp4', startSec: 2, endSec: 4 }]);
  });
});

describe('URLs in log lines', () => {
  it('lose their credentials and query', () => {
    expect(redactUrls('tcp://127.0.0.1:5000: Connection refused')).toBe('tcp://127.0.0.1:5000: Connection refused');
    expect(redactUrls('rtsp://admin:hunter2@cam.local:554/live?token=abc: 401 Unauthorized')).toBe(
      'rtsp://[redacted]@cam.local:554/live?[redacted] 401 Unauthorized',
    );
  });
});
