/**
 * The store contract on PostgreSQL, plus what only a shared server can get
 * wrong: several nodes migrating at once, a schema newer than the program,
 * and claims and presigns racing on separate connections. Every store gets a
 * fresh schema of its own (test/helpers/pg.ts), dropped afterwards.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { ulid } from 'ulid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDatabaseUrl, PostgresStore } from '../../cloud/store/postgres.js';
import { POSTGRES_MIGRATIONS } from '../../cloud/store/postgres-migrations.js';
import { SQLITE_MIGRATIONS } from '../../cloud/store/sqlite-migrations.js';
import { newClipId } from '../../shared/ids.js';
import { createTestSchema, PG_BASE_URL, pgTarget, postgresSkipReason, type TestSchema } from '../helpers/pg.js';
import { runCloud } from '../helpers/run-cloud.js';
import { storeContract } from './store.contract.js';

const skipReason = await postgresSkipReason();
const NOW = Date.parse('2026-06-01T12:00:00Z');
const hash = (): string => randomBytes(32).toString('hex');
const serial = (): string => `PG${randomBytes(6).toString('hex').toUpperCase()}`;

/** a store on a fresh schema; closing it drops the schema */
async function freshStore(poolSize = 4): Promise<{ store: PostgresStore; schema: TestSchema; close(): Promise<void> }> {
  const schema = await createTestSchema();
  try {
    const store = await PostgresStore.open({ url: schema.url, poolSize });
    return {
      store,
      schema,
      close: async () => {
        await store.close();
        await schema.drop();
      },
    };
  } catch (err) {
    await schema.drop();
    throw err;
  }
}

async function adminQuery<R extends pg.QueryResultRow>(url: string, sql: string, values: unknown[] = []): Promise<R[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<R>(sql, values)).rows;
  } finally {
    await c.end();
  }
}

describe('the database URL', () => {
  it('names the server for messages, and knows the password only to keep it out of them', () => {
    expect(parseDatabaseUrl('postgresql://u:p%40ss@[::1]:5433/camvault?options=-c%20search_path%3Dx')).toEqual({
      target: '[::1]:5433/camvault',
      password: 'p@ss',
    });
    expect(parseDatabaseUrl('postgres://cam@/camvault?host=/run/postgresql')).toEqual({ target: '/run/postgresql:5432/camvault', password: '' });
    expect(() => parseDatabaseUrl('mysql://u:secret@db/x')).toThrow(/must start with postgres/);
    expect(() => parseDatabaseUrl('postgres://u:secret@db:port/x')).toThrow(/^the database URL is not a valid URL$/);
  });
});

describe.skipIf(skipReason !== null)(`postgres store${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  storeContract('postgres', () => freshStore());

  it('has one migration for each of the SQLite store (migration N mirrors SQLite N)', () => {
    expect(POSTGRES_MIGRATIONS.length).toBe(SQLITE_MIGRATIONS.length);
  });

  describe('start-up', () => {
    const schemas: TestSchema[] = [];
    afterAll(async () => {
      for (const s of schemas) await s.drop();
    });

    it('migrates once when several nodes start at the same moment on a fresh schema', async () => {
      const schema = await createTestSchema();
      schemas.push(schema);
      const stores = await Promise.all(Array.from({ length: 4 }, () => PostgresStore.open({ url: schema.url, poolSize: 2 })));
      try {
        for (const s of stores) expect(s.schemaVersion).toBe(POSTGRES_MIGRATIONS.length);
        const rows = await adminQuery<{ version: number }>(
          schema.url,
          'SELECT version FROM camvault_schema_migrations ORDER BY version',
        );
        expect(rows.map((r) => r.version)).toEqual(POSTGRES_MIGRATIONS.map((_, i) => i + 1));
        // every node works on the one schema
        const id = ulid();
        expect(await stores[0]!.createAccount({ id, email: `${id}@example.com`, passwordHash: 'h', plan: null, createdAt: NOW })).toBe(true);
        expect((await stores[3]!.getAccountById(id))?.createdAt).toBe(NOW);
      } finally {
        await Promise.all(stores.map((s) => s.close()));
      }
      // a restart finds nothing to do
      const again = await PostgresStore.open({ url: schema.url, poolSize: 1 });
      await again.close();
      const count = await adminQuery<{ n: number }>(schema.url, 'SELECT COUNT(*)::int AS n FROM camvault_schema_migrations');
      expect(count[0]!.n).toBe(POSTGRES_MIGRATIONS.length);
    });

    it('refuses a schema from a newer version of the program, in one line naming the server', async () => {
      const schema = await createTestSchema();
      schemas.push(schema);
      const first = await PostgresStore.open({ url: schema.url, poolSize: 1 });
      await first.close();
      const newer = POSTGRES_MIGRATIONS.length + 1;
      await adminQuery(schema.url, 'INSERT INTO camvault_schema_migrations (version, applied_at) VALUES ($1, 0)', [newer]);
      const err = await PostgresStore.open({ url: schema.url, poolSize: 1 }).then(
        () => null,
        (e: Error) => e,
      );
      expect(err?.message).toMatch(/newer than this program knows/);
      expect(err?.message.startsWith(`postgresql store at ${pgTarget()}:`)).toBe(true);
      expect(err?.message).not.toContain('\n');
      // nothing was applied or removed
      const rows = await adminQuery<{ version: number }>(schema.url, 'SELECT MAX(version) AS version FROM camvault_schema_migrations');
      expect(rows[0]!.version).toBe(newer);
    });

    it('an unreachable server is one line with the host, never the password', async () => {
      const u = new URL(PG_BASE_URL);
      u.password = 'pw-not-for-logs';
      u.hostname = '127.0.0.1';
      u.port = '1'; // nothing listens on port 1
      const err = await PostgresStore.open({ url: u.toString(), connectTimeoutMs: 3000 }).then(
        () => null,
        (e: Error) => e,
      );
      expect(err?.message).toMatch(/^postgresql store at 127\.0\.0\.1:1\/\S+: .*ECONNREFUSED/);
      expect(err?.message).not.toContain('pw-not-for-logs');
      expect(err?.message).not.toContain('\n');
    });

    it('npm run cloud on PostgreSQL: starts on CAMVAULT_DATABASE_URL; an unreachable server is one line and exit 1', async () => {
      const schema = await createTestSchema();
      schemas.push(schema);
      const dataDir = await mkdtemp(join(tmpdir(), 'camvault-pg-cloud-'));
      try {
        let sent = false;
        const run = await runCloud([], { CAMVAULT_PORT: '0', CAMVAULT_DATA_DIR: dataDir, CAMVAULT_DATABASE_URL: schema.url }, (out, kill) => {
          if (!sent && out.includes('camvault cloud listening on')) {
            sent = true;
            kill('SIGTERM');
          }
        });
        expect(sent).toBe(true);
        expect(run.code).toBe(0);
        expect(run.stdout).toContain('"store":"postgresql"');
        // it migrated the schema it was pointed at, and wrote no SQLite file
        const rows = await adminQuery<{ n: number }>(schema.url, 'SELECT COUNT(*)::int AS n FROM camvault_schema_migrations');
        expect(rows[0]!.n).toBe(POSTGRES_MIGRATIONS.length);
        await expect(stat(join(dataDir, 'camvault.db'))).rejects.toMatchObject({ code: 'ENOENT' });

        const down = await runCloud([], { CAMVAULT_DATA_DIR: dataDir, CAMVAULT_DATABASE_URL: 'postgres://root:pw-not-for-logs@127.0.0.1:1/test' });
        expect(down.code).toBe(1);
        expect(down.stderr.trim()).toMatch(/^camvault cloud: cannot start: postgresql store at 127\.0\.0\.1:1\/test: .*ECONNREFUSED/);
        expect(down.stderr.trim().split('\n')).toHaveLength(1);
        expect(down.stderr + down.stdout).not.toContain('pw-not-for-logs');
      } finally {
        await rm(dataDir, { recursive: true, force: true });
      }
    });

    it('close is idempotent, and a closed store refuses work', async () => {
      const { store, close } = await freshStore();
      await Promise.all([store.close(), store.close()]);
      await store.close();
      await expect(store.getAccountById(ulid())).rejects.toThrow(/closed/);
      await expect(store.claimDevice({ codeHash: hash(), serial: serial(), model: 'M', tokenHash: hash(), mqttPasswordHash: hash(), nowMs: NOW, cameraLimit: () => null })).rejects.toThrow(/closed/);
      await close();
    });
  });

  describe('concurrency (separate pooled connections)', () => {
    let store: PostgresStore;
    let schema: TestSchema;
    let close: () => Promise<void>;
    beforeAll(async () => {
      // enough connections that every racer below has its own
      ({ store, schema, close } = await freshStore(12));
    });
    afterAll(async () => {
      await close?.();
    });

    async function account(plan: string | null = 'basic'): Promise<string> {
      const id = ulid();
      expect(await store.createAccount({ id, email: `${id.toLowerCase()}@example.com`, passwordHash: 'h', plan, createdAt: NOW })).toBe(true);
      return id;
    }
    async function code(accountId: string): Promise<string> {
      const codeHash = hash();
      await store.createBindCode({ codeHash, accountId, createdAt: NOW, expiresAt: NOW + 600_000 });
      return codeHash;
    }
    const claim = (codeHash: string, s: string, limit: number | null = null) =>
      store.claimDevice({ codeHash, serial: s, model: 'M', tokenHash: hash(), mqttPasswordHash: hash(), nowMs: NOW, cameraLimit: () => limit });

    it('ten claims with one bind code: exactly one binds', async () => {
      const owner = await account();
      const c = await code(owner);
      const serials = Array.from({ length: 10 }, serial);
      const outcomes = await Promise.all(serials.map((s) => claim(c, s)));
      expect(outcomes.filter((o) => o.status === 'bound')).toHaveLength(1);
      expect(outcomes.filter((o) => o.status === 'code-invalid')).toHaveLength(9);
      expect(await store.listDevices(owner)).toHaveLength(1);
    });

    it('one new serial claimed by two accounts at once: one binds, the other is refused and keeps its code', async () => {
      for (let round = 0; round < 5; round++) {
        const [a, b] = [await account(), await account()];
        const [ca, cb] = [await code(a), await code(b)];
        const s = serial();
        const outcomes = await Promise.all([claim(ca, s), claim(cb, s)]);
        const statuses = outcomes.map((o) => o.status).sort();
        expect(statuses).toEqual(['bound', 'bound-elsewhere']);
        const winner = outcomes[0]!.status === 'bound' ? a : b;
        const loserCode = winner === a ? cb : ca;
        expect((await store.getDevice(s))?.accountId).toBe(winner);
        // the refused claim did not spend the loser's code
        expect((await claim(loserCode, serial())).status).toBe('bound');
      }
    });

    it('six claims at once against a limit of two cameras: exactly two bind', async () => {
      const owner = await account();
      const codes = await Promise.all(Array.from({ length: 6 }, () => code(owner)));
      const outcomes = await Promise.all(codes.map((c) => claim(c, serial(), 2)));
      expect(outcomes.filter((o) => o.status === 'bound')).toHaveLength(2);
      expect(outcomes.filter((o) => o.status === 'camera-limit')).toHaveLength(4);
      expect(await store.listDevices(owner)).toHaveLength(2);
    });

    it('concurrent presigns, re-presigns and deletes keep pending bytes exact', async () => {
      const owner = await account();
      const s = serial();
      expect((await claim(await code(owner), s)).status).toBe('bound');
      const ids = Array.from({ length: 12 }, () => newClipId(NOW));
      const base = { serial: s, accountId: owner, key: 'k', md5: 'm', sha256: 's', startMs: NOW, durationMs: 1, kind: 'event' as const, createdAt: NOW, multipart: null };
      // 60 upserts: every id five times with different sizes (above 2^32, BIGINT), racing
      const ops = Array.from({ length: 60 }, (_, i) => store.upsertUpload({ ...base, clipId: ids[i % ids.length]!, size: 5_000_000_000 + i }));
      await Promise.all(ops);
      const truth = async () =>
        (await adminQuery<{ n: string }>(schema.url, 'SELECT COALESCE(SUM(size), 0)::text AS n FROM uploads WHERE account_id = $1', [owner]))[0]!.n;
      expect(String(await store.sumPendingUploadBytes(owner))).toBe(await truth());
      const sizes = await Promise.all(ids.map(async (id) => (await store.getUpload(id))!.size));
      expect(await store.sumPendingUploadBytes(owner)).toBe(sizes.reduce((a, b) => a + b, 0));
      expect(await store.sumPendingUploadBytes(owner, ids[0])).toBe(sizes.slice(1).reduce((a, b) => a + b, 0));

      // deletes racing more upserts
      await Promise.all([
        ...ids.slice(0, 6).map((id) => store.deleteUpload(id)),
        ...ids.slice(6).map((id) => store.upsertUpload({ ...base, clipId: id, size: 7 })),
      ]);
      expect(await store.sumPendingUploadBytes(owner)).toBe(6 * 7);
      expect(String(await store.sumPendingUploadBytes(owner))).toBe(await truth());
      // unbinding drops the rest with the device, and the total with them
      expect(await store.unbindDevice(s, owner)).toBe(true);
      expect(await store.sumPendingUploadBytes(owner)).toBe(0);
    });

    it('one address registered from several connections at once: one account, created once, the others pending on it', async () => {
      const email = `${ulid().toLowerCase()}@example.com`;
      const emailHash = hash();
      const outcomes = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          store.registerAccount(
            { id: ulid(), email, passwordHash: `h${i}`, plan: null, createdAt: NOW },
            { emailHash, purpose: 'verify', codeHash: hash(), createdAt: NOW, expiresAt: NOW + 600_000 },
          ),
        ),
      );
      expect(outcomes.filter((o) => o.status === 'created')).toHaveLength(1);
      expect(outcomes.filter((o) => o.status === 'pending')).toHaveLength(5);
      const account = await store.getAccountByEmail(email);
      expect(new Set(outcomes.map((o) => o.accountId))).toEqual(new Set([account!.id]));
      expect(account!.emailVerifiedAt).toBeNull();
      const codes = await adminQuery<{ n: number }>(schema.url, 'SELECT COUNT(*)::int AS n FROM email_codes WHERE email_hash = $1', [emailHash]);
      expect(codes[0]!.n).toBe(1);
    });

    it('a mailed code used from several connections at once: the right code wins once; wrong guesses each count', async () => {
      const emailHash = hash();
      const right = hash();
      await store.putEmailCode({ emailHash, purpose: 'reset', codeHash: right, createdAt: NOW, expiresAt: NOW + 600_000 });
      const wins = await Promise.all(Array.from({ length: 6 }, () => store.useEmailCode(emailHash, 'reset', right, NOW, 5)));
      expect(wins.filter(Boolean)).toHaveLength(1);

      await store.putEmailCode({ emailHash, purpose: 'reset', codeHash: right, createdAt: NOW, expiresAt: NOW + 600_000 });
      const guesses = await Promise.all(Array.from({ length: 4 }, () => store.useEmailCode(emailHash, 'reset', hash(), NOW, 5)));
      expect(guesses.every((g) => g === false)).toBe(true);
      const attempts = await adminQuery<{ attempts: number }>(schema.url, 'SELECT attempts FROM email_codes WHERE email_hash = $1', [emailHash]);
      expect(attempts[0]!.attempts).toBe(4);
      // one attempt left: the right code still works, once
      expect(await store.useEmailCode(emailHash, 'reset', right, NOW, 5)).toBe(true);
      expect(await store.useEmailCode(emailHash, 'reset', right, NOW, 5)).toBe(false);
    });

    it('hits on one rate-limit key from several connections at once get distinct counts', async () => {
      const key = `test:${randomBytes(4).toString('hex')}`;
      const counts = await Promise.all(Array.from({ length: 20 }, () => store.hitRateLimit(key, 60_000, NOW)));
      expect(counts.sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
      // the next window starts over
      expect(await store.hitRateLimit(key, 60_000, NOW + 60_000)).toBe(1);
    });

    it('the same clip inserted at once from several connections: one row, every caller gets it', async () => {
      const owner = await account();
      const s = serial();
      expect((await claim(await code(owner), s)).status).toBe('bound');
      const id = newClipId(NOW);
      const row = (size: number) => ({
        id,
        accountId: owner,
        serial: s,
        key: `k/${id}`,
        kind: 'event' as const,
        startMs: NOW,
        durationMs: 1000,
        size,
        md5: 'AAAAAAAAAAAAAAAAAAAAAA==',
        sha256: '0'.repeat(64),
        uploadedAt: NOW,
        expiresAt: NOW + 1000,
      });
      const results = await Promise.all(Array.from({ length: 8 }, (_, i) => store.insertClip(row(100 + i))));
      const stored = await store.getClip(id);
      expect(stored).not.toBeNull();
      for (const r of results) expect(r).toEqual(stored);
      expect(await store.sumClipBytes(owner, NOW)).toBe(stored!.size);
    });
  });
});
