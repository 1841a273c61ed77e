/**
 * When a segment began, on the wall clock.
 *
 * A run's segment list gives each segment's start and end in the stream's
 * time, counted from the run's first packet (0.000000, 2.359961, …). The
 * wall time of that first packet is not the launch time: ffmpeg connects,
 * waits for a keyframe (up to a GOP, 10 s on some cameras) and probes
 * before anything is written. So it is estimated from what the recorder
 * sees: a segment listed at wall time `seenAt` ended at or before it, so
 * `seenAt − endSec` is an upper bound of the run's time zero, and the
 * smallest such bound over the run's segments is the best estimate (late by
 * the poll interval and ffmpeg's write latency at most). Then
 * start = anchor + startSec: consecutive segments of a run line up, without
 * the jitter of "seen time − duration" (a later one may overlap an earlier
 * one by as much as the estimate improved in between, a poll at most, and
 * leaves no gap while stream time follows the wall clock).
 *
 * That holds while stream time runs with the wall clock. When it stops doing
 * so (timestamps that jump, a camera that froze while ffmpeg stayed
 * connected, a clock that runs fast), a bound moves away from the anchor by
 * more than `toleranceMs`, and the anchor starts over from that bound: the
 * segment is then placed at "seen time − duration", never in the future
 * (start + duration ≤ seenAt always holds).
 */
export class SegmentClock {
  private anchor: number | undefined;

  constructor(private readonly toleranceMs = 2000) {}

  /** Wall time of the run's stream time zero, once a segment was placed. */
  get anchorMs(): number | undefined {
    return this.anchor;
  }

  /** The wall-clock start (ms) of a segment of the run, listed as [startSec, endSec], seen at `seenAt`. */
  place(startSec: number, endSec: number, seenAt: number): number {
    const bound = seenAt - endSec * 1000;
    if (this.anchor === undefined || Math.abs(bound - this.anchor) > this.toleranceMs) this.anchor = bound;
    else this.anchor = Math.min(this.anchor, bound);
    return Math.round(this.anchor + startSec * 1000);
  }
}

/** The launch time (ms) a run id begins with (ffmpeg-args.ts newRunId), or undefined. */
export function runIdLaunchMs(runId: string): number | undefined {
  const m = /^(\d{1,15})-[0-9a-f]+$/.exec(runId);
  return m ? Number(m[1]) : undefined;
}

/** The run id and index of a segment file name `<runId>_<NNNNNN>.mp4`, or undefined for any other name. */
export function parseSegmentName(name: string): { runId: string; index: number } | undefined {
  const m = /^(\d{1,15}-[0-9a-f]{1,32})_(\d{6,})\.mp4$/.exec(name);
  return m ? { runId: m[1] as string, index: Number(m[2]) } : undefined;
}

/** The run id of a segment list name `<runId>.csv`, or undefined. */
export function parseListName(name: string): string | undefined {
  const m = /^(\d{1,15}-[0-9a-f]{1,32})\.csv$/.exec(name);
  return m ? m[1] : undefined;
}

/** `<runId>_<NNNNNN>.mp4`, as ffmpeg names the run's segment number `index`. */
export function segmentName(runId: string, index: number): string {
  return `${runId}_${String(index).padStart(6, '0')}.mp4`;
}
