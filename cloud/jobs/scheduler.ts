/**
 * Runs the cloud's background jobs on their cron expressions (node-cron), one
 * pass of a job at a time in this process, and keeps a receipt of every pass
 * in the metadata store (job_runs: counts and duration, never whose).
 *
 * Several nodes each run their own scheduler: a job that must not do the same
 * work twice coordinates through the database (retention leases its clips),
 * never through this class. A job is a loop with a stop signal (STYLE.md,
 * Frigate): it checks `run.signal` between batches, so close() waits for at
 * most one batch of each running job.
 *
 * Registering a job is one line: `scheduler.add('security-log-erase',
 * '0 * * * *', async (run) => run.count('entriesErased', await erase()))`.
 */
import cron, { type ScheduledTask } from 'node-cron';
import type { Clock } from '../../shared/clock.js';
import type { Logger } from '../../shared/log.js';
import { JOB_NAME_RE, type JobRunRow, type Store } from '../store/types.js';

/** What a pass gets: a stop signal, and the counters its receipt keeps. */
export interface JobRun {
  /** aborted when the scheduler closes: finish the batch in hand, then return */
  readonly signal: AbortSignal;
  /** the scheduler's clock when the pass began */
  readonly startedAt: number;
  /** adds n (default 1) to a counter of the receipt; names are camelCase, e.g. clipsDeleted */
  count(name: string, n?: number): void;
}

export type JobFn = (run: JobRun) => Promise<void>;

export interface JobSchedulerOptions {
  store: Store;
  clock: Clock;
  logger: Logger;
  /** receipts older than this are pruned as new ones are written */
  receiptDays: number;
}

interface Job {
  name: string;
  cron: string;
  fn: JobFn;
  task: ScheduledTask | null;
  /** the pass in progress, if any */
  running: Promise<JobRunRow> | null;
}

const DAY_MS = 24 * 3600 * 1000;

export class JobScheduler {
  private readonly jobs = new Map<string, Job>();
  private readonly stop = new AbortController();
  private started = false;
  private closing: Promise<void> | undefined;

  constructor(private readonly opts: JobSchedulerOptions) {}

  /** the names of the registered jobs, in the order they were added */
  get names(): string[] {
    return [...this.jobs.keys()];
  }

  /**
   * Registers a job. Once start() has run, it is scheduled at once. Throws
   * for a name used twice, a name that is not lower-case-with-dashes, or an
   * expression node-cron does not take.
   */
  add(name: string, cronExpression: string, fn: JobFn): void {
    if (this.closing) throw new Error('the job scheduler is closed');
    if (!JOB_NAME_RE.test(name)) throw new Error(`job name ${JSON.stringify(name)}: lower-case letters, digits and dashes`);
    if (this.jobs.has(name)) throw new Error(`job ${name} is registered twice`);
    if (!cron.validate(cronExpression)) throw new Error(`job ${name}: ${JSON.stringify(cronExpression)} is not a cron expression`);
    const job: Job = { name, cron: cronExpression, fn, task: null, running: null };
    this.jobs.set(name, job);
    if (this.started) this.schedule(job);
  }

  /** schedules every registered job on its cron expression (idempotent) */
  start(): void {
    if (this.closing) throw new Error('the job scheduler is closed');
    if (this.started) return;
    this.started = true;
    for (const job of this.jobs.values()) this.schedule(job);
  }

  private schedule(job: Job): void {
    const log = this.opts.logger.child({ job: job.name });
    job.task = cron.createTask(
      job.cron,
      () => {
        // never two passes of one job at once in this process: a tick that
        // finds the last pass still running is skipped, not queued
        if (job.running) {
          log.warn('the previous pass is still running: this tick is skipped');
          return;
        }
        void this.pass(job).catch(() => undefined); // pass() logs its own failure
      },
      {
        name: job.name,
        // node-cron's own warnings (a tick missed while the event loop was busy) go to our log
        logger: {
          info: (m) => log.debug(String(m)),
          warn: (m) => log.debug(String(m)),
          error: (m) => log.warn(String(m instanceof Error ? m.message : m)),
          debug: () => undefined,
        },
      },
    );
    void job.task.start();
  }

  /**
   * One pass of a job now, by hand (tests, an operator): waits for a pass
   * already running to end first, so it always starts after the call. Resolves
   * with the receipt; rejects with the job's error (the receipt is kept then
   * too, with ok false).
   */
  async run(name: string): Promise<JobRunRow> {
    const job = this.jobs.get(name);
    if (!job) throw new Error(`no job named ${name}`);
    while (job.running) await job.running.catch(() => undefined);
    if (this.closing) throw new Error('the job scheduler is closed');
    return this.pass(job);
  }

  private pass(job: Job): Promise<JobRunRow> {
    const running = this.runPass(job).finally(() => {
      if (job.running === running) job.running = null;
    });
    job.running = running;
    return running;
  }

  private async runPass(job: Job): Promise<JobRunRow> {
    const log = this.opts.logger.child({ job: job.name });
    const startedAt = this.opts.clock.now();
    const t0 = performance.now();
    const counts: Record<string, number> = {};
    const run: JobRun = {
      signal: this.stop.signal,
      startedAt,
      count: (countName, n = 1) => {
        counts[countName] = (counts[countName] ?? 0) + n;
      },
    };
    let failure: unknown;
    try {
      await job.fn(run);
    } catch (err) {
      failure = err;
    }
    const receipt: JobRunRow = {
      job: job.name,
      startedAt,
      durationMs: Math.round(performance.now() - t0),
      ok: failure === undefined,
      counts,
    };
    if (failure !== undefined) {
      log.error({ err: errorLine(failure), ms: receipt.durationMs, ...counts }, 'job pass failed');
    } else {
      log.info({ ms: receipt.durationMs, ...counts }, 'job pass done');
    }
    try {
      await this.opts.store.recordJobRun(receipt, startedAt - this.opts.receiptDays * DAY_MS);
    } catch (err) {
      // the store may be the very thing that failed; the pass's log line stays
      log.error({ err: errorLine(err) }, 'job receipt not recorded');
    }
    if (failure !== undefined) throw failure;
    return receipt;
  }

  /**
   * Stops the schedule, signals running passes to stop after their batch in
   * hand, and waits for them. Idempotent: a second call joins the first.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const job of this.jobs.values()) await job.task?.destroy();
      this.stop.abort();
      await Promise.all([...this.jobs.values()].map((job) => job.running?.catch(() => undefined)));
    })();
    return this.closing;
  }
}

/** an error as a short line for the log: its code or message, never an object dump */
function errorLine(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown };
  const message = typeof e?.message === 'string' ? e.message : String(err);
  return typeof e?.code === 'string' ? `${e.code}: ${message}` : message;
}
