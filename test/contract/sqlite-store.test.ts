import Database from 'better-sqlite3';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ulid } from 'ulid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../cloud/store/sqlite.js';
import { SQLITE_MIGRATIONS } from '../../cloud/store/sqlite-migrations.js';
import { storeContract } from './store.contract.js';

storeContract('sqlite :memory:', async () => {
  const store = new SqliteStore({ path: ':memory:' });
  return { store, close: () => store.close() };
});

describe('sqlite store on disk', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'camvault-sqlite-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('runs in WAL mode, migrates once, and keeps its rows across a reopen', async () => {
    const path = join(dir, 'a.db');
    const first = new SqliteStore({ path });
    expect(first.schemaVersion).toBe(SQLITE_MIGRATIONS.length);
    const id = ulid();
    await first.createAccount({ id, email: 'x@example.com', passwordHash: 'h', plan: null, createdAt: 1 });
    await first.close();
    await first.close(); // idempotent

    const raw = new Database(path, { readonly: true });
    expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    raw.close();

    const second = new SqliteStore({ path });
    expect((await second.getAccountById(id))?.email).toBe('x@example.com');
    await second.close();
    await expect(second.getAccountById(id)).rejects.toThrow(/closed/);
  });

  it('refuses a database from a newer version of the program', async () => {
    const path = join(dir, 'newer.db');
    const raw = new Database(path);
    raw.pragma(`user_version = ${SQLITE_MIGRATIONS.length + 1}`);
    raw.close();
    expect(() => new SqliteStore({ path })).toThrow(/newer than this program knows/);
  });
});
