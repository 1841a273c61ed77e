import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_PLANS } from '../../cloud/config.js';
import { fleetSerials } from '../../firmware-sim/fleet-cli.js';
import { formatFleetTable } from '../../firmware-sim/fleet-stats.js';
import { runFleet } from '../../firmware-sim/fleet.js';
import { DEFAULT_PART_BYTES } from '../../shared/multipart.js';
import { api, createBindCode, registerAndLogin, setPlan, startTestCloud, type TestAccount, type TestCloud } from '../helpers/cloud.js';

const DEVICES = 20;
const EVERY_MS = 2000;
const DURATION_MS = 10_000;
const CLIP_BYTES = 64 * 1024 + 17;

/** every clip of the account, through GET /v1/clips, page by page */
async function listAllClips(base: string, token: string): Promise<{ id: string; serial: string; size: number }[]> {
  const all: { id: string; serial: string; size: number }[] = [];
  let cursor: string | null = null;
  do {
    const q: string = cursor ? `?limit=500&cursor=${encodeURIComponent(cursor)}` : '?limit=500';
    const res = await api(base, 'GET', `/v1/clips${q}`, { token });
    expect(res.status).toBe(200);
    all.push(...res.body.clips);
    cursor = res.body.nextCursor;
  } while (cursor);
  return all;
}

/** the count column of a route's row in the closing table */
function tableCount(table: string, route: string): number {
  const row = table.split('\n').find((l) => l.startsWith(`${route} `));
  if (!row) throw new Error(`no row for ${route} in\n${table}`);
  return Number(row.slice(route.length).trim().split(/\s+/)[0]);
}

describe('fleet mode (firmware-sim/fleet.ts)', () => {
  let cloud: TestCloud;
  let owner: TestAccount;

  beforeAll(async () => {
    cloud = await startTestCloud({
      // one account holds the whole fleet
      plans: { ...DEFAULT_PLANS, fleet: { retentionDays: 1, cameras: 100, storageBytes: 1e10 } },
    });
    owner = await registerAndLogin(cloud.url);
    await setPlan(cloud.url, owner.token, 'fleet');
  });
  afterAll(async () => {
    await cloud?.close();
  });

  it('20 devices claim, then upload a clip every 2 s and alert every 3 s for 10 s: every clip and alert arrives, the table counts them, no errors', async () => {
    const serials = fleetSerials('FLTEST', DEVICES);
    const devices = [];
    for (const serial of serials) devices.push({ serial, bindCode: await createBindCode(cloud.url, owner.token) });
    const progress: string[] = [];
    const notices: string[] = [];

    const { summary, clips } = await runFleet({
      cloudUrl: cloud.url,
      devices,
      clipBytes: CLIP_BYTES,
      everyMs: EVERY_MS,
      alertsEveryMs: 3000,
      durationMs: DURATION_MS,
      progressEveryMs: 2000,
      onProgress: (l) => progress.push(l),
      onNotice: (l) => notices.push(l),
    });

    expect(summary.errors, formatFleetTable(summary)).toBe(0);
    expect(summary.claimed).toBe(DEVICES);
    // each device's first clip falls somewhere in the first interval, then one every interval until the end
    const perDevice = DURATION_MS / EVERY_MS;
    expect(summary.uploads).toBeGreaterThanOrEqual(DEVICES * (perDevice - 1));
    expect(summary.uploads).toBeLessThanOrEqual(DEVICES * perDevice);
    for (const serial of serials) expect(clips.get(serial)?.length ?? 0, serial).toBeGreaterThanOrEqual(perDevice - 1);

    // what the account holds is exactly what the fleet says it completed
    const listed = await listAllClips(cloud.url, owner.token);
    const completed = [...clips.values()].flat();
    expect(listed.map((c) => c.id).sort()).toEqual(completed.sort());
    expect(listed.every((c) => c.size === CLIP_BYTES)).toBe(true);
    expect(new Set(listed.map((c) => c.serial))).toEqual(new Set(serials));

    // the closing table's counts are the summary's, and match the listing
    const table = formatFleetTable(summary);
    expect(tableCount(table, 'claim')).toBe(DEVICES);
    for (const route of ['presign', 'PUT', 'complete']) expect(tableCount(table, route), route).toBe(listed.length);
    expect(table).toContain(`${listed.length} uploads`);
    const presign = summary.routes.find((r) => r.route === 'presign');
    expect(presign?.p95Ms).toBeGreaterThan(0);
    expect(presign?.p50Ms).toBeLessThanOrEqual(presign?.p95Ms as number);

    // progress every 2 s while it ran
    expect(progress.filter((l) => /uploads\/s, \d+ uploads, 0 errors, \d+ in flight/.test(l)).length).toBeGreaterThanOrEqual(3);

    // alerts over the cloud's broker (its claim answer names it): every device connected, and every alert acknowledged became a notification
    expect(summary.alertsOff).toBeNull();
    expect(notices).toEqual([]);
    expect(summary.routes.find((r) => r.route === 'mqtt connect')?.succeeded).toBe(DEVICES);
    const published = summary.routes.find((r) => r.route === 'alert publish')?.succeeded ?? 0;
    // one every 3 s from a start within the first 3 s: 3 or 4 per device in 10 s
    expect(published).toBeGreaterThanOrEqual(DEVICES * 3);
    expect(tableCount(table, 'alert publish')).toBe(published);
    let notifications: { serial: string; type: string }[] = [];
    for (let i = 0; i < 50 && notifications.length < published; i++) {
      const res = await api(cloud.url, 'GET', '/v1/notifications', { token: owner.token });
      expect(res.status).toBe(200);
      notifications = res.body.notifications;
      if (notifications.length < published) await new Promise((r) => setTimeout(r, 200));
    }
    expect(notifications).toHaveLength(published);
    expect(notifications.every((n) => serials.includes(n.serial) && n.type === 'motion')).toBe(true);
  });

  it('a clip above the cloud\'s multipart threshold goes up in declared parts, each PUT counted', async () => {
    const big = await startTestCloud({ multipartThresholdBytes: 5 * 1024 * 1024 });
    try {
      const account = await registerAndLogin(big.url);
      await setPlan(big.url, account.token, 'premium');
      const serials = fleetSerials('FLPARTS', 2);
      const devices = [];
      for (const serial of serials) devices.push({ serial, bindCode: await createBindCode(big.url, account.token) });
      const clipBytes = DEFAULT_PART_BYTES + 1;
      // one clip each: the first falls within the first interval, the next one after the end
      const { summary } = await runFleet({ cloudUrl: big.url, devices, clipBytes, everyMs: 3000, durationMs: 3000 });
      expect(summary.errors, formatFleetTable(summary)).toBe(0);
      expect(summary.uploads).toBe(2);
      expect(summary.routes.find((r) => r.route === 'PUT')?.count).toBe(2 * 2);
      const listed = await listAllClips(big.url, account.token);
      expect(listed.map((c) => c.size)).toEqual([clipBytes, clipBytes]);
    } finally {
      await big.close();
    }
  });

  it('claims refused by the per-address limit are counted as RATE_LIMITED, with the hint to raise it, and those devices upload nothing', async () => {
    const limited = await startTestCloud({ rateLimits: { claimPerIp: { max: 3, windowSec: 900 } } });
    try {
      const account = await registerAndLogin(limited.url);
      await setPlan(limited.url, account.token, 'premium');
      const serials = fleetSerials('FLLIMIT', 8);
      const devices = [];
      for (const serial of serials) devices.push({ serial, bindCode: await createBindCode(limited.url, account.token) });
      const notices: string[] = [];
      const { summary, clips } = await runFleet({
        cloudUrl: limited.url,
        devices,
        clipBytes: 1000,
        everyMs: 500,
        durationMs: 1200,
        // one at a time: the first three get through
        claimConcurrency: 1,
        onNotice: (l) => notices.push(l),
      });
      const claim = summary.routes.find((r) => r.route === 'claim');
      expect(claim?.succeeded).toBe(3);
      expect(claim?.errors).toEqual({ RATE_LIMITED: 5 });
      expect(summary.errors).toBe(5);
      expect(notices).toHaveLength(1);
      expect(notices[0]).toMatch(/claim answered RATE_LIMITED: .*rateLimits\.claimPerIp/);
      expect(formatFleetTable(summary)).toMatch(/errors by code:\n {2}claim: RATE_LIMITED 5/);
      // only the three claimed devices uploaded
      expect([...clips.keys()].sort()).toEqual(serials.slice(0, 3));
    } finally {
      await limited.close();
    }
  });
});
