/**
 * The tests' PostgreSQL: a fresh, uniquely named schema per store or test
 * cloud, dropped (CASCADE) when it closes, so parallel vitest workers never
 * share a table. The server is CAMVAULT_TEST_DATABASE_URL, by default
 * postgres://root@127.0.0.1:5432/test (trust auth on this machine).
 *
 * When the server cannot be reached, a suite that needs it says so in one line
 * and skips, unless CAMVAULT_REQUIRE_POSTGRES=1 (set by .ci/run): then the
 * suite fails.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export const PG_BASE_URL = process.env.CAMVAULT_TEST_DATABASE_URL || 'postgres://root@127.0.0.1:5432/test';

/** .ci/run sets this: PostgreSQL being unreachable then fails the suites instead of skipping them */
export const pgRequired = process.env.CAMVAULT_REQUIRE_POSTGRES === '1';

/** the server, without credentials, for messages */
export function pgTarget(url = PG_BASE_URL): string {
  const u = new URL(url);
  return `${u.hostname || 'localhost'}:${u.port || '5432'}${u.pathname}`;
}

/** a URL whose connections use `schema` (libpq's options parameter: -c search_path=…) */
export function urlWithSchema(schema: string, base = PG_BASE_URL): string {
  const u = new URL(base);
  u.searchParams.set('options', `-c search_path=${schema}`);
  return u.toString();
}

async function withAdmin<T>(fn: (c: pg.Client) => Promise<T>, base = PG_BASE_URL): Promise<T> {
  const c = new pg.Client({ connectionString: base, connectionTimeoutMillis: 5000 });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

let reachability: Promise<string | null> | undefined;

/**
 * null when PostgreSQL answers, else the one-line reason a suite that needs it
 * is skipped. Asked once per worker.
 */
export function postgresUnavailable(): Promise<string | null> {
  reachability ??= withAdmin((c) => c.query('SELECT 1')).then(
    () => null,
    (err: unknown) => {
      const e = err instanceof AggregateError && err.errors.length > 0 ? (err.errors[0] as Error) : (err as Error);
      const why = e.message || (e as { code?: string }).code || String(e);
      return `PostgreSQL at ${pgTarget()} not reachable (${why}): set CAMVAULT_TEST_DATABASE_URL, or start it (\`pg_ctlcluster <version> main start\`)`;
    },
  );
  return reachability;
}

/**
 * For a suite's top level: the skip reason (the suite is skipped and says why
 * in one line), or null to run. Throws, failing the file, when PostgreSQL is
 * required (CAMVAULT_REQUIRE_POSTGRES=1) and unreachable.
 */
export async function postgresSkipReason(): Promise<string | null> {
  const reason = await postgresUnavailable();
  if (reason === null) return null;
  if (pgRequired) throw new Error(`CAMVAULT_REQUIRE_POSTGRES=1 but ${reason}`);
  console.log(`PostgreSQL suites skipped: ${reason}`);
  return reason;
}

export interface TestSchema {
  schema: string;
  /** PG_BASE_URL pointed at the schema */
  url: string;
  /** ids of the rows of `table` in this schema (the test cloud reads its accounts to clean the S3 bucket) */
  ids(table: string): Promise<string[]>;
  /** DROP SCHEMA … CASCADE; idempotent */
  drop(): Promise<void>;
}

/** Creates an empty schema with a unique name (cv_test_<hex>). */
export async function createTestSchema(base = PG_BASE_URL): Promise<TestSchema> {
  const schema = `cv_test_${randomBytes(8).toString('hex')}`;
  try {
    await withAdmin((c) => c.query(`CREATE SCHEMA ${schema}`), base);
  } catch (err) {
    const e = err instanceof AggregateError && err.errors.length > 0 ? (err.errors[0] as Error) : (err as Error);
    throw new Error(`cannot make a test schema on PostgreSQL at ${pgTarget(base)} (CAMVAULT_TEST_DATABASE_URL): ${e.message || String(e)}`, {
      cause: err,
    });
  }
  let dropping: Promise<void> | undefined;
  return {
    schema,
    url: urlWithSchema(schema, base),
    ids: (table) =>
      withAdmin(async (c) => {
        const { rows } = await c.query<{ id: string }>(`SELECT id FROM ${schema}.${pg.escapeIdentifier(table)}`);
        return rows.map((r) => r.id);
      }, base),
    drop: () =>
      (dropping ??= withAdmin(async (c) => {
        await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      }, base)),
  };
}
