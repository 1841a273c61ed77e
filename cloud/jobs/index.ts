/**
 * The cloud's background jobs, wired to their settings (config `jobs`):
 * retention (every minute) and the orphan sweep (hourly). server.ts starts the
 * scheduler after listening and closes it before the stores; a test that
 * wants passes by hand calls `jobs.run('retention')`, or runRetentionPass /
 * runSweepPass directly.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Clock } from '../../shared/clock.js';
import type { Logger } from '../../shared/log.js';
import type { JobSettings } from '../config.js';
import type { ObjectStore } from '../objects/types.js';
import type { Store } from '../store/types.js';
import { runRetentionPass, type RetentionOptions } from './retention.js';
import { JobScheduler } from './scheduler.js';
import { runSweepPass, type SweepOptions } from './sweep.js';

export { JobScheduler, type JobFn, type JobRun } from './scheduler.js';
export { runRetentionPass, type RetentionCounts, type RetentionOptions } from './retention.js';
export { runSweepPass, type SweepCounts, type SweepOptions } from './sweep.js';

export const RETENTION_JOB = 'retention';
export const SWEEP_JOB = 'sweep';

export interface CloudJobsOptions {
  settings: JobSettings;
  store: Store;
  objects: ObjectStore;
  clock: Clock;
  logger: Logger;
  /** the lease owner name of this process (default: leaseOwner()) */
  owner?: string;
}

/**
 * A name for this process's leases, unique among nodes: host name, pid and
 * random bits (a restarted process with the same pid must not inherit the
 * leases of the one that died: those lapse instead).
 */
export function leaseOwner(): string {
  return `${hostname().slice(0, 64)}:${process.pid}:${randomBytes(4).toString('hex')}`;
}

/** the retention pass's options from the settings */
export function retentionOptions(opts: CloudJobsOptions): RetentionOptions {
  return {
    store: opts.store,
    objects: opts.objects,
    clock: opts.clock,
    logger: opts.logger,
    owner: opts.owner ?? leaseOwner(),
    batch: opts.settings.retentionBatch,
    concurrency: opts.settings.retentionConcurrency,
    leaseMs: opts.settings.retentionLeaseSec * 1000,
  };
}

/** the sweep's options from the settings */
export function sweepOptions(opts: CloudJobsOptions): SweepOptions {
  return {
    store: opts.store,
    objects: opts.objects,
    clock: opts.clock,
    logger: opts.logger,
    maxAgeMs: opts.settings.orphanAgeHours * 3600_000,
  };
}

/** A scheduler with the retention job and the sweep registered, not started yet. */
export function createCloudJobs(opts: CloudJobsOptions): JobScheduler {
  const scheduler = new JobScheduler({
    store: opts.store,
    clock: opts.clock,
    logger: opts.logger,
    receiptDays: opts.settings.receiptDays,
  });
  const retention = retentionOptions(opts);
  const sweep = sweepOptions(opts);
  scheduler.add(RETENTION_JOB, opts.settings.retentionCron, async (run) => {
    await runRetentionPass(retention, run.signal, run.count);
  });
  scheduler.add(SWEEP_JOB, opts.settings.sweepCron, async (run) => {
    await runSweepPass(sweep, run.signal, run.count);
  });
  return scheduler;
}
