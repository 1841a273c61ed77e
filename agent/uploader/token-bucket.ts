import type { Clock } from '../../shared/clock.js';

/**
 * The upload bandwidth cap for metered links (issue 4, "Limits"): one token
 * bucket shared by every PUT stream of the agent, whole clips and multipart
 * parts alike, so the cap holds for the link, not per stream.
 *
 * Virtual scheduling: a reservation takes its bytes at once, letting the
 * balance go negative, and waits until the refill has paid the debt back. So
 * by any time t at most `burstBytes + bytesPerSec · t` bytes have been let
 * through, and concurrent streams are served in the order they asked, each
 * waiting behind the debts before it.
 */
export interface TokenBucketOptions {
  bytesPerSec: number;
  /** what may go at once after a quiet spell; default one second's worth, at least 64 KiB */
  burstBytes?: number;
  /**
   * A monotonic clock by default: the device's wall clock jumps when NTP
   * first syncs (cameras boot in 1970), and a jump back would stall uploads.
   */
  clock?: Clock;
}

const monotonic: Clock = { now: () => performance.now() };

export const MIN_BURST_BYTES = 64 * 1024;

export class TokenBucket {
  readonly bytesPerSec: number;
  readonly burstBytes: number;
  private readonly clock: Clock;
  private tokens: number;
  private last: number;

  constructor(opts: TokenBucketOptions) {
    if (!Number.isFinite(opts.bytesPerSec) || opts.bytesPerSec <= 0) throw new RangeError('bytesPerSec must be a positive number');
    this.bytesPerSec = opts.bytesPerSec;
    this.burstBytes = Math.max(1, opts.burstBytes ?? Math.max(MIN_BURST_BYTES, Math.round(opts.bytesPerSec)));
    this.clock = opts.clock ?? monotonic;
    this.tokens = this.burstBytes;
    this.last = this.clock.now();
  }

  /** Takes `bytes` now and says how many milliseconds to wait before sending them (0: at once). */
  reserve(bytes: number): number {
    const now = this.clock.now();
    // a clock that steps back refills nothing rather than draining the bucket
    const elapsed = Math.max(0, now - this.last);
    this.last = Math.max(this.last, now);
    this.tokens = Math.min(this.burstBytes, this.tokens + (elapsed * this.bytesPerSec) / 1000);
    this.tokens -= bytes;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens * 1000) / this.bytesPerSec);
  }
}

/**
 * The size of one paced write: an eighth of a second's worth (1 to 64 KiB), so
 * that no single wait is long enough for a slow cap to look like a stalled
 * upload to the PUT's idle timeout.
 */
export function sliceBytes(bucket: TokenBucket): number {
  return Math.min(MIN_BURST_BYTES, bucket.burstBytes, Math.max(1024, Math.round(bucket.bytesPerSec / 8)));
}
