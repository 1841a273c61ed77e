import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { TokenBucket, throttle } from '../../../agent/uploader/token-bucket.js';
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

describe('throttled stream', () => {
  /** Runs `bytes` through a throttle on a virtual clock: sleeping advances the clock instead of waiting. */
  async function run(bytes: number, bytesPerSec: number, burstBytes: number, chunk = 256 * 1024) {
    const clock = new ManualClock(0);
    const bucket = new TokenBucket({ bytesPerSec, burstBytes, clock });
    const sleeps: number[] = [];
    const t = throttle(bucket, {
      sleep: async (ms) => {
        sleeps.push(ms);
        clock.advance(ms);
      },
    });
    const seen: { at: number; total: number }[] = [];
    let total = 0;
    let maxChunk = 0;
    const source = Readable.from(
      (function* () {
        for (let left = bytes; left > 0; left -= chunk) yield Buffer.alloc(Math.min(chunk, left), 7);
      })(),
    );
    const sink = new Writable({
      write(c: Buffer, _e, cb) {
        total += c.length;
        maxChunk = Math.max(maxChunk, c.length);
        seen.push({ at: clock.now(), total });
        cb();
      },
    });
    await pipeline(source, t, sink);
    return { total, elapsedMs: clock.now(), seen, sleeps, maxChunk };
  }

  it('passes every byte, in order, and takes (size - burst) / rate', async () => {
    const r = await run(2_000_000, 500_000, 100_000);
    expect(r.total).toBe(2_000_000);
    // 1.9 MB beyond the burst at 500 kB/s: 3.8 s of virtual time
    expect(r.elapsedMs).toBeGreaterThanOrEqual(3800);
    expect(r.elapsedMs).toBeLessThanOrEqual(3800 + 10);
  });

  it('never lets more than burst + rate × t through by any time t', async () => {
    const r = await run(1_000_000, 200_000, 50_000);
    for (const s of r.seen) expect(s.total).toBeLessThanOrEqual(50_000 + (200_000 * s.at) / 1000 + 1);
  });

  it('cuts chunks into slices of an eighth of a second, so no single wait is long', async () => {
    const r = await run(300_000, 80_000, 64 * 1024);
    expect(r.maxChunk).toBe(10_000);
    expect(Math.max(...r.sleeps)).toBeLessThanOrEqual(130);
  });

  it('ends its wait when the stream is destroyed', async () => {
    const bucket = new TokenBucket({ bytesPerSec: 1024, burstBytes: 1024 });
    const t = throttle(bucket);
    t.write(Buffer.alloc(8192));
    await new Promise((r) => setTimeout(r, 20));
    const t0 = Date.now();
    t.destroy();
    await new Promise((r) => t.once('close', r));
    expect(Date.now() - t0).toBeLessThan(500);
  });
});
