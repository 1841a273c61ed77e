/**
 * `npm run bench -- api`: how fast a subscriber lists clips when the account
 * holds 1,000,000 of them (issue 5, "Benchmark bench/api").
 *
 * A real cloud on loopback (the local object store; listing never touches
 * it), on SQLite, and on PostgreSQL when CAMVAULT_DATABASE_URL is set (in a
 * fresh schema of that database, dropped at the end). One account on the
 * premium plan with one claimed camera, made through the API (sign-up, the
 * mailed code from the development outbox, login). Its clips are written
 * straight into the database, in batches, as the upload path would leave
 * them (one camera, 10 s apart, events and continuous footage mixed, none
 * expired): 1,000,000 uploads through the API would take hours and measure
 * nothing this benchmark is about.
 *
 * Measured through HTTP with keep-alive, one request at a time after a
 * warm-up, API_BENCH_REQUESTS (300) of each:
 *   first page:   GET /v1/clips (the default page, newest first);
 *   deep cursor:  GET /v1/clips?cursor=… with the cursor of the clip at 90%
 *                 of the account's history, as a client paging far back has.
 * Figures: list_p50_ms_<db>_first_page, list_p95_ms_<db>_first_page,
 * list_p50_ms_<db>_deep_cursor, list_p95_ms_<db>_deep_cursor; the p95s have
 * the target (under 20 ms). Also the seeding rate, for the record.
 *
 * API_BENCH_CLIPS changes the number of clips (for a quick look). Prints one
 * JSON line per figure; exits 1 when a figure misses its target.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { pino } from 'pino';
import { loadCloudConfig } from '../cloud/config.js';
import type { DevOutbox } from '../cloud/mail/index.js';
import { encodeCursor } from '../cloud/routes/clips.js';
import { startServer } from '../cloud/server.js';
import { newClipId } from '../shared/ids.js';
import { clipObjectKey } from '../shared/keys.js';
import { createLogger } from '../shared/log.js';
import { figurePrinter, round } from './_figures.js';

const CLIPS = Number(process.env.API_BENCH_CLIPS ?? 1_000_000);
const REQUESTS = Number(process.env.API_BENCH_REQUESTS ?? 300);
const WARMUP = 30;
const BATCH = 10_000;
const TARGET_P95_MS = 20;
const SERIAL = 'BENCHAPI0001';
const DAY = 86_400_000;

const print = figurePrinter('api');

type Backend = 'sqlite' | 'postgres';

interface SeedRow {
  id: string;
  key: string;
  kind: 'event' | 'continuous';
  startMs: number;
  size: number;
}

/** The account's history: CLIPS clips of one camera, 10 s apart, ending a minute ago; one in five an event. */
function* clipRows(accountId: string, now: number): Generator<SeedRow[]> {
  let batch: SeedRow[] = [];
  for (let i = 0; i < CLIPS; i++) {
    const startMs = now - 60_000 - i * 10_000;
    const id = newClipId(startMs);
    batch.push({ id, key: clipObjectKey(accountId, SERIAL, id, startMs), kind: i % 5 === 0 ? 'event' : 'continuous', startMs, size: 1_500_000 + (i % 1000) });
    if (batch.length === BATCH) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length) yield batch;
}

const MD5 = 'AAAAAAAAAAAAAAAAAAAAAA==';
const SHA256 = '0'.repeat(64);

function seedSqlite(dbPath: string, accountId: string, now: number, expiresAt: number): void {
  const db = new Database(dbPath);
  try {
    db.pragma('journal_mode = WAL');
    const insert = db.prepare(
      `INSERT INTO clips (id, account_id, serial, object_key, kind, start_ms, duration_ms, size, md5, sha256, uploaded_at, expires_at)
       VALUES (?, ?, ?, ?, ?, ?, 10000, ?, ?, ?, ?, ?)`,
    );
    const many = db.transaction((rows: SeedRow[]) => {
      for (const r of rows) insert.run(r.id, accountId, SERIAL, r.key, r.kind, r.startMs, r.size, MD5, SHA256, now, expiresAt);
    });
    for (const rows of clipRows(accountId, now)) many(rows);
    db.pragma('wal_checkpoint(TRUNCATE)');
  } finally {
    db.close();
  }
}

async function seedPostgres(url: string, accountId: string, now: number, expiresAt: number): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    for (const rows of clipRows(accountId, now)) {
      await c.query(
        `INSERT INTO clips (id, account_id, serial, object_key, kind, start_ms, duration_ms, size, md5, sha256, uploaded_at, expires_at)
         SELECT id, $1, $2, k, kind, s, 10000, sz, $3, $4, $5, $6
           FROM unnest($7::text[], $8::text[], $9::text[], $10::bigint[], $11::bigint[]) AS t(id, k, kind, s, sz)`,
        [accountId, SERIAL, MD5, SHA256, now, expiresAt, rows.map((r) => r.id), rows.map((r) => r.key), rows.map((r) => r.kind), rows.map((r) => r.startMs), rows.map((r) => r.size)],
      );
    }
    // an operator's database has statistics (autovacuum); a fresh bulk load has none yet
    await c.query('ANALYZE clips');
  } finally {
    await c.end();
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

async function timeRequests(url: string, auth: string): Promise<{ p50: number; p95: number; clips: number }> {
  const one = async (): Promise<{ ms: number; clips: number }> => {
    const t0 = performance.now();
    const res = await fetch(url, { headers: { authorization: auth } });
    const body = (await res.json()) as { clips?: unknown[] };
    const ms = performance.now() - t0;
    if (res.status !== 200 || !Array.isArray(body.clips)) throw new Error(`GET ${new URL(url).pathname}: HTTP ${res.status} ${JSON.stringify(body).slice(0, 200)}`);
    return { ms, clips: body.clips.length };
  };
  for (let i = 0; i < WARMUP; i++) await one();
  const times: number[] = [];
  let clips = 0;
  for (let i = 0; i < REQUESTS; i++) {
    const r = await one();
    times.push(r.ms);
    clips = r.clips;
  }
  times.sort((a, b) => a - b);
  return { p50: percentile(times, 50), p95: percentile(times, 95), clips };
}

/** A fresh schema in CAMVAULT_DATABASE_URL's database, and that URL pointed at it. */
async function freshSchema(base: string): Promise<{ url: string; drop: () => Promise<void> }> {
  const schema = `bench_api_${randomBytes(4).toString('hex')}`;
  const admin = async (sql: string): Promise<void> => {
    const c = new pg.Client({ connectionString: base });
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  };
  await admin(`CREATE SCHEMA ${schema}`);
  const u = new URL(base);
  u.searchParams.set('options', `-c search_path=${schema}`);
  return { url: u.toString(), drop: () => admin(`DROP SCHEMA IF EXISTS ${schema} CASCADE`) };
}

async function runBackend(backend: Backend): Promise<boolean> {
  const dataDir = await mkdtemp(join(tmpdir(), `camvault-bench-api-${backend}-`));
  const schema = backend === 'postgres' ? await freshSchema(process.env.CAMVAULT_DATABASE_URL as string) : undefined;
  let ok = true;
  try {
    const config = loadCloudConfig({
      env: {},
      overrides: { host: '127.0.0.1', port: 0, dataDir, logLevel: 'info', ...(schema ? { databaseUrl: schema.url } : {}) },
    });
    // production's log level, written where it costs what it costs but shows nowhere
    const logger = createLogger({ name: 'cloud', level: 'info' }, pino.destination({ dest: '/dev/null', sync: false }));
    const server = await startServer(config, { logger });
    try {
      const call = async (method: string, path: string, body: unknown, auth?: string): Promise<Record<string, unknown>> => {
        const res = await fetch(server.url + path, {
          method,
          headers: { 'content-type': 'application/json', ...(auth ? { authorization: auth } : {}) },
          body: JSON.stringify(body),
        });
        const text = await res.text();
        if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status} ${text}`);
        return text ? (JSON.parse(text) as Record<string, unknown>) : {};
      };
      const email = `bench-api-${randomBytes(4).toString('hex')}@example.com`;
      const password = 'correct horse battery staple';
      const outbox = server.mailer as DevOutbox;
      const since = outbox.cursor;
      await call('POST', '/v1/accounts', { email, password });
      await call('POST', '/v1/accounts/verify', { email, code: await outbox.waitForCode(email, since) });
      const session = await call('POST', '/v1/sessions', { email, password });
      const auth = `Bearer ${session.token as string}`;
      const accountId = session.accountId as string;
      await call('PUT', '/v1/account/plan', { plan: 'premium' }, auth);
      const { code } = await call('POST', '/v1/devices/bind-codes', {}, auth);
      await call('POST', '/v1/device/claim', { serial: SERIAL, model: 'SIM-1', bindCode: code });

      const now = Date.now();
      const expiresAt = now + 60 * DAY;
      const t0 = performance.now();
      if (schema) await seedPostgres(schema.url, accountId, now, expiresAt);
      else seedSqlite(join(dataDir, 'camvault.db'), accountId, now, expiresAt);
      const seedS = (performance.now() - t0) / 1000;
      print({ figure: `seed_clips_per_s_${backend}`, value: Math.round(CLIPS / seedS), unit: 'clips/s', target: null, pass: null, clips: CLIPS });

      // the cursor a client paging back through 90% of the history would hold
      const deep = Math.floor(CLIPS * 0.9);
      const deepStart = now - 60_000 - deep * 10_000;
      const deepRow = await listOne(server.url, auth, deepStart);
      const cursor = encodeCursor(deepRow);

      const common = { clips_in_account: CLIPS, requests: REQUESTS, db: backend };
      for (const [name, path] of [
        ['first_page', '/v1/clips'],
        ['deep_cursor', `/v1/clips?cursor=${cursor}`],
      ] as const) {
        const r = await timeRequests(server.url + path, auth);
        if (r.clips === 0) throw new Error(`${name}: an empty page`);
        print({ figure: `list_p50_ms_${backend}_${name}`, value: round(r.p50, 2), unit: 'ms', target: null, pass: null, page_clips: r.clips, ...common });
        const pass = r.p95 < TARGET_P95_MS;
        print({ figure: `list_p95_ms_${backend}_${name}`, value: round(r.p95, 2), unit: 'ms', target: TARGET_P95_MS, pass, page_clips: r.clips, ...common });
        ok &&= pass;
      }
    } finally {
      await server.close();
    }
  } finally {
    await rm(dataDir, { recursive: true, force: true });
    await schema?.drop();
  }
  return ok;
}

/** The clip that starts at startMs, through the API (a one-clip time window). */
async function listOne(base: string, auth: string, startMs: number): Promise<{ startMs: number; id: string }> {
  const q = `from=${encodeURIComponent(new Date(startMs).toISOString())}&to=${encodeURIComponent(new Date(startMs + 1).toISOString())}&limit=1`;
  const res = await fetch(`${base}/v1/clips?${q}`, { headers: { authorization: auth } });
  const body = (await res.json()) as { clips?: { id: string; start: string }[] };
  const clip = body.clips?.[0];
  if (res.status !== 200 || !clip) throw new Error(`no clip at ${new Date(startMs).toISOString()}: HTTP ${res.status}`);
  return { startMs: Date.parse(clip.start), id: clip.id };
}

async function main(): Promise<void> {
  const backends: Backend[] = ['sqlite'];
  if (process.env.CAMVAULT_DATABASE_URL) backends.push('postgres');
  else console.error('bench api: CAMVAULT_DATABASE_URL not set: PostgreSQL figures skipped');
  let ok = true;
  for (const b of backends) ok = (await runBackend(b)) && ok;
  process.exit(ok ? 0 : 1);
}

main().catch((err: unknown) => {
  console.error(`bench api: ${(err as Error).message}`);
  process.exit(1);
});
