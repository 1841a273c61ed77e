/**
 * The retention job (privacy promise P3: expired cloud videos are deleted
 * automatically). The API already hides a clip the moment it expires
 * (http/access.ts, listClips' visibleAt); this job makes it gone: object first,
 * then row, so a row never points at nothing the user could still be shown
 * and an object never outlives the row that would let the job find it again.
 *
 * One pass, from the expiry cutoff `now` read once at its start:
 *   repeat, in `concurrency` workers side by side:
 *     lease up to `batch` expired clips (Store.claimExpiredClips: oldest
 *       expiry first, FOR UPDATE SKIP LOCKED on PostgreSQL, one writer on SQLite)
 *     delete their objects in one ObjectStore.deleteMany call (≤ 1000 keys)
 *     delete the rows of the keys that went
 *     hand back the clips whose keys the store refused, for the next pass
 *   until a claim comes back short.
 *
 * Crash-safe at every point: a clip is leased before anything is deleted, and
 * its row goes only after its object did. A pass killed after the claim
 * leaves a lease that lapses (retentionLeaseSec); killed after the objects
 * went, it leaves rows whose objects are already missing, and deleting a
 * missing key counts as deleted. Either way a later pass finishes the work.
 * Several nodes may run passes at once: the leases split the clips.
 */
import type { Clock } from '../../shared/clock.js';
import type { Logger } from '../../shared/log.js';
import type { ObjectStore } from '../objects/types.js';
import type { ExpiredClip, Store } from '../store/types.js';

export interface RetentionOptions {
  store: Store;
  objects: ObjectStore;
  clock: Clock;
  logger: Logger;
  /** this process's lease owner name: unique among the nodes (node id + pid + random) */
  owner: string;
  /** clips leased per claim and keys per deleteMany call, at most 1000 (S3's DeleteObjects limit) */
  batch: number;
  /** delete calls in flight at once */
  concurrency: number;
  leaseMs: number;
}

/** what a pass reports (the receipt's counts) */
export interface RetentionCounts {
  clipsDeleted: number;
  objectsDeleted: number;
  keysFailed: number;
}

/** at most this many refused keys are named in one log line */
const KEYS_LOGGED = 10;

/**
 * One pass; resolves with what it did. `signal` stops it between batches (a
 * batch in hand is finished). `count` mirrors every count as it happens, so a
 * pass that fails half way still reports what it did before.
 */
export async function runRetentionPass(
  opts: RetentionOptions,
  signal?: AbortSignal,
  count: (name: keyof RetentionCounts, n: number) => void = () => undefined,
): Promise<RetentionCounts> {
  const { store, objects, clock, owner, leaseMs } = opts;
  const batch = Math.min(Math.max(1, Math.floor(opts.batch)), 1000);
  const log = opts.logger.child({ job: 'retention' });
  // the cutoff: what had expired when the pass began. Clips handed back after
  // a refused delete may be claimed from now + 1 on, i.e. by the next pass.
  const now = clock.now();
  const counts: RetentionCounts = { clipsDeleted: 0, objectsDeleted: 0, keysFailed: 0 };
  const add = (name: keyof RetentionCounts, n: number): void => {
    if (n === 0) return;
    counts[name] += n;
    count(name, n);
  };

  async function deleteBatch(clips: ExpiredClip[]): Promise<void> {
    const result = await objects.deleteMany(clips.map((c) => c.key));
    const gone = new Set(result.deleted);
    add('objectsDeleted', gone.size);
    add('clipsDeleted', await store.deleteClips(clips.filter((c) => gone.has(c.key)).map((c) => c.id)));
    const kept = clips.filter((c) => !gone.has(c.key));
    if (kept.length > 0) {
      add('keysFailed', kept.length);
      await store.releaseClipLeases(owner, kept.map((c) => c.id), now + 1);
      // loud: P3 promises these are gone within a job interval
      log.error(
        { failed: kept.length, keys: result.failed.slice(0, KEYS_LOGGED).map((f) => `${f.key} (${f.error})`) },
        'the object store refused to delete expired clips: their rows stay and the next pass tries again',
      );
    }
  }

  async function worker(): Promise<void> {
    while (!signal?.aborted) {
      // the lease counts from the claim, not the pass start: a long pass's last batches hold as long as its first
      const claimed = await store.claimExpiredClips(owner, now, clock.now() + leaseMs, batch);
      if (claimed.length > 0) await deleteBatch(claimed);
      if (claimed.length < batch) return;
    }
  }

  const workers = await Promise.allSettled(Array.from({ length: Math.max(1, Math.floor(opts.concurrency)) }, worker));
  const failed = workers.find((w): w is PromiseRejectedResult => w.status === 'rejected');
  if (failed) throw failed.reason;
  return counts;
}
