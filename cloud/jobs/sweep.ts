/**
 * The orphan sweep: what an upload left behind and no row will ever point at.
 *
 *  1. pending uploads presigned more than `maxAgeMs` ago and never completed
 *     (their rows hold the account's pending bytes against its storage cap);
 *  2. multipart uploads started more than `maxAgeMs` ago and never completed
 *     or aborted (the store keeps their parts, billed, forever otherwise),
 *     unless a pending upload still holds that upload id (a device that
 *     re-presigned resumes it);
 *  3. objects under accounts/ last written more than `maxAgeMs` ago with
 *     neither a clip row nor a pending upload (a PUT whose complete never
 *     came, or a row lost some other way).
 *
 * In that order: stale rows go first, so their objects and parts are orphans
 * in the same pass. Every key the cloud writes ends in `<clipId>.mp4`
 * (shared/keys.ts, clipObjectKey) and every row holding a key has that clip
 * id, so the sweep asks the store by primary key (Store.objectKeysInUse); a
 * key under accounts/ not of that shape cannot belong to any row.
 *
 * The age is what keeps this safe beside uploads in flight: an upload row is
 * at most `maxAgeMs` old once step 1 ran, an upload's object is written after
 * its row, and a clip's row is written before its upload row goes, so an
 * object some row is about to claim always has a row in the store when the
 * sweep looks (the upload row is read in the same statement as the clip row).
 */
import type { Clock } from '../../shared/clock.js';
import { isClipId } from '../../shared/ids.js';
import type { Logger } from '../../shared/log.js';
import type { ObjectStore } from '../objects/types.js';
import type { Store } from '../store/types.js';

/** where the cloud keeps clips (shared/keys.ts): the sweep never looks anywhere else */
export const SWEEP_PREFIX = 'accounts/';
const STALE_UPLOAD_BATCH = 1000;
const KEYS_LOGGED = 10;

export interface SweepOptions {
  store: Store;
  objects: ObjectStore;
  clock: Clock;
  logger: Logger;
  /** what is older than this and unclaimed goes (config jobs.orphanAgeHours) */
  maxAgeMs: number;
  /**
   * where to look, default SWEEP_PREFIX (every account). Tests on a bucket
   * other runs share narrow it to their own accounts' prefixes.
   */
  prefix?: string;
}

export interface SweepCounts {
  sessionsExpired: number;
  uploadsExpired: number;
  multipartAborted: number;
  orphansDeleted: number;
  keysFailed: number;
}

/** the clip id a key of the cloud's layout ends in, or null for any other key */
export function clipIdOfKey(key: string): string | null {
  const m = /\/([^/]+)\.mp4$/.exec(key);
  return m && isClipId(m[1]) ? (m[1] as string) : null;
}

/** One pass; `signal` stops it between pages. `count` mirrors each count as it happens. */
export async function runSweepPass(
  opts: SweepOptions,
  signal?: AbortSignal,
  count: (name: keyof SweepCounts, n: number) => void = () => undefined,
): Promise<SweepCounts> {
  const { store, objects } = opts;
  const prefix = opts.prefix ?? SWEEP_PREFIX;
  const log = opts.logger.child({ job: 'sweep' });
  const cutoff = opts.clock.now() - opts.maxAgeMs;
  const counts: SweepCounts = { sessionsExpired: 0, uploadsExpired: 0, multipartAborted: 0, orphansDeleted: 0, keysFailed: 0 };
  const add = (name: keyof SweepCounts, n: number): void => {
    if (n === 0) return;
    counts[name] += n;
    count(name, n);
  };

  // 0. sessions past their expiry (refused already; each still names its account)
  for (;;) {
    const n = await store.deleteExpiredSessions(opts.clock.now(), STALE_UPLOAD_BATCH);
    add('sessionsExpired', n);
    if (n < STALE_UPLOAD_BATCH || signal?.aborted) break;
  }

  // 1. pending uploads never completed
  for (;;) {
    const n = await store.deleteStaleUploads(cutoff, STALE_UPLOAD_BATCH);
    add('uploadsExpired', n);
    if (n < STALE_UPLOAD_BATCH || signal?.aborted) break;
  }

  // 2. multipart uploads never finished
  for (const upload of await objects.listMultipartUploads(prefix)) {
    if (signal?.aborted) return counts;
    if (upload.initiatedAt > cutoff) continue;
    const clipId = clipIdOfKey(upload.key);
    const pending = clipId ? await store.getUpload(clipId) : null;
    if (pending?.multipart?.uploadId === upload.uploadId && pending.key === upload.key) continue;
    await objects.abortMultipartUpload(upload.key, upload.uploadId);
    add('multipartAborted', 1);
  }

  // 3. objects no row holds
  let cursor: string | null = null;
  do {
    if (signal?.aborted) return counts;
    const page = await objects.list(prefix, cursor);
    const old = page.objects.filter((o) => o.lastModified <= cutoff).map((o) => o.key);
    if (old.length > 0) {
      const ids = old.map(clipIdOfKey).filter((id): id is string => id !== null);
      const inUse = new Set(await store.objectKeysInUse(ids));
      const orphans = old.filter((key) => !inUse.has(key));
      if (orphans.length > 0) {
        const result = await objects.deleteMany(orphans);
        add('orphansDeleted', result.deleted.length);
        if (result.failed.length > 0) {
          add('keysFailed', result.failed.length);
          log.error(
            { failed: result.failed.length, keys: result.failed.slice(0, KEYS_LOGGED).map((f) => `${f.key} (${f.error})`) },
            'the object store refused to delete orphan objects: the next sweep tries again',
          );
        }
      }
    }
    cursor = page.nextCursor;
  } while (cursor !== null);
  return counts;
}
