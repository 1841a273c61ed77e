import { describe, expect, it } from 'vitest';
import { parseListName, parseSegmentName, runIdLaunchMs, SegmentClock, segmentName } from '../../../agent/recorder/segment-clock.js';

describe('segment start times', () => {
  it('line up the segments of a run end to end, from the earliest sighting', () => {
    const c = new SegmentClock();
    // seen 300 ms, 50 ms and 120 ms after they closed
    expect(c.place(0, 2.36, 10_000 + 2360 + 300)).toBe(10_300);
    expect(c.place(2.36, 4.36, 10_000 + 4360 + 50)).toBe(10_050 + 2360);
    expect(c.place(4.36, 6.36, 10_000 + 6360 + 120)).toBe(10_050 + 4360);
    expect(c.anchorMs).toBe(10_050);
  });

  it('never place a segment after it was seen', () => {
    const c = new SegmentClock();
    for (const [start, end, seen] of [
      [0, 2, 5000],
      [2, 4, 7100],
      [4, 6, 8900],
    ] as const) {
      expect(c.place(start, end, seen) + (end - start) * 1000).toBeLessThanOrEqual(seen);
    }
  });

  it('start over when stream time stops running with the wall clock (a freeze, a timestamp jump)', () => {
    const c = new SegmentClock(2000);
    c.place(0, 2, 12_000);
    // the camera froze for 30 s and its timestamps went on as if it had not
    expect(c.place(2, 4, 44_000)).toBe(42_000);
    expect(c.anchorMs).toBe(40_000);
    // timestamps that jumped 60 s ahead of the wall clock
    expect(c.place(64, 66, 46_100)).toBe(44_100);
  });

  it('read run ids and segment names as ffmpeg writes them', () => {
    expect(runIdLaunchMs('1700000000000-abcdef01')).toBe(1_700_000_000_000);
    expect(runIdLaunchMs('x-1')).toBeUndefined();
    expect(segmentName('1700000000000-abcdef01', 7)).toBe('1700000000000-abcdef01_000007.mp4');
    expect(parseSegmentName('1700000000000-abcdef01_000007.mp4')).toEqual({ runId: '1700000000000-abcdef01', index: 7 });
    expect(parseSegmentName('1700000000000-abcdef01_000007.mp4.tmp')).toBeUndefined();
    expect(parseSegmentName('clip.mp4')).toBeUndefined();
    expect(parseListName('1700000000000-abcdef01.csv')).toBe('1700000000000-abcdef01');
    expect(parseListName('notes.csv')).toBeUndefined();
  });
});
