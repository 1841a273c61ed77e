/**
 * GET /v1/account/export (DESIGN P9, issue 6): a copy of the account's
 * personal data as JSON: profile, consents, devices (its own and those shared
 * with it), the shares it granted, the clip index, the security log with its
 * addresses decrypted for the owner, and the experience events. Nothing of
 * another account's. The clip index is streamed a page at a time.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClipRow } from '../../cloud/store/types.js';
import { AccountExport } from '../../shared/contracts/account-rights.js';
import { newClipId } from '../../shared/ids.js';
import { expectCatalogueError } from '../helpers/api-checks.js';
import {
  api,
  claimDevice,
  randomSerial,
  registerAndLogin,
  setPlan,
  shareDevice,
  startTestCloud,
  type TestCloud,
} from '../helpers/cloud.js';
import { uploadClip } from '../helpers/upload.js';

const MIN = 60_000;

describe('the export of an account', () => {
  let cloud: TestCloud;
  beforeAll(async () => {
    cloud = await startTestCloud();
  });
  afterAll(async () => {
    await cloud?.close();
  });

  it('holds the profile, consents, devices, shares both ways, the clip index, the security log with its IPs and the experience events, and nothing of another account', async () => {
    const a = await registerAndLogin(cloud.url);
    const b = await registerAndLogin(cloud.url);
    await setPlan(cloud.url, a.token, 'standard');
    await setPlan(cloud.url, b.token, 'standard');
    expect((await api(cloud.url, 'PUT', '/v1/account/consents', { token: a.token, body: { experience: true, marketing: true } })).status).toBe(200);
    const mine = await claimDevice(cloud.url, a.token, randomSerial('EXPA'));
    const theirs = await claimDevice(cloud.url, b.token, randomSerial('EXPB'));
    await shareDevice(cloud.url, a.token, mine.serial, b.accountId, 'manager');
    await shareDevice(cloud.url, b.token, theirs.serial, a.accountId, 'viewer');
    const clips = [];
    for (let i = 0; i < 3; i++) {
      const up = await uploadClip(cloud.url, mine, { body: randomBytes(100 + i), startMs: Date.now() - (i + 1) * MIN });
      expect(up.complete?.status).toBe(200);
      clips.push(up.clipId);
    }
    const bClip = await uploadClip(cloud.url, theirs, { body: randomBytes(50), startMs: Date.now() - MIN });
    expect((await api(cloud.url, 'GET', `/v1/clips/${clips[0]}/view`, { token: a.token })).status).toBe(200);

    const res = await fetch(`${cloud.url}/v1/account/export`, { headers: { authorization: `Bearer ${a.token}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(res.headers.get('content-disposition')).toMatch(/^attachment; filename="camvault-export-\d{4}-\d{2}-\d{2}\.json"$/);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const body = AccountExport.parse(await res.json());

    expect(body.profile).toMatchObject({ accountId: a.accountId, email: a.email, plan: 'standard', planLapsedAt: null });
    expect(body.profile.emailVerifiedAt).not.toBeNull();
    expect(body.consents.experience.granted).toBe(true);
    expect(body.consents.marketing.granted).toBe(true);
    expect(body.devices.map((d) => d.serial)).toEqual([mine.serial]);
    expect(body.sharedWithMe).toEqual([{ serial: theirs.serial, model: 'SIM-1', role: 'viewer', sharedAt: expect.any(String) }]);
    expect(body.shares).toEqual([{ serial: mine.serial, accountId: b.accountId, role: 'manager', createdAt: expect.any(String) }]);
    // newest first, as GET /v1/clips lists them
    expect(body.clips.map((c) => c.id)).toEqual(clips);
    expect(body.clips[0]).toMatchObject({ serial: mine.serial, size: 100 });
    const events = body.securityLog.map((e) => e.event);
    expect(events).toEqual(expect.arrayContaining(['sign-in', 'device-bound', 'share-granted', 'data-exported']));
    for (const e of body.securityLog) expect(e.ip).toMatch(/^(127\.0\.0\.1|::ffff:127\.0\.0\.1|::1)$/);
    expect(body.experienceEvents.map((e) => e.event)).toEqual(['device-bound', 'clip-viewed']);

    const text = JSON.stringify(body);
    for (const foreign of [b.email, bClip.clipId]) expect(text).not.toContain(foreign);
  });

  it('streams a clip index of several pages whole, in order, without expired clips', async () => {
    const a = await registerAndLogin(cloud.url);
    await setPlan(cloud.url, a.token, 'basic');
    const device = await claimDevice(cloud.url, a.token, randomSerial('EXPP'));
    const now = Date.now();
    const rows: ClipRow[] = [];
    // 2,345 rows (three pages of the export's 1000), some at the same start to test the keyset's tie-break
    for (let i = 0; i < 2345; i++) {
      const startMs = now - 3600_000 - Math.floor(i / 3) * 1000;
      const id = newClipId(startMs);
      rows.push({
        id,
        accountId: a.accountId,
        serial: device.serial,
        key: `accounts/${a.accountId}/devices/${device.serial}/x/${id}.mp4`,
        kind: i % 2 ? 'event' : 'continuous',
        startMs,
        durationMs: 1000,
        size: 10,
        md5: 'AAAAAAAAAAAAAAAAAAAAAA==',
        sha256: '0'.repeat(64),
        uploadedAt: now,
        expiresAt: i % 100 === 7 ? now - 1 : now + 86_400_000,
      });
    }
    for (const r of rows) await cloud.store.insertClip(r);
    const visible = rows
      .filter((r) => r.expiresAt > now)
      .sort((x, y) => y.startMs - x.startMs || (x.id < y.id ? 1 : -1))
      .map((r) => r.id);
    const res = await api(cloud.url, 'GET', '/v1/account/export', { token: a.token });
    expect(res.status).toBe(200);
    const ids = (res.body.clips as { id: string }[]).map((c) => c.id);
    expect(ids).toHaveLength(visible.length);
    expect(ids).toEqual(visible);
  });

  it('needs a session', async () => {
    expectCatalogueError(await api(cloud.url, 'GET', '/v1/account/export'), 'UNAUTHENTICATED');
    expectCatalogueError(await api(cloud.url, 'GET', '/v1/account/export', { token: 'A'.repeat(43) }), 'UNAUTHENTICATED');
  });
});
