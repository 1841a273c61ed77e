/**
 * The job scheduler (cloud/jobs/scheduler.ts) on real node-cron and a real
 * SQLite store (receipts): jobs run on their cron expression, never two passes
 * of one job at once, a pass by hand waits for a running one, every pass keeps
 * a receipt (a failed one too), and close() stops the schedule and waits for
 * the pass in flight, which sees its stop signal.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { JobScheduler } from '../../cloud/jobs/scheduler.js';
import { SqliteStore } from '../../cloud/store/sqlite.js';
import { ManualClock } from '../../shared/clock.js';
import { createLogger } from '../../shared/log.js';

const EVERY_SECOND = '* * * * * *';
/** node-cron's next tick after this, with room for a busy machine */
const TICK_WAIT_MS = 5000;

async function waitFor(what: string, done: () => boolean | Promise<boolean>, ms = TICK_WAIT_MS): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe('job scheduler', () => {
  const open: { scheduler: JobScheduler; store: SqliteStore }[] = [];
  afterEach(async () => {
    for (const { scheduler, store } of open.splice(0)) {
      await scheduler.close();
      await store.close();
    }
  });

  function make(clock = new ManualClock(Date.parse('2026-07-01T00:00:00Z'))): { scheduler: JobScheduler; store: SqliteStore; clock: ManualClock } {
    const store = new SqliteStore({ path: ':memory:' });
    const scheduler = new JobScheduler({ store, clock, logger: createLogger({ level: 'silent' }), receiptDays: 90 });
    open.push({ scheduler, store });
    return { scheduler, store, clock };
  }

  it('runs a job on its cron expression and keeps a receipt of each pass with its counts', async () => {
    const { scheduler, store, clock } = make();
    let passes = 0;
    scheduler.add('counter', EVERY_SECOND, async (run) => {
      passes++;
      run.count('thingsDone', 2);
      run.count('thingsDone');
    });
    expect(scheduler.names).toEqual(['counter']);
    // added but not started: nothing runs
    await new Promise((r) => setTimeout(r, 1200));
    expect(passes).toBe(0);
    scheduler.start();
    await waitFor('two scheduled passes', () => passes >= 2);
    await waitFor('their receipts', async () => (await store.listJobRuns('counter', 10)).length >= 2);
    const [latest] = await store.listJobRuns('counter', 1);
    expect(latest).toMatchObject({ job: 'counter', startedAt: clock.now(), ok: true, counts: { thingsDone: 3 } });
    expect(latest!.durationMs).toBeGreaterThanOrEqual(0);
  });

  it('never runs two passes of one job at once: ticks are skipped while a pass runs, and a pass by hand waits for it', async () => {
    const { scheduler, store } = make();
    let started = 0;
    let inFlight = 0;
    let maxInFlight = 0;
    const gates: { resolve: () => void }[] = [];
    scheduler.add('slow', EVERY_SECOND, async () => {
      started++;
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      const gate = deferred();
      gates.push(gate);
      await gate.promise;
      inFlight--;
    });
    scheduler.start();
    await waitFor('the first pass', () => started === 1);
    // at least two more ticks go by while the first pass is held
    await new Promise((r) => setTimeout(r, 2200));
    expect(started).toBe(1);

    let byHandDone = false;
    const byHand = scheduler.run('slow').then((receipt) => {
      byHandDone = true;
      return receipt;
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(started).toBe(1);
    gates[0]!.resolve();
    await waitFor('the next pass to start', () => started === 2);
    expect(byHandDone).toBe(false);
    // release passes as they come (a tick may slip in before the pass by hand) until it is done
    await waitFor('the pass by hand', () => {
      for (const g of gates) g.resolve();
      return byHandDone;
    });
    expect((await byHand).ok).toBe(true);
    expect(maxInFlight).toBe(1);
    expect((await store.listJobRuns('slow', 10)).length).toBeGreaterThanOrEqual(2);
  });

  it('a failed pass keeps a receipt with ok false and the counts it reached, and the job runs again next time', async () => {
    const { scheduler, store } = make();
    let calls = 0;
    scheduler.add('flaky', '0 0 1 1 *', async (run) => {
      calls++;
      run.count('itemsDone', 4);
      if (calls === 1) throw new Error('the store went away');
    });
    await expect(scheduler.run('flaky')).rejects.toThrow('the store went away');
    expect(await store.listJobRuns('flaky', 10)).toEqual([expect.objectContaining({ ok: false, counts: { itemsDone: 4 } })]);
    expect((await scheduler.run('flaky')).ok).toBe(true);
    expect((await store.listJobRuns('flaky', 10)).map((r) => r.ok)).toEqual([true, false]);
  });

  it('close() stops the schedule, signals the pass in flight to stop and waits for it; later passes are refused', async () => {
    const { scheduler, store } = make();
    let started = 0;
    let sawStop = false;
    scheduler.add('looping', EVERY_SECOND, async (run) => {
      started++;
      // a job is a loop that checks its stop signal between batches
      while (!run.signal.aborted) await new Promise((r) => setTimeout(r, 10));
      sawStop = true;
      run.count('batches', 1);
    });
    scheduler.start();
    await waitFor('a pass', () => started === 1);
    await scheduler.close();
    expect(sawStop).toBe(true);
    expect(await store.listJobRuns('looping', 10)).toEqual([expect.objectContaining({ ok: true, counts: { batches: 1 } })]);
    await scheduler.close(); // idempotent
    await new Promise((r) => setTimeout(r, 1200));
    expect(started).toBe(1);
    await expect(scheduler.run('looping')).rejects.toThrow(/closed/);
    expect(() => scheduler.add('late', EVERY_SECOND, async () => undefined)).toThrow(/closed/);
  });

  it('refuses a bad job name, a name used twice and an expression node-cron does not take', () => {
    const { scheduler } = make();
    scheduler.add('security-log-erase', '0 * * * *', async () => undefined);
    expect(() => scheduler.add('security-log-erase', '0 * * * *', async () => undefined)).toThrow(/twice/);
    expect(() => scheduler.add('Bad Name', '0 * * * *', async () => undefined)).toThrow(/job name/);
    expect(() => scheduler.add('nightly', 'every night', async () => undefined)).toThrow(/not a cron expression/);
    return expect(scheduler.run('unknown')).rejects.toThrow(/no job named/);
  });
});
