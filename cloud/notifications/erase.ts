/**
 * Notifications are kept `retentionDays` (7 by default): long enough for an
 * SSE client to resume with Last-Event-ID after a weekend offline, short
 * enough that the table stays small. This erases the older rows in batches;
 * the cloud's job scheduler runs it (cloud/jobs/, 'notifications-erase').
 */
import type { Store } from '../store/types.js';

const BATCH = 1000;
const DAY_MS = 24 * 3600 * 1000;

/** Deletes rows received before now − retentionDays, a batch at a time, until none is left or `signal` aborts; the number deleted. */
export async function eraseOldNotifications(store: Store, nowMs: number, retentionDays: number, signal?: AbortSignal): Promise<number> {
  const before = nowMs - retentionDays * DAY_MS;
  let total = 0;
  for (;;) {
    if (signal?.aborted) return total;
    const n = await store.deleteNotificationsBefore(before, BATCH);
    total += n;
    if (n < BATCH) return total;
  }
}
