import type { UploadMode } from '../../shared/contracts/alerts.js';
import type { ClipKind } from '../../shared/contracts/common.js';

/**
 * The order in which queued clips are uploaded (issue 4, "Order"). Pure: the
 * journal's queue query (Journal.nextToUpload) implements it in SQL, and a
 * unit test holds the two together.
 *
 * 1. Event clips before continuous footage: an event is what the subscriber
 *    is told about and comes to watch.
 * 2. Events newest first. After an outage the backlog holds hours of events,
 *    and the freshest one is the one that matters (is someone at the door
 *    now?). Without a backlog the queue holds a clip or two, so this changes
 *    nothing in normal operation.
 * 3. Continuous footage oldest first. The ring buffer evicts unuploaded
 *    continuous footage oldest first (storage/ring-buffer.ts), so uploading
 *    oldest first saves the clips closest to eviction before the ones that
 *    have time, and the cloud's timeline fills in from one end without gaps
 *    opening in the middle. Events, evicted only after every continuous clip,
 *    are rarely at that risk, so for them freshness wins.
 *
 * Ties (same start) break on the clip id, in the same direction, so the order
 * is total and stable.
 */
export interface QueuedClip {
  id: string;
  kind: ClipKind;
  startMs: number;
}

function byId(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function compareUploadOrder(a: QueuedClip, b: QueuedClip): number {
  if (a.kind !== b.kind) return a.kind === 'event' ? -1 : 1;
  if (a.kind === 'event') return b.startMs - a.startMs || byId(b.id, a.id);
  return a.startMs - b.startMs || byId(a.id, b.id);
}

/**
 * Upload mode (issue 7, a command from the owner): in 'events' only event
 * clips are uploaded; continuous footage stays queued on the device (the ring
 * buffer keeps it as long as it has room, and a switch back to 'continuous'
 * uploads what is still there). Journal.nextToUpload's `eventsOnly` is this rule.
 */
export function isUploadable(kind: ClipKind, mode: UploadMode): boolean {
  return mode === 'continuous' || kind === 'event';
}

/** The clips in upload order (a sorted copy), without those the upload mode keeps on the device. */
export function uploadOrder<T extends QueuedClip>(clips: readonly T[], mode: UploadMode = 'continuous'): T[] {
  return clips.filter((c) => isUploadable(c.kind, mode)).sort(compareUploadOrder);
}
