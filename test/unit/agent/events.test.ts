import { describe, expect, it } from 'vitest';
import { classifyKind, MotionEvents } from '../../../agent/events.js';
import { ManualClock } from '../../../shared/clock.js';
import { createLogger } from '../../../shared/log.js';

describe('clip kind from motion times', () => {
  const start = 100_000;
  const end = 110_000;

  it('is event when motion falls inside the segment', () => {
    expect(classifyKind([105_000], start, end)).toBe('event');
  });

  it('is event when motion falls just outside, within the margin', () => {
    expect(classifyKind([start - 900], start, end, 1000)).toBe('event');
    expect(classifyKind([end + 1000], start, end, 1000)).toBe('event');
  });

  it('is continuous without motion or when motion is farther away than the margin', () => {
    expect(classifyKind([], start, end)).toBe('continuous');
    expect(classifyKind([start - 1001, end + 1001], start, end, 1000)).toBe('continuous');
  });

  it('forgets motion older than it keeps, so long-past motion marks nothing', () => {
    const clock = new ManualClock(1_000_000);
    const ev = new MotionEvents({ logger: createLogger({ level: 'silent' }), clock, keepMs: 60_000 });
    ev.recordMotion(1_000_000);
    expect(ev.classify(995_000, 1_005_000)).toBe('event');
    clock.advance(120_000);
    ev.recordMotion(1_120_000);
    expect(ev.classify(995_000, 1_005_000)).toBe('continuous');
    expect(ev.classify(1_115_000, 1_125_000)).toBe('event');
  });
});
