import { describe, expect, it } from 'vitest';
import { sliceBytes, TokenBucket } from '../../../agent/uploader/token-bucket.js';
import { ManualClock } from '../../../shared/clock.js';

describe('upload token bucket', () => {
  it('lets a burst through at once, then makes each byte wait its turn at the rate', () => {
    const clock = new ManualClock(0);
    const b = new TokenBucket({ bytesPerSec: 1000, burstBytes: 500, clock });
    expect(b.reserve(500)).toBe(0);
    // the bucket is empty: 100 bytes take 100 ms
    expect(b.reserve(100)).toBe(100);
    // a second caller queues behind the first one's debt
    expect(b.reserve(100)).toBe(200);
    clock.advance(200);
    expect(b.reserve(50)).toBe(50);
  });

  it('refills up to the burst and no further after a quiet spell', () => {
    const clock = new ManualClock(0);
    const b = new TokenBucket({ bytesPerSec: 1000, burstBytes: 300, clock });
    expect(b.reserve(300)).toBe(0);
    clock.advance(60_000);
    expect(b.reserve(300)).toBe(0);
    expect(b.reserve(1)).toBe(1);
  });

  it('does not drain when the clock steps back', () => {
    const clock = new ManualClock(10_000);
    const b = new TokenBucket({ bytesPerSec: 1000, burstBytes: 1000, clock });
    clock.set(0);
    expect(b.reserve(1000)).toBe(0);
  });

  it('defaults the burst to one second of the rate, at least 64 KiB', () => {
    expect(new TokenBucket({ bytesPerSec: 1_000_000 }).burstBytes).toBe(1_000_000);
    expect(new TokenBucket({ bytesPerSec: 1000 }).burstBytes).toBe(64 * 1024);
    expect(() => new TokenBucket({ bytesPerSec: 0 })).toThrow(RangeError);
  });
});

describe('paced writes', () => {
  it('are an eighth of a second of the rate, 1 to 64 KiB, so no single wait is long', () => {
    const slice = sliceBytes(new TokenBucket({ bytesPerSec: 80_000, burstBytes: 64 * 1024 }));
    expect(slice).toBe(10_000);
    // the wait for one slice on an empty bucket
    expect((slice / 80_000) * 1000).toBeLessThanOrEqual(130);
    expect(sliceBytes(new TokenBucket({ bytesPerSec: 1000 }))).toBe(1024);
    expect(sliceBytes(new TokenBucket({ bytesPerSec: 100_000_000 }))).toBe(64 * 1024);
  });

  it('by any time t, at most burst + rate × t bytes were let through', () => {
    const clock = new ManualClock(0);
    const bucket = new TokenBucket({ bytesPerSec: 200_000, burstBytes: 50_000, clock });
    const slice = sliceBytes(bucket);
    let sent = 0;
    while (sent < 1_000_000) {
      clock.advance(bucket.reserve(slice));
      sent += slice;
      expect(sent).toBeLessThanOrEqual(50_000 + (200_000 * clock.now()) / 1000 + slice);
    }
    // 950 kB beyond the burst at 200 kB/s: 4.75 s
    expect(clock.now()).toBeGreaterThanOrEqual(4750);
  });
});
