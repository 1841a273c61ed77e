import { statfs } from 'node:fs/promises';
import type { ClipKind } from '../../shared/contracts/common.js';
import type { ClipState } from '../journal/journal.js';

/**
 * The ring buffer's policy (DESIGN, "The device is hostile ground"): when the
 * segments outgrow their quota, or the disk's free space falls under its
 * reserve, which clips go. Pure: the agent gathers the numbers, applies the
 * plan (deletes files, marks clips) and reports what was lost.
 */

export interface RingClip {
  id: string;
  sizeBytes: number;
  startMs: number;
  kind: ClipKind;
  state: ClipState;
}

export interface EvictionInput {
  /** the quota for segments on this device */
  maxBytes: number;
  /** free space the disk must keep, for the recorder, SQLite and the system */
  minFreeBytes: number;
  /** the disk's free space now (see diskUsage) */
  freeBytes: number;
  /** bytes the segments use now, clips and files not yet journaled alike */
  usedBytes: number;
  clips: readonly RingClip[];
}

export interface Eviction {
  id: string;
  sizeBytes: number;
  kind: ClipKind;
  state: ClipState;
  /** true when the footage never reached the cloud: the clip is to be marked lost */
  lost: boolean;
}

export interface EvictionPlan {
  /** clips to delete, in this order */
  evict: Eviction[];
  lostClips: number;
  lostBytes: number;
  usedBytesAfter: number;
  freeBytesAfter: number;
  /** quota and reserve both hold after the plan */
  satisfied: boolean;
  /** bytes still missing when not satisfied, else 0 */
  shortBytes: number;
}

/**
 * The eviction tiers, cheapest first:
 * 0. 'lost' clips: their footage is already counted as lost; only bytes go.
 * 1. 'uploaded' clips: safe in the cloud.
 * 2. continuous clips waiting for upload ('queued', 'failed'), then
 * 3. event clips waiting for upload: events outrank continuous footage.
 * 4. the clips being uploaded right now, continuous (4) before event (5).
 *
 * Clips being uploaded come last because deleting a file under a running PUT
 * throws away the bytes already sent, and the clip is seconds away from being
 * uploaded, when it costs nothing to delete. They are still evicted when
 * nothing else is left, since the recorder needs the space for footage that
 * exists nowhere else. The caller must abort that upload before it deletes
 * the file.
 *
 * Within a tier, oldest first (start time, then id for a stable order).
 */
function tier(c: RingClip): number {
  switch (c.state) {
    case 'lost':
      return 0;
    case 'uploaded':
      return 1;
    case 'queued':
    case 'failed':
      return c.kind === 'continuous' ? 2 : 3;
    case 'uploading':
      return c.kind === 'continuous' ? 4 : 5;
  }
}

/** Tiers whose eviction loses no footage. */
const COSTLESS_TIER = 1;

export function evictionOrder(clips: readonly RingClip[]): RingClip[] {
  return [...clips].sort((a, b) => tier(a) - tier(b) || a.startMs - b.startMs || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/**
 * Which clips to delete so that the segments fit their quota and the disk
 * keeps its reserve: the fewest the order allows, in the order of
 * evictionOrder.
 *
 * When even deleting every clip would not restore the reserve (something
 * else fills the disk), the plan still enforces the quota, deletes whatever
 * costs no footage, and reports satisfied: false. Deleting more footage that
 * never reached the cloud would not end the shortage, only postpone it, and
 * that footage would be gone for good; the caller raises an alert instead.
 * The same holds for a quota that files outside the clip list already exceed.
 */
export function planEviction(input: EvictionInput): EvictionPlan {
  const { maxBytes, minFreeBytes, freeBytes, usedBytes } = input;
  for (const [name, v] of Object.entries({ maxBytes, minFreeBytes, freeBytes, usedBytes })) {
    if (!Number.isFinite(v) || v < 0) throw new RangeError(`${name} must be a non-negative number`);
  }
  const order = evictionOrder(input.clips);
  const evictable = order.reduce((n, c) => n + c.sizeBytes, 0);
  const forQuota = Math.max(0, usedBytes - maxBytes);
  const needed = Math.max(forQuota, minFreeBytes - freeBytes);
  // what may be freed at the cost of footage: everything needed, or, if that
  // cannot be reached, what the quota needs, or, if not even that, nothing
  const worthLosing = needed <= evictable ? needed : forQuota <= evictable ? forQuota : 0;

  const evict: Eviction[] = [];
  let freed = 0;
  for (const c of order) {
    if (freed >= needed) break;
    if (tier(c) > COSTLESS_TIER && freed >= worthLosing) break;
    evict.push({ id: c.id, sizeBytes: c.sizeBytes, kind: c.kind, state: c.state, lost: tier(c) > COSTLESS_TIER });
    freed += c.sizeBytes;
  }
  const lost = evict.filter((e) => e.lost);
  const shortBytes = Math.max(0, needed - freed);
  return {
    evict,
    lostClips: lost.length,
    lostBytes: lost.reduce((n, e) => n + e.sizeBytes, 0),
    usedBytesAfter: usedBytes - freed,
    freeBytesAfter: freeBytes + freed,
    satisfied: shortBytes === 0,
    shortBytes,
  };
}

export interface DiskUsage {
  /** bytes an unprivileged process may still write (f_bavail): root's reserve is not ours to spend */
  freeBytes: number;
  totalBytes: number;
}

/** Free and total space of the file system that holds `dir`. */
export async function diskUsage(dir: string): Promise<DiskUsage> {
  const s = await statfs(dir);
  return { freeBytes: s.bavail * s.bsize, totalBytes: s.blocks * s.bsize };
}
