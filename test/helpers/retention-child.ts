/**
 * One retention pass in a process of its own, for the crash test
 * (test/integration/retention-crash.test.ts), which SIGKILLs it at random
 * moments. It opens the same metadata store and local object store a cloud
 * would, runs the job through the scheduler (so the receipt is kept too), and
 * prints one line per step on stdout:
 *   ready           the stores are open; the pass starts now
 *   done <receipt>  the pass finished (JSON)
 *
 * Settings come as JSON in argv[2]: { sqlitePath | databaseUrl, objectsRoot,
 * nowMs, batch, concurrency, leaseMs }.
 */
import { LocalObjectStore } from '../../cloud/objects/local.js';
import { createCloudJobs, RETENTION_JOB } from '../../cloud/jobs/index.js';
import { PostgresStore } from '../../cloud/store/postgres.js';
import { SqliteStore } from '../../cloud/store/sqlite.js';
import type { Store } from '../../cloud/store/types.js';
import { ManualClock } from '../../shared/clock.js';
import { createLogger } from '../../shared/log.js';

export interface RetentionChildSettings {
  sqlitePath?: string;
  databaseUrl?: string;
  objectsRoot: string;
  nowMs: number;
  batch: number;
  concurrency: number;
  leaseMs: number;
}

async function main(): Promise<void> {
  const s = JSON.parse(process.argv[2] ?? '{}') as RetentionChildSettings;
  const store: Store = s.databaseUrl
    ? await PostgresStore.open({ url: s.databaseUrl, poolSize: 4 })
    : new SqliteStore({ path: s.sqlitePath as string });
  const clock = new ManualClock(s.nowMs);
  const objects = new LocalObjectStore({
    root: s.objectsRoot,
    secret: 'retention-child-url-secret-0123456789',
    publicUrl: () => 'http://127.0.0.1:1',
    clock,
  });
  const jobs = createCloudJobs({
    settings: {
      enabled: false,
      retentionCron: '* * * * *',
      sweepCron: '0 * * * *',
      retentionBatch: s.batch,
      retentionConcurrency: s.concurrency,
      retentionLeaseSec: Math.ceil(s.leaseMs / 1000),
      orphanAgeHours: 24,
      receiptDays: 90,
    },
    store,
    objects,
    clock,
    logger: createLogger({ level: 'silent' }),
  });
  process.stdout.write('ready\n');
  const receipt = await jobs.run(RETENTION_JOB);
  await jobs.close();
  await objects.close();
  await store.close();
  process.stdout.write(`done ${JSON.stringify(receipt)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`retention child failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
