/**
 * A property test (fast-check) over random plans and times (issue 6,
 * acceptance "Retention"): accounts choose, change and let lapse plans of
 * random retentions, clips arrive with random starts, and retention passes
 * (sometimes two at once, as two nodes would) run at random moments. Against
 * a model of the expiry rules (DESIGN.md: retention counts from the earlier
 * of start and receipt; a plan change recomputes unexpired clips; a lapse caps
 * them at the grace end; nothing expired comes back):
 *   - the store's expiry of every clip is the model's, at every pass;
 *   - after a pass at time t, no clip with expiry > t has lost its row or its
 *     object (no unexpired clip is ever deleted),
 *   - and every clip with expiry <= t has lost both.
 * Real SQLite (and PostgreSQL when reachable) and the real local object store.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { ulid } from 'ulid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runRetentionPass } from '../../cloud/jobs/retention.js';
import { LocalObjectStore } from '../../cloud/objects/local.js';
import { PostgresStore } from '../../cloud/store/postgres.js';
import { SqliteStore } from '../../cloud/store/sqlite.js';
import type { Store } from '../../cloud/store/types.js';
import { ManualClock } from '../../shared/clock.js';
import { newClipId } from '../../shared/ids.js';
import { clipObjectKey } from '../../shared/keys.js';
import { createLogger } from '../../shared/log.js';
import { createTestSchema, postgresSkipReason, type TestSchema } from '../helpers/pg.js';

const DAY = 24 * 3600_000;
const MIN = 60_000;
const BASE = Date.parse('2026-01-01T00:00:00Z');
const SERIAL = 'PROPTEST01';

type Event =
  | { kind: 'upload'; account: number; startDelta: number }
  | { kind: 'plan'; account: number; retentionDays: number }
  | { kind: 'lapse'; account: number; graceDays: number }
  | { kind: 'retention'; nodes: 1 | 2 };

const accountIndex = fc.integer({ min: 0, max: 2 });
const eventArb: fc.Arbitrary<Event> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('upload' as const), account: accountIndex, startDelta: fc.integer({ min: -7 * DAY, max: 5 * MIN }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('plan' as const), account: accountIndex, retentionDays: fc.integer({ min: 1, max: 60 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('lapse' as const), account: accountIndex, graceDays: fc.integer({ min: 0, max: 30 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('retention' as const), nodes: fc.constantFrom(1 as const, 2 as const) }) },
);
/** events at increasing times: each after a random gap of up to 12 days (0 included: several things at one instant) */
const scenarioArb = fc.record({
  initialPlans: fc.array(fc.option(fc.integer({ min: 1, max: 60 }), { nil: null }), { minLength: 3, maxLength: 3 }),
  steps: fc.array(fc.tuple(fc.integer({ min: 0, max: 12 * DAY }), eventArb), { minLength: 1, maxLength: 40 }),
});

interface ModelClip {
  id: string;
  accountId: string;
  key: string;
  startMs: number;
  uploadedAt: number;
  expiresAt: number;
  gone: boolean;
}

const pgSkip = await postgresSkipReason();

describe.each([
  { name: 'sqlite', skip: null as string | null, runs: 80 },
  { name: 'postgres', skip: pgSkip, runs: 30 },
])('retention over random plans and times ($name)', ({ name, skip, runs }) => {
  let store: Store;
  let schema: TestSchema | undefined;
  let dir: string;
  let objects: LocalObjectStore;
  const clock = new ManualClock(BASE);
  const logger = createLogger({ level: 'silent' });

  beforeAll(async () => {
    if (skip) return;
    dir = await mkdtemp(join(tmpdir(), 'camvault-retention-prop-'));
    if (name === 'postgres') {
      schema = await createTestSchema();
      store = await PostgresStore.open({ url: schema.url, poolSize: 4 });
    } else {
      store = new SqliteStore({ path: ':memory:' });
    }
    objects = new LocalObjectStore({ root: join(dir, 'objects'), secret: 'property-test-secret-0123456789', publicUrl: () => 'http://127.0.0.1:1', clock });
  });
  afterAll(async () => {
    await objects?.close();
    await store?.close();
    await schema?.drop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const pass = (owner: string) =>
    runRetentionPass({ store, objects, clock, logger, owner, batch: 3, concurrency: 2, leaseMs: 2 * MIN });

  it.skipIf(skip !== null)('no unexpired clip is ever deleted, and every expired one is gone after the next pass', async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArb, async ({ initialPlans, steps }) => {
        // each run its own accounts, so runs do not see each other's clips
        const accounts = initialPlans.map(() => ulid());
        const plans: (number | null)[] = [...initialPlans];
        const clips: ModelClip[] = [];
        let t = BASE;
        for (const [i, id] of accounts.entries()) {
          await store.createAccount({ id, email: `${id.toLowerCase()}@example.com`, passwordHash: 'h', plan: null, createdAt: t });
          if (plans[i] != null) await store.choosePlan(id, 'p', plans[i] * DAY, t);
        }

        /** before a pass: the store keeps every clip not yet deleted, with the model's expiry */
        const expectBefore = async (): Promise<void> => {
          for (const c of clips) {
            if (c.gone) continue;
            expect((await store.getClip(c.id))?.expiresAt, `clip ${c.id} expiry`).toBe(c.expiresAt);
            expect(await objects.head(c.key), 'nothing deletes a clip but a pass').not.toBeNull();
          }
        };
        /** after a pass at `now`: what was unexpired is all there, what was expired is all gone */
        const check = async (now: number): Promise<void> => {
          for (const c of clips) {
            const row = await store.getClip(c.id);
            const object = await objects.head(c.key);
            if (!c.gone && c.expiresAt > now) {
              expect(row?.expiresAt, 'an unexpired clip keeps its row').toBe(c.expiresAt);
              expect(object, 'an unexpired clip keeps its object').not.toBeNull();
            } else {
              expect(row, 'an expired clip loses its row in the pass').toBeNull();
              expect(object, 'an expired clip loses its object in the pass').toBeNull();
              c.gone = true;
            }
          }
        };

        for (const [gap, ev] of steps) {
          t += gap;
          clock.set(t);
          if (ev.kind === 'upload') {
            const retention = plans[ev.account];
            if (retention == null) continue; // no plan: the API refuses the upload (402)
            const accountId = accounts[ev.account] as string;
            const startMs = t + ev.startDelta;
            const id = newClipId(Math.max(startMs, 0));
            const key = clipObjectKey(accountId, SERIAL, id, startMs);
            const body = randomBytes(8);
            await objects.writeObject(key, (async function* () { yield body; })(), { contentLength: body.length, contentMd5: createHash('md5').update(body).digest('base64') });
            const expiresAt = Math.min(startMs, t) + retention * DAY;
            await store.insertClip({ id, accountId, serial: SERIAL, key, kind: 'event', startMs, durationMs: 1000, size: body.length, md5: 'AAAAAAAAAAAAAAAAAAAAAA==', sha256: '0'.repeat(64), uploadedAt: t, expiresAt });
            clips.push({ id, accountId, key, startMs, uploadedAt: t, expiresAt, gone: false });
          } else if (ev.kind === 'plan') {
            const accountId = accounts[ev.account] as string;
            await store.choosePlan(accountId, 'p', ev.retentionDays * DAY, t);
            plans[ev.account] = ev.retentionDays;
            for (const c of clips) {
              if (c.accountId === accountId && !c.gone && c.expiresAt > t) c.expiresAt = Math.min(c.startMs, c.uploadedAt) + ev.retentionDays * DAY;
            }
          } else if (ev.kind === 'lapse') {
            const accountId = accounts[ev.account] as string;
            await store.lapsePlan(accountId, t, t + ev.graceDays * DAY);
            if (plans[ev.account] != null) {
              for (const c of clips) {
                if (c.accountId === accountId && !c.gone && c.expiresAt > t) c.expiresAt = Math.min(c.expiresAt, t + ev.graceDays * DAY);
              }
            }
            plans[ev.account] = null;
          } else {
            // one node, or two at once splitting the work through their leases
            const owners = ev.nodes === 2 ? ['node-a', 'node-b'] : ['node-a'];
            await expectBefore();
            const results = await Promise.all(owners.map(pass));
            for (const r of results) expect(r.keysFailed).toBe(0);
            await check(t);
          }
        }
        // a last pass far later: the property holds to the end, and nothing is left behind
        t += 400 * DAY;
        clock.set(t);
        await expectBefore();
        await pass('node-a');
        await check(t);
        expect(clips.every((c) => c.gone)).toBe(true);
      }),
      { numRuns: runs },
    );
  });
});
