/**
 * Consents (DESIGN P7, issue 6): the experience program and marketing are off
 * until given. While the experience consent is off nothing is collected;
 * given, a sign-in, a clip viewed and a device bound are recorded (no IP, no
 * email); withdrawn, collection stops at once and what was collected is
 * deleted. Marketing is only recorded, with its time.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CloudConfig } from '../../cloud/config.js';
import { ConsentsResponse } from '../../shared/contracts/account-rights.js';
import { expectCatalogueError } from '../helpers/api-checks.js';
import {
  api,
  claimDevice,
  randomSerial,
  registerAndLogin,
  setPlan,
  startTestCloud,
  type ClaimedDevice,
  type TestAccount,
  type TestCloud,
} from '../helpers/cloud.js';
import { uploadClip } from '../helpers/upload.js';

/** the experience_events rows of an account, straight from the database, and the table's columns */
async function collected(config: CloudConfig, accountId: string): Promise<{ columns: string[]; rows: Record<string, unknown>[] }> {
  if (config.databaseUrl) {
    const c = new pg.Client({ connectionString: config.databaseUrl });
    await c.connect();
    try {
      const columns = await c.query<{ column_name: string }>(
        `SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'experience_events'`,
      );
      const rows = await c.query('SELECT * FROM experience_events WHERE account_id = $1 ORDER BY id', [accountId]);
      return { columns: columns.rows.map((r) => r.column_name).sort(), rows: rows.rows };
    } finally {
      await c.end();
    }
  }
  const db = new Database(join(config.dataDir, 'camvault.db'), { readonly: true, fileMustExist: true });
  try {
    const columns = (db.prepare('PRAGMA table_info(experience_events)').all() as { name: string }[]).map((r) => r.name).sort();
    const rows = db.prepare('SELECT * FROM experience_events WHERE account_id = ? ORDER BY id').all(accountId) as Record<string, unknown>[];
    return { columns, rows };
  } finally {
    db.close();
  }
}

describe('consents and the experience program', () => {
  let cloud: TestCloud;
  beforeAll(async () => {
    cloud = await startTestCloud();
  });
  afterAll(async () => {
    await cloud?.close();
  });

  /** an account with a camera and a clip, and what the experience program could see it do */
  async function activeAccount(): Promise<{ acct: TestAccount; device: ClaimedDevice; clipId: string }> {
    const acct = await registerAndLogin(cloud.url);
    await setPlan(cloud.url, acct.token, 'standard');
    const device = await claimDevice(cloud.url, acct.token, randomSerial('CNST'));
    const up = await uploadClip(cloud.url, device, { body: randomBytes(80), startMs: Date.now() - 60_000 });
    expect(up.complete?.status).toBe(200);
    return { acct, device, clipId: up.clipId };
  }

  /** a sign-in, a clip viewed twice (view and download), a device bound */
  async function use(acct: TestAccount, clipId: string): Promise<void> {
    expect((await api(cloud.url, 'POST', '/v1/sessions', { body: { email: acct.email, password: acct.password } })).status).toBe(200);
    expect((await api(cloud.url, 'GET', `/v1/clips/${clipId}/view`, { token: acct.token })).status).toBe(200);
    const download = await fetch(`${cloud.url}/v1/clips/${clipId}/download`, { headers: { authorization: `Bearer ${acct.token}` }, redirect: 'manual' });
    await download.arrayBuffer();
    expect(download.status).toBe(302);
    await claimDevice(cloud.url, acct.token, randomSerial('CNSU'));
  }

  it('both consents are off until given, and nothing is collected while the experience program is off', async () => {
    const { acct, clipId } = await activeAccount();
    const res = await api(cloud.url, 'GET', '/v1/account/consents', { token: acct.token });
    expect(res.status).toBe(200);
    expect(ConsentsResponse.parse(res.body)).toEqual({ experience: { granted: false, updatedAt: null }, marketing: { granted: false, updatedAt: null } });
    await use(acct, clipId);
    expect((await collected(cloud.config, acct.accountId)).rows).toEqual([]);
    // marketing alone does not turn collection on
    expect((await api(cloud.url, 'PUT', '/v1/account/consents', { token: acct.token, body: { marketing: true } })).status).toBe(200);
    await use(acct, clipId);
    expect((await collected(cloud.config, acct.accountId)).rows).toEqual([]);
  });

  it('given, a sign-in, a clip viewed and a device bound are recorded with no IP and no email; withdrawn, collection stops at once and what was collected is deleted', async () => {
    const { acct, clipId } = await activeAccount();
    const other = await activeAccount();
    const given = await api(cloud.url, 'PUT', '/v1/account/consents', { token: acct.token, body: { experience: true } });
    expect(given.status).toBe(200);
    expect(given.body.experience).toEqual({ granted: true, updatedAt: expect.any(String) });
    expect(given.body.marketing).toEqual({ granted: false, updatedAt: null });
    for (const a of [acct, other.acct]) expect((await api(cloud.url, 'PUT', '/v1/account/consents', { token: a.token, body: { experience: true } })).status).toBe(200);

    await use(acct, clipId);
    await use(other.acct, other.clipId);
    const { columns, rows } = await collected(cloud.config, acct.accountId);
    expect(rows.map((r) => r.event)).toEqual(['sign-in', 'clip-viewed', 'clip-viewed', 'device-bound']);
    // the account, what happened and when: no address, no email, no serial, no clip
    expect(columns).toEqual(['account_id', 'at', 'event', 'id']);
    const text = JSON.stringify(rows);
    for (const absent of [acct.email, '127.0.0.1', clipId]) expect(text).not.toContain(absent);
    const exported = await api(cloud.url, 'GET', '/v1/account/export', { token: acct.token });
    expect(exported.body.experienceEvents.map((e: { event: string }) => e.event)).toEqual(['sign-in', 'clip-viewed', 'clip-viewed', 'device-bound']);

    const withdrawn = await api(cloud.url, 'PUT', '/v1/account/consents', { token: acct.token, body: { experience: false } });
    expect(withdrawn.body.experience).toEqual({ granted: false, updatedAt: expect.any(String) });
    // at once: gone by the time the answer arrives, and nothing more is collected
    expect((await collected(cloud.config, acct.accountId)).rows).toEqual([]);
    await use(acct, clipId);
    expect((await collected(cloud.config, acct.accountId)).rows).toEqual([]);
    // the other account, still consenting, keeps its own
    expect((await collected(cloud.config, other.acct.accountId)).rows.map((r) => r.event)).toEqual(['sign-in', 'clip-viewed', 'clip-viewed', 'device-bound']);
  });

  it('marketing is recorded with the time of each change, and a consent left out of a PUT stays as it is', async () => {
    const acct = await registerAndLogin(cloud.url);
    const on = await api(cloud.url, 'PUT', '/v1/account/consents', { token: acct.token, body: { marketing: true } });
    const since = on.body.marketing.updatedAt as string;
    expect(Date.parse(since)).toBeGreaterThan(Date.now() - 60_000);
    // the same value again keeps the time of the real change
    await new Promise((r) => setTimeout(r, 5));
    const same = await api(cloud.url, 'PUT', '/v1/account/consents', { token: acct.token, body: { marketing: true, experience: false } });
    expect(same.body).toEqual({ marketing: { granted: true, updatedAt: since }, experience: { granted: false, updatedAt: expect.any(String) } });
    await new Promise((r) => setTimeout(r, 5));
    const off = await api(cloud.url, 'PUT', '/v1/account/consents', { token: acct.token, body: { marketing: false } });
    expect(off.body.marketing.granted).toBe(false);
    expect(Date.parse(off.body.marketing.updatedAt)).toBeGreaterThan(Date.parse(since));
    expect(off.body.experience).toEqual(same.body.experience);
    const unchanged = await api(cloud.url, 'PUT', '/v1/account/consents', { token: acct.token, body: {} });
    expect(unchanged.body).toEqual(off.body);
    expect((await api(cloud.url, 'GET', '/v1/account/consents', { token: acct.token })).body).toEqual(off.body);
    const exported = await api(cloud.url, 'GET', '/v1/account/export', { token: acct.token });
    expect(exported.body.consents).toEqual(off.body);
  });

  it('refuses anything but booleans, unknown consents, and callers without a session', async () => {
    const acct = await registerAndLogin(cloud.url);
    for (const body of [{ experience: 'yes' }, { marketing: 1 }, { newsletter: true }, [true]]) {
      expectCatalogueError(await api(cloud.url, 'PUT', '/v1/account/consents', { token: acct.token, body }), 'VALIDATION_FAILED');
    }
    expectCatalogueError(await api(cloud.url, 'PUT', '/v1/account/consents', { body: { experience: true } }), 'UNAUTHENTICATED');
    expectCatalogueError(await api(cloud.url, 'GET', '/v1/account/consents'), 'UNAUTHENTICATED');
    expect((await api(cloud.url, 'GET', '/v1/account/consents', { token: acct.token })).body.experience.granted).toBe(false);
  });
});
