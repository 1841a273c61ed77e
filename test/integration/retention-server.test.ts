/**
 * The background jobs in a running cloud (cloud/server.ts): scheduled on their
 * cron expressions, stopped when the server closes, and left unscheduled when
 * the configuration turns them off or the cloud runs on an injected clock
 * (where passes run by hand).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { ulid } from 'ulid';
import { afterEach, describe, expect, it } from 'vitest';
import { loadCloudConfig, type CloudConfigInput } from '../../cloud/config.js';
import { startServer, type RunningServer, type StartServerOptions } from '../../cloud/server.js';
import { ManualClock } from '../../shared/clock.js';
import { newClipId } from '../../shared/ids.js';
import { clipObjectKey } from '../../shared/keys.js';
import { createLogger } from '../../shared/log.js';
import { putPresigned } from '../helpers/upload.js';

const EVERY_SECOND = '* * * * * *';
const NEVER = '0 0 1 1 *';

async function waitFor(what: string, done: () => Promise<boolean>, ms = 8000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('background jobs in a running cloud', () => {
  const dirs: string[] = [];
  const servers: RunningServer[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) await s.close();
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  });

  async function start(jobs: CloudConfigInput['jobs'], opts: StartServerOptions = {}): Promise<{ server: RunningServer; dbPath: string }> {
    const dataDir = await mkdtemp(join(tmpdir(), 'camvault-jobs-'));
    dirs.push(dataDir);
    // SQLite and local objects whatever the environment: the test reads the database file after close
    const config = loadCloudConfig({ env: {}, overrides: { host: '127.0.0.1', port: 0, dataDir, logLevel: 'silent', jobs } });
    const server = await startServer(config, { logger: createLogger({ level: 'silent' }), ...opts });
    servers.push(server);
    return { server, dbPath: join(dataDir, 'camvault.db') };
  }

  /** an account with one clip that expired a second ago, and its object */
  async function expiredClip(server: RunningServer, now: number): Promise<string> {
    const accountId = ulid();
    await server.store.createAccount({ id: accountId, email: `${accountId.toLowerCase()}@example.com`, passwordHash: 'h', plan: 'basic', createdAt: now });
    const startMs = now - 8 * 24 * 3600_000;
    const id = newClipId(startMs);
    const key = clipObjectKey(accountId, 'JOBSTEST01', id, startMs);
    const body = randomBytes(50);
    const md5 = createHash('md5').update(body).digest('base64');
    const put = await server.objects.presignPut(key, { contentLength: body.length, contentMd5: md5, expiresInSec: 60 });
    expect((await putPresigned(put, body)).status).toBe(200);
    await server.store.insertClip({ id, accountId, serial: 'JOBSTEST01', key, kind: 'event', startMs, durationMs: 1000, size: body.length, md5, sha256: '0'.repeat(64), uploadedAt: startMs, expiresAt: now - 1000 });
    return id;
  }

  function receipts(dbPath: string): number {
    const db = new Database(dbPath, { readonly: true });
    try {
      return (db.prepare("SELECT COUNT(*) AS n FROM job_runs WHERE job = 'retention'").get() as { n: number }).n;
    } finally {
      db.close();
    }
  }

  it('runs retention on its cron expression, and stops with the server', async () => {
    const { server, dbPath } = await start({ retentionCron: EVERY_SECOND, sweepCron: NEVER });
    expect(server.jobs.names).toEqual(expect.arrayContaining(['retention', 'sweep']));
    const id = await expiredClip(server, Date.now());
    const key = (await server.store.getClip(id))!.key;
    await waitFor('the scheduled pass to delete the expired clip', async () => (await server.store.getClip(id)) === null);
    expect(await server.objects.head(key)).toBeNull();
    await waitFor('its receipt', async () => (await server.store.listJobRuns('retention', 100)).some((r) => r.counts.clipsDeleted === 1));

    await server.close();
    const after = receipts(dbPath);
    expect(after).toBeGreaterThanOrEqual(1);
    // ticks keep coming every second while it runs; none after close
    await new Promise((r) => setTimeout(r, 2500));
    expect(receipts(dbPath)).toBe(after);
  });

  it('schedules nothing when jobs are disabled, or on an injected clock unless told to; a pass by hand still works', async () => {
    const off = await start({ enabled: false, retentionCron: EVERY_SECOND });
    const clock = new ManualClock(Date.now());
    const manual = await start({ retentionCron: EVERY_SECOND }, { clock });
    const told = await start({ retentionCron: EVERY_SECOND, sweepCron: NEVER }, { clock, jobs: true });
    const ids = [await expiredClip(off.server, Date.now()), await expiredClip(manual.server, clock.now()), await expiredClip(told.server, clock.now())];
    await waitFor('the told cloud to run its scheduled pass', async () => (await told.server.store.getClip(ids[2]!)) === null);
    // two more seconds of ticks: the other two never ran a pass
    await new Promise((r) => setTimeout(r, 2000));
    expect(await off.server.store.getClip(ids[0]!)).not.toBeNull();
    expect(await manual.server.store.getClip(ids[1]!)).not.toBeNull();
    expect(await off.server.store.listJobRuns('retention', 10)).toEqual([]);

    const receipt = await manual.server.jobs.run('retention');
    expect(receipt).toMatchObject({ ok: true, startedAt: clock.now(), counts: { clipsDeleted: 1, objectsDeleted: 1 } });
    expect(await manual.server.store.getClip(ids[1]!)).toBeNull();
  });
});
