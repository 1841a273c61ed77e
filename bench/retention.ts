/**
 * `npm run bench -- retention`: how fast the retention job deletes expired
 * clips, and how much of its time goes to anything but the object store's
 * deletes (issue 6, "Benchmark bench/retention").
 *
 * RETENTION_BENCH_CLIPS (100,000) expired clips of one account, written
 * straight into a SQLite metadata store (a file, synchronous=FULL, as the
 * cloud runs it) in one transaction, and their objects straight into the
 * object store, a few bytes each: on the local driver as files where the
 * driver keeps them; on S3 (Ceph RGW here), when CAMVAULT_S3_* are set, with
 * PutObject calls in parallel under a fresh account prefix. Uploading them
 * through the API would take hours and measure nothing this benchmark is about.
 *
 * Then one retention pass with the production settings (config `jobs`:
 * batches of 1000 keys, 4 delete calls in flight, the real clock), timed:
 *   deleted_per_s_<driver>                 clips deleted (object and row) per second;
 *   overhead_share_outside_store_deletes   the share of the pass's wall time during
 *                                          which no ObjectStore.deleteMany call was in
 *                                          flight (claims, row deletes, scheduling),
 *                                          a fraction 0..1, one line per driver (field
 *                                          "driver"); target under 0.2.
 * Every clip must be gone afterwards, rows and objects, else it exits 1; also
 * when a figure misses its target. Seeding rates are printed for the record.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import Database from 'better-sqlite3';
import { ulid } from 'ulid';
import { loadCloudConfig, type S3Settings } from '../cloud/config.js';
import { leaseOwner, runRetentionPass } from '../cloud/jobs/index.js';
import { LocalObjectStore } from '../cloud/objects/local.js';
import { S3ObjectStore } from '../cloud/objects/s3.js';
import type { ObjectStore } from '../cloud/objects/types.js';
import { SqliteStore } from '../cloud/store/sqlite.js';
import { systemClock } from '../shared/clock.js';
import { newClipId } from '../shared/ids.js';
import { accountPrefix, clipObjectKey } from '../shared/keys.js';
import { createLogger } from '../shared/log.js';
import { figurePrinter, round } from './_figures.js';

const CLIPS = Number(process.env.RETENTION_BENCH_CLIPS ?? 100_000);
const PUT_CONCURRENCY = 64;
const TARGET_OVERHEAD = 0.2;
const SERIAL = 'BENCHRET0001';
const DAY = 86_400_000;
const BODY = Buffer.from('x');
const BODY_MD5 = createHash('md5').update(BODY).digest('base64');

const print = figurePrinter('retention');

interface SeedClip {
  id: string;
  key: string;
  startMs: number;
}

/** CLIPS clips of one camera, one a minute going back from 40 days ago, all expired 10 days ago or earlier */
function clipsOf(accountId: string, now: number): SeedClip[] {
  const out: SeedClip[] = [];
  for (let i = 0; i < CLIPS; i++) {
    const startMs = now - 40 * DAY - i * 60_000;
    const id = newClipId(startMs);
    out.push({ id, key: clipObjectKey(accountId, SERIAL, id, startMs), startMs });
  }
  return out;
}

function seedRows(dbPath: string, accountId: string, clips: SeedClip[]): void {
  const db = new Database(dbPath);
  try {
    const insert = db.prepare(
      `INSERT INTO clips (id, account_id, serial, object_key, kind, start_ms, duration_ms, size, md5, sha256, uploaded_at, expires_at)
       VALUES (?, ?, ?, ?, 'event', ?, 60000, ?, ?, ?, ?, ?)`,
    );
    db.transaction(() => {
      for (const c of clips) insert.run(c.id, accountId, SERIAL, c.key, c.startMs, BODY.length, BODY_MD5, '0'.repeat(64), c.startMs, c.startMs + 30 * DAY);
    })();
  } finally {
    db.close();
  }
}

async function seedLocalObjects(root: string, clips: SeedClip[]): Promise<void> {
  for (const dir of new Set(clips.map((c) => dirname(join(root, ...c.key.split('/')))))) await mkdir(dir, { recursive: true });
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < clips.length) {
      const c = clips[next++] as SeedClip;
      await writeFile(join(root, ...c.key.split('/')), BODY);
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
}

async function seedS3Objects(s3: S3Settings, clips: SeedClip[]): Promise<void> {
  const client = new S3Client({
    region: s3.region,
    endpoint: s3.endpoint,
    forcePathStyle: s3.forcePathStyle,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: { connectionTimeout: 5_000, requestTimeout: 60_000 },
  });
  try {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < clips.length) {
        const c = clips[next++] as SeedClip;
        await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: c.key, Body: BODY, ContentLength: BODY.length, ContentMD5: BODY_MD5 }));
      }
    };
    await Promise.all(Array.from({ length: PUT_CONCURRENCY }, worker));
  } finally {
    client.destroy();
  }
}

/**
 * The object store as the pass sees it, with the wall time during which at
 * least one deleteMany call was in flight added up.
 */
function timedDeletes(inner: ObjectStore): { objects: ObjectStore; busyMs: () => number } {
  let inFlight = 0;
  let since = 0;
  let busy = 0;
  const objects = new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop !== 'deleteMany') {
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      }
      return async (keys: string[]) => {
        if (inFlight++ === 0) since = performance.now();
        try {
          return await target.deleteMany(keys);
        } finally {
          if (--inFlight === 0) busy += performance.now() - since;
        }
      };
    },
  });
  return { objects, busyMs: () => busy };
}

/** the metadata store as the pass sees it, with the time spent in its calls added up (for the record) */
function timedStore(inner: SqliteStore): { store: SqliteStore; callMs: () => number } {
  let total = 0;
  const store = new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function') return v;
      return async (...args: unknown[]) => {
        const t0 = performance.now();
        try {
          return await (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        } finally {
          total += performance.now() - t0;
        }
      };
    },
  });
  return { store, callMs: () => total };
}

async function filesUnder(dir: string): Promise<number> {
  try {
    return (await readdir(dir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).length;
  } catch {
    return 0;
  }
}

async function runDriver(driver: 'local' | 's3', s3?: S3Settings): Promise<boolean> {
  const dir = await mkdtemp(join(tmpdir(), `camvault-bench-retention-${driver}-`));
  const dbPath = join(dir, 'camvault.db');
  const store = new SqliteStore({ path: dbPath });
  const root = join(dir, 'objects');
  const inner: ObjectStore =
    driver === 's3' && s3
      ? new S3ObjectStore({ ...s3 })
      : new LocalObjectStore({ root, secret: randomBytes(32).toString('hex'), publicUrl: () => 'http://127.0.0.1:1' });
  const settings = loadCloudConfig({ env: {} }).jobs;
  const accountId = ulid();
  let ok = true;
  try {
    await inner.check();
    const now = Date.now();
    await store.createAccount({ id: accountId, email: `${accountId.toLowerCase()}@example.com`, passwordHash: 'h', plan: 'basic', createdAt: now - 60 * DAY });
    const clips = clipsOf(accountId, now);
    let t0 = performance.now();
    seedRows(dbPath, accountId, clips);
    print({ figure: 'seed_rows_per_s', value: Math.round(CLIPS / ((performance.now() - t0) / 1000)), unit: 'rows/s', target: null, pass: null, driver, clips: CLIPS });
    t0 = performance.now();
    if (driver === 's3' && s3) await seedS3Objects(s3, clips);
    else await seedLocalObjects(root, clips);
    print({ figure: `seed_objects_per_s_${driver}`, value: Math.round(CLIPS / ((performance.now() - t0) / 1000)), unit: 'objects/s', target: null, pass: null, driver, clips: CLIPS });

    const { objects, busyMs } = timedDeletes(inner);
    const timed = timedStore(store);
    t0 = performance.now();
    const counts = await runRetentionPass({
      store: timed.store,
      objects,
      clock: systemClock,
      logger: createLogger({ level: 'warn' }),
      owner: leaseOwner(),
      batch: settings.retentionBatch,
      concurrency: settings.retentionConcurrency,
      leaseMs: settings.retentionLeaseSec * 1000,
    });
    const wallMs = performance.now() - t0;

    // everything must be gone, rows and objects
    const rowsLeft = (await store.listClips({ accountId, limit: 1 })).length;
    const objectsLeft = driver === 's3' ? (await inner.list(accountPrefix(accountId), null, 10)).objects.length : await filesUnder(root);
    if (counts.clipsDeleted !== CLIPS || counts.keysFailed !== 0 || rowsLeft !== 0 || objectsLeft !== 0) {
      console.error(
        `bench retention (${driver}): deleted ${counts.clipsDeleted} of ${CLIPS} clips, ${counts.keysFailed} keys failed, ${rowsLeft ? 'rows' : 'no rows'} and ${objectsLeft} objects left`,
      );
      ok = false;
    }
    const common = { driver, clips: CLIPS, batch: settings.retentionBatch, concurrency: settings.retentionConcurrency, seconds: round(wallMs / 1000, 2), store: 'sqlite' };
    print({ figure: `deleted_per_s_${driver}`, value: Math.round(counts.clipsDeleted / (wallMs / 1000)), unit: 'clips/s', target: null, pass: null, ...common });
    const overhead = Math.max(0, 1 - busyMs() / wallMs);
    const pass = overhead < TARGET_OVERHEAD;
    // for the record: the time inside metadata-store calls (claims, row deletes), which overlap the deletes of other workers
    const storeCalls = round(timed.callMs() / wallMs, 3);
    print({ figure: 'overhead_share_outside_store_deletes', value: round(overhead, 3), unit: 'fraction', target: TARGET_OVERHEAD, pass, metadata_store_share: storeCalls, ...common });
    ok &&= pass;
  } finally {
    await inner.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
  return ok;
}

async function main(): Promise<void> {
  let ok = await runDriver('local');
  const s3 = loadCloudConfig({ env: process.env }).s3;
  if (s3) {
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    ok = (await runDriver('s3', s3)) && ok;
  } else {
    console.error('bench retention: CAMVAULT_S3_* not set: S3 figures skipped');
  }
  process.exit(ok ? 0 : 1);
}

main().catch((err: unknown) => {
  console.error(`bench retention: ${(err as Error).message}`);
  process.exit(1);
});
