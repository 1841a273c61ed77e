/**
 * The per-device limit on alerts: a token bucket per serial, in this node's
 * memory (issue 7 allows it: every node receives every alert, so every node's
 * buckets see the same traffic and agree). A device that sends faster than
 * its bucket refills has the rest dropped and counted, before anything is
 * written or sent. Pure: the clock is passed in.
 */
export interface AlertLimit {
  /** alerts a device may send at once */
  burst: number;
  /** the bucket refills at this rate */
  perMinute: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class AlertLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly limit: AlertLimit,
    /** buckets are forgotten once full again; at most this many are kept */
    private readonly maxDevices = 1_000_000,
  ) {}

  /** true: the alert may pass (a token is spent); false: it is over the limit */
  take(serial: string, nowMs: number): boolean {
    const rate = this.limit.perMinute / 60_000;
    let b = this.buckets.get(serial);
    if (!b) {
      if (this.buckets.size >= this.maxDevices) this.prune(nowMs);
      b = { tokens: this.limit.burst, at: nowMs };
      this.buckets.set(serial, b);
    } else {
      b.tokens = Math.min(this.limit.burst, b.tokens + Math.max(0, nowMs - b.at) * rate);
      b.at = nowMs;
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** buckets that would be full by now carry no information: drop them */
  prune(nowMs: number): void {
    const rate = this.limit.perMinute / 60_000;
    for (const [serial, b] of this.buckets) {
      if (b.tokens + (nowMs - b.at) * rate >= this.limit.burst) this.buckets.delete(serial);
    }
  }

  get size(): number {
    return this.buckets.size;
  }
}
