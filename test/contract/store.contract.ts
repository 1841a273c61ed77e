/**
 * The metadata store contract: what the API relies on from any Store (SQLite
 * now, PostgreSQL later). Each test makes its own accounts, so one database
 * can serve the whole suite.
 */
import { randomBytes } from 'node:crypto';
import { ulid } from 'ulid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClipRow, Store } from '../../cloud/store/types.js';
import { newClipId } from '../../shared/ids.js';

export type StoreFactory = () => Promise<{ store: Store; close(): Promise<void> }>;

const NOW = Date.parse('2026-06-01T12:00:00Z');
const hash = (): string => randomBytes(32).toString('hex');
const serial = (): string => `ST${randomBytes(6).toString('hex').toUpperCase()}`;

export function storeContract(name: string, factory: StoreFactory): void {
  describe(`store contract: ${name}`, () => {
    let store: Store;
    let close: () => Promise<void>;
    beforeAll(async () => {
      ({ store, close } = await factory());
    });
    afterAll(async () => {
      await close?.();
    });

    async function account(plan: string | null = null): Promise<string> {
      const id = ulid();
      expect(await store.createAccount({ id, email: `${id.toLowerCase()}@example.com`, passwordHash: 'h', plan, createdAt: NOW })).toBe(true);
      return id;
    }

    async function bound(accountId: string, s = serial()): Promise<string> {
      const codeHash = hash();
      await store.createBindCode({ codeHash, accountId, createdAt: NOW, expiresAt: NOW + 600_000 });
      const out = await store.claimDevice({
        codeHash,
        serial: s,
        model: 'M',
        tokenHash: hash(),
        mqttPasswordHash: hash(),
        nowMs: NOW,
        cameraLimit: () => null,
      });
      expect(out.status).toMatch(/bound/);
      return s;
    }

    function clip(accountId: string, s: string, startMs: number, over: Partial<ClipRow> = {}): ClipRow {
      const id = over.id ?? newClipId(startMs);
      return {
        id,
        accountId,
        serial: s,
        key: `accounts/${accountId}/devices/${s}/x/${id}.mp4`,
        kind: 'event',
        startMs,
        durationMs: 1000,
        size: 100,
        md5: 'AAAAAAAAAAAAAAAAAAAAAA==',
        sha256: '0'.repeat(64),
        uploadedAt: NOW,
        expiresAt: NOW + 86_400_000,
        ...over,
      };
    }

    it('keeps one account per email, found by id and by email', async () => {
      const id = await account();
      const row = await store.getAccountById(id);
      expect(row).toMatchObject({ id, plan: null, createdAt: NOW });
      expect(await store.getAccountByEmail(row!.email)).toEqual(row);
      expect(await store.createAccount({ ...row!, id: ulid() })).toBe(false);
      await store.setAccountPlan(id, 'basic');
      expect((await store.getAccountById(id))!.plan).toBe('basic');
      expect(await store.getAccountById(ulid())).toBeNull();
    });

    it('finds a session only until it expires, and not after it is deleted', async () => {
      const accountId = await account();
      const tokenHash = hash();
      await store.createSession({ tokenHash, accountId, createdAt: NOW, expiresAt: NOW + 1000 });
      expect(await store.getSession(tokenHash, NOW + 999)).toEqual({ tokenHash, accountId, createdAt: NOW, expiresAt: NOW + 1000 });
      expect(await store.getSession(tokenHash, NOW + 1000)).toBeNull();
      await store.deleteSession(tokenHash);
      expect(await store.getSession(tokenHash, NOW)).toBeNull();
    });

    it('a bind code is consumed once, and not after it expires', async () => {
      const accountId = await account();
      const [a, b] = [hash(), hash()];
      await store.createBindCode({ codeHash: a, accountId, createdAt: NOW, expiresAt: NOW + 10 });
      await store.createBindCode({ codeHash: b, accountId, createdAt: NOW, expiresAt: NOW + 10 });
      const results = await Promise.all([store.consumeBindCode(a, NOW), store.consumeBindCode(a, NOW)]);
      expect(results.sort()).toEqual([accountId, null].sort());
      expect(await store.consumeBindCode(b, NOW + 10)).toBeNull();
    });

    it('claims: bind, rebind with new credentials, refuse another account and the camera limit, keeping the code', async () => {
      const owner = await account('basic');
      const other = await account('basic');
      const s = await bound(owner);
      const first = await store.getDevice(s);
      expect(first).toMatchObject({ serial: s, model: 'M', accountId: owner, boundAt: NOW });

      const code = hash();
      await store.createBindCode({ codeHash: code, accountId: owner, createdAt: NOW, expiresAt: NOW + 600_000 });
      const rebind = await store.claimDevice({ codeHash: code, serial: s, model: 'M2', tokenHash: hash(), mqttPasswordHash: hash(), nowMs: NOW + 5, cameraLimit: () => 1 });
      expect(rebind).toEqual({ status: 'rebound', accountId: owner });
      const second = await store.getDevice(s);
      expect(second!.tokenHash).not.toBe(first!.tokenHash);
      expect(second!.model).toBe('M2');

      const otherCode = hash();
      await store.createBindCode({ codeHash: otherCode, accountId: other, createdAt: NOW, expiresAt: NOW + 600_000 });
      const input = { codeHash: otherCode, serial: s, model: 'M', tokenHash: hash(), mqttPasswordHash: hash(), nowMs: NOW, cameraLimit: () => 1 };
      expect(await store.claimDevice(input)).toEqual({ status: 'bound-elsewhere' });
      // the refused claim did not spend the code
      const limit = await store.claimDevice({ ...input, serial: serial(), cameraLimit: () => 0 });
      expect(limit).toEqual({ status: 'camera-limit' });
      expect((await store.claimDevice({ ...input, serial: serial() })).status).toBe('bound');
      expect((await store.claimDevice({ ...input, serial: serial() })).status).toBe('code-invalid');
    });

    it('unbinding removes the device and its pending uploads, only for its own account', async () => {
      const owner = await account();
      const s = await bound(owner);
      const clipId = newClipId(NOW);
      await store.upsertUpload({ clipId, serial: s, accountId: owner, key: 'k', size: 5, md5: 'm', sha256: 's', startMs: NOW, durationMs: 1, kind: 'event', createdAt: NOW, multipart: null });
      expect(await store.unbindDevice(s, await account())).toBe(false);
      expect(await store.listDevices(owner)).toHaveLength(1);
      expect(await store.unbindDevice(s, owner)).toBe(true);
      expect(await store.getDevice(s)).toBeNull();
      expect(await store.getUpload(clipId)).toBeNull();
      expect(await store.listDevices(owner)).toEqual([]);
    });

    it('pending uploads are replaced by clip id and summed per account', async () => {
      const owner = await account();
      const s = await bound(owner);
      const base = { serial: s, accountId: owner, key: 'k', md5: 'm', sha256: 's', startMs: NOW, durationMs: 1, kind: 'event' as const, createdAt: NOW, multipart: null };
      const [a, b] = [newClipId(NOW), newClipId(NOW)];
      await store.upsertUpload({ ...base, clipId: a, size: 10 });
      await store.upsertUpload({ ...base, clipId: a, size: 20 });
      await store.upsertUpload({ ...base, clipId: b, size: 5 });
      expect((await store.getUpload(a))!.size).toBe(20);
      expect(await store.sumPendingUploadBytes(owner)).toBe(25);
      expect(await store.sumPendingUploadBytes(owner, a)).toBe(5);
      await store.deleteUpload(a);
      expect(await store.getUpload(a)).toBeNull();
    });

    it('a pending multipart upload keeps its upload id and part MD5s, and a re-presign as a single PUT clears them', async () => {
      const owner = await account();
      const s = await bound(owner);
      const clipId = newClipId(NOW);
      const multipart = { uploadId: 'upload-1', partBytes: 5 * 1024 * 1024, partMd5s: ['1B2M2Y8AsgTpgAmY7PhCfg==', 'kAFQmDzST7DWlj99KOF/cg=='] };
      const row = { clipId, serial: s, accountId: owner, key: 'k', size: 6 * 1024 * 1024, md5: 'm', sha256: 's', startMs: NOW, durationMs: 1, kind: 'event' as const, createdAt: NOW, multipart };
      await store.upsertUpload(row);
      expect(await store.getUpload(clipId)).toEqual(row);
      await store.upsertUpload({ ...row, multipart: null });
      expect((await store.getUpload(clipId))?.multipart).toBeNull();
    });

    it('inserting a clip twice keeps the first; sums count only visible clips', async () => {
      const owner = await account();
      const s = await bound(owner);
      const row = clip(owner, s, NOW);
      expect(await store.insertClip(row)).toEqual(row);
      expect(await store.insertClip({ ...row, size: 999 })).toEqual(row);
      expect(await store.getClip(row.id)).toEqual(row);
      await store.insertClip(clip(owner, s, NOW, { size: 50, expiresAt: NOW + 10 }));
      expect(await store.sumClipBytes(owner, NOW)).toBe(150);
      expect(await store.sumClipBytes(owner, NOW + 10)).toBe(100);
    });

    it('lists clips start DESC, id DESC, with filters and keyset pages, and deletes by id', async () => {
      const owner = await account();
      const [s1, s2] = [await bound(owner), await bound(owner)];
      const rows = [
        clip(owner, s1, NOW - 3000),
        clip(owner, s1, NOW - 2000, { kind: 'continuous' }),
        clip(owner, s1, NOW - 2000),
        clip(owner, s2, NOW - 1000),
        clip(owner, s1, NOW - 500, { expiresAt: NOW }),
      ];
      for (const r of rows) await store.insertClip(r);
      await store.insertClip(clip(await account(), s1, NOW - 100)); // another account's

      const order = (list: ClipRow[]) => list.map((r) => r.id);
      const visible = rows.slice(0, 4).sort((a, b) => b.startMs - a.startMs || (a.id < b.id ? 1 : -1));
      expect(order(await store.listClips({ accountId: owner, visibleAt: NOW, limit: 10 }))).toEqual(order(visible));

      const pages: string[] = [];
      let after: { startMs: number; id: string } | undefined;
      for (;;) {
        const page = await store.listClips({ accountId: owner, visibleAt: NOW, limit: 1, after });
        if (page.length === 0) break;
        pages.push(page[0]!.id);
        after = { startMs: page[0]!.startMs, id: page[0]!.id };
      }
      expect(pages).toEqual(order(visible));

      expect(await store.listClips({ accountId: owner, serial: s2, limit: 10 })).toEqual([rows[3]]);
      expect(await store.listClips({ accountId: owner, kind: 'continuous', limit: 10 })).toEqual([rows[1]]);
      const ranged = await store.listClips({ accountId: owner, fromMs: NOW - 2000, toMs: NOW - 1000, limit: 10 });
      expect(ranged.map((r) => r.startMs)).toEqual([NOW - 2000, NOW - 2000]);

      expect(await store.deleteClips([rows[0]!.id, rows[0]!.id, newClipId()])).toBe(1);
      expect(await store.getClip(rows[0]!.id)).toBeNull();
      expect(await store.deleteClips([])).toBe(0);
    });

    it('shares: granted only for a device bound to the granting account, to an account that exists; a second grant changes the role and keeps createdAt', async () => {
      const owner = await account();
      const grantee = await account();
      const stranger = await account();
      const s = await bound(owner);

      const row = { serial: s, granteeAccountId: grantee, role: 'viewer' as const, grantedBy: owner, createdAt: NOW };
      expect(await store.putShare(row)).toEqual({ status: 'created', share: row });
      expect(await store.getShare(s, grantee)).toEqual(row);
      const changed = await store.putShare({ ...row, role: 'manager', createdAt: NOW + 50 });
      expect(changed).toEqual({ status: 'updated', share: { ...row, role: 'manager' } });
      expect(await store.getShare(s, grantee)).toEqual({ ...row, role: 'manager' });

      // not the device's owner; a serial not bound at all; a grantee that does not exist
      expect(await store.putShare({ ...row, granteeAccountId: stranger, grantedBy: grantee })).toEqual({ status: 'device-not-found' });
      expect(await store.putShare({ ...row, serial: serial() })).toEqual({ status: 'device-not-found' });
      expect(await store.putShare({ ...row, granteeAccountId: ulid() })).toEqual({ status: 'grantee-not-found' });
      expect(await store.getShare(s, stranger)).toBeNull();
      expect(await store.listDeviceShares(s)).toEqual([{ ...row, role: 'manager' }]);
    });

    it('shares: listed per device and per grantee in createdAt order; deleted one by one', async () => {
      const owner = await account();
      const [g1, g2] = [await account(), await account()];
      const [s1, s2] = [await bound(owner), await bound(owner)];
      const share = (s: string, g: string, createdAt: number, role: 'viewer' | 'manager' = 'viewer') => ({
        serial: s,
        granteeAccountId: g,
        role,
        grantedBy: owner,
        createdAt,
      });
      // inserted out of order, to see the ordering come from the store
      for (const r of [share(s1, g2, NOW + 2), share(s2, g1, NOW + 3, 'manager'), share(s1, g1, NOW + 1)]) {
        expect((await store.putShare(r)).status).toBe('created');
      }
      expect(await store.listDeviceShares(s1)).toEqual([share(s1, g1, NOW + 1), share(s1, g2, NOW + 2)]);
      const mine = await store.listSharedDevices(g1);
      expect(mine.map((m) => [m.device.serial, m.device.accountId, m.share])).toEqual([
        [s1, owner, share(s1, g1, NOW + 1)],
        [s2, owner, share(s2, g1, NOW + 3, 'manager')],
      ]);
      expect(mine[0]!.device).toEqual(await store.getDevice(s1));
      expect(await store.listSharedDevices(owner)).toEqual([]);

      expect(await store.deleteShare(s1, g1)).toBe(true);
      expect(await store.deleteShare(s1, g1)).toBe(false);
      expect(await store.getShare(s1, g1)).toBeNull();
      expect((await store.listSharedDevices(g1)).map((m) => m.device.serial)).toEqual([s2]);
      expect(await store.listDeviceShares(s1)).toEqual([share(s1, g2, NOW + 2)]);
    });

    it('shares end when the device is unbound and stay gone when another account binds it; a rebind to the same account keeps them', async () => {
      const owner = await account();
      const grantee = await account();
      const next = await account();
      const s = await bound(owner);
      const row = { serial: s, granteeAccountId: grantee, role: 'manager' as const, grantedBy: owner, createdAt: NOW };
      await store.putShare(row);

      await bound(owner, s); // rebind, same account: new credentials, same owner
      expect(await store.getShare(s, grantee)).toEqual(row);

      expect(await store.unbindDevice(s, owner)).toBe(true);
      expect(await store.getShare(s, grantee)).toBeNull();
      expect(await store.listSharedDevices(grantee)).toEqual([]);
      await bound(next, s);
      expect(await store.getShare(s, grantee)).toBeNull();
      expect(await store.listDeviceShares(s)).toEqual([]);
      expect(await store.listSharedDevices(grantee)).toEqual([]);
      // the new owner may share it again, under its own name
      expect((await store.putShare({ ...row, grantedBy: next, role: 'viewer' })).status).toBe('created');
      expect(await store.getShare(s, grantee)).toEqual({ ...row, grantedBy: next, role: 'viewer' });
    });

    // accounts: registration, verification, passwords, mailed codes, plans, rate limits (issue 5)

    const code = (emailHash: string, purpose: 'verify' | 'reset', codeHash: string, createdAt = NOW) => ({
      emailHash,
      purpose,
      codeHash,
      createdAt,
      expiresAt: createdAt + 600_000,
    });

    it('registerAccount: creates an unverified account, replaces the password of an unverified one, leaves a verified one; the code is stored each time', async () => {
      const id = ulid();
      const email = `${id.toLowerCase()}@example.com`;
      const eh = hash();
      const first = { id, email, passwordHash: 'h1', plan: null, createdAt: NOW };
      expect(await store.registerAccount(first, code(eh, 'verify', 'c1'))).toEqual({ status: 'created', accountId: id });
      expect(await store.getAccountById(id)).toEqual({ ...first, emailVerifiedAt: null, planLapsedAt: null });

      const again = { ...first, id: ulid(), passwordHash: 'h2', createdAt: NOW + 5 };
      expect(await store.registerAccount(again, code(eh, 'verify', 'c2'))).toEqual({ status: 'pending', accountId: id });
      expect(await store.getAccountById(id)).toMatchObject({ id, passwordHash: 'h2', createdAt: NOW, emailVerifiedAt: null });
      expect(await store.getAccountById(again.id)).toBeNull();
      // the newer code replaced the older one
      expect(await store.useEmailCode(eh, 'verify', 'c1', NOW, 5)).toBe(false);
      expect(await store.useEmailCode(eh, 'verify', 'c2', NOW, 5)).toBe(true);

      expect(await store.markEmailVerified(id, NOW + 10)).toBe(true);
      expect(await store.markEmailVerified(id, NOW + 20)).toBe(false);
      expect((await store.getAccountById(id))!.emailVerifiedAt).toBe(NOW + 10);
      expect(await store.markEmailVerified(ulid(), NOW)).toBe(false);

      expect(await store.registerAccount({ ...again, passwordHash: 'h3' }, code(eh, 'verify', 'c3'))).toEqual({ status: 'verified', accountId: id });
      expect(await store.getAccountById(id)).toMatchObject({ passwordHash: 'h2', emailVerifiedAt: NOW + 10 });
      expect(await store.useEmailCode(eh, 'verify', 'c3', NOW, 5)).toBe(true);
    });

    it('changePassword sets the hash and ends the other sessions of that account only (or every one)', async () => {
      const a = await account();
      const b = await account();
      const [keep, other1, other2, theirs] = [hash(), hash(), hash(), hash()];
      for (const [tokenHash, accountId] of [[keep, a], [other1, a], [other2, a], [theirs, b]] as const) {
        await store.createSession({ tokenHash, accountId, createdAt: NOW, expiresAt: NOW + 1000 });
      }
      expect(await store.changePassword(a, 'new-hash', keep)).toBe(2);
      expect((await store.getAccountById(a))!.passwordHash).toBe('new-hash');
      expect(await store.getSession(keep, NOW)).not.toBeNull();
      expect(await store.getSession(other1, NOW)).toBeNull();
      expect(await store.getSession(other2, NOW)).toBeNull();
      expect(await store.getSession(theirs, NOW)).not.toBeNull();
      expect(await store.changePassword(a, 'newer-hash', null)).toBe(1);
      expect(await store.getSession(keep, NOW)).toBeNull();
      expect(await store.getSession(theirs, NOW)).not.toBeNull();
      expect(await store.changePassword(ulid(), 'x', null)).toBe(0);
    });

    it('a mailed code: single use, a few wrong tries, expiry, one per address and purpose, and a new one resets the tries', async () => {
      const eh = hash();
      await store.putEmailCode(code(eh, 'reset', 'right'));
      await store.putEmailCode(code(eh, 'verify', 'other'));
      expect(await store.useEmailCode(eh, 'reset', 'other', NOW, 3)).toBe(false);
      expect(await store.useEmailCode(hash(), 'reset', 'right', NOW, 3)).toBe(false);
      expect(await store.useEmailCode(eh, 'reset', 'right', NOW, 3)).toBe(true);
      expect(await store.useEmailCode(eh, 'reset', 'right', NOW, 3)).toBe(false);
      expect(await store.useEmailCode(eh, 'verify', 'other', NOW, 3)).toBe(true);

      // three wrong tries with maxAttempts 3: dead, even for the right code
      await store.putEmailCode(code(eh, 'reset', 'right'));
      for (let i = 0; i < 3; i++) expect(await store.useEmailCode(eh, 'reset', 'wrong', NOW, 3)).toBe(false);
      expect(await store.useEmailCode(eh, 'reset', 'right', NOW, 3)).toBe(false);
      // a new code: attempts back to 0
      await store.putEmailCode(code(eh, 'reset', 'fresh', NOW + 1));
      for (let i = 0; i < 2; i++) expect(await store.useEmailCode(eh, 'reset', 'wrong', NOW + 1, 3)).toBe(false);
      expect(await store.useEmailCode(eh, 'reset', 'fresh', NOW + 1, 3)).toBe(true);

      // expiry: live while expiresAt > now
      await store.putEmailCode(code(eh, 'reset', 'late'));
      expect(await store.useEmailCode(eh, 'reset', 'late', NOW + 600_000, 3)).toBe(false);
      await store.putEmailCode(code(eh, 'reset', 'late'));
      expect(await store.useEmailCode(eh, 'reset', 'late', NOW + 599_999, 3)).toBe(true);
    });

    it('of concurrent uses of one code exactly one succeeds', async () => {
      const eh = hash();
      await store.putEmailCode(code(eh, 'verify', 'once'));
      const results = await Promise.all(Array.from({ length: 8 }, () => store.useEmailCode(eh, 'verify', 'once', NOW, 5)));
      expect(results.filter(Boolean)).toHaveLength(1);
    });

    it('choosePlan recomputes the expiry of unexpired clips from the earlier of start and upload; expired ones stay expired', async () => {
      const a = await account('premium');
      const other = await account('premium');
      const s = await bound(a);
      const so = await bound(other);
      const now = NOW + 10 * 86_400_000;
      const early = clip(a, s, NOW - 3_600_000, { uploadedAt: NOW, expiresAt: now + 50 * 86_400_000 }); // anchor: start
      const ahead = clip(a, s, NOW + 60_000, { uploadedAt: NOW, expiresAt: now + 50 * 86_400_000 }); // anchor: upload
      const gone = clip(a, s, NOW - 7_200_000, { uploadedAt: NOW, expiresAt: now }); // expired at `now`
      const theirs = clip(other, so, NOW, { expiresAt: now + 50 * 86_400_000 });
      for (const c of [early, ahead, gone, theirs]) await store.insertClip(c);
      await store.lapsePlan(a, NOW, NOW + 100 * 86_400_000);

      const week = 7 * 86_400_000;
      expect(await store.choosePlan(a, 'basic', week, now)).toBe(2);
      expect(await store.getAccountById(a)).toMatchObject({ plan: 'basic', planLapsedAt: null });
      expect((await store.getClip(early.id))!.expiresAt).toBe(NOW - 3_600_000 + week);
      expect((await store.getClip(ahead.id))!.expiresAt).toBe(NOW + week);
      expect((await store.getClip(gone.id))!.expiresAt).toBe(now);
      expect((await store.getClip(theirs.id))!.expiresAt).toBe(theirs.expiresAt);
      // the week is over at `now`: a longer plan does not bring them back
      expect(await store.choosePlan(a, 'premium', 60 * 86_400_000, now)).toBe(0);
      expect((await store.getClip(early.id))!.expiresAt).toBe(NOW - 3_600_000 + week);
    });

    it('lapsePlan ends the plan once, keeps the first lapse time, and caps unexpired clips at the end of the grace', async () => {
      const a = await account('standard');
      const s = await bound(a);
      const long = clip(a, s, NOW, { expiresAt: NOW + 30 * 86_400_000 });
      const short = clip(a, s, NOW + 1000, { expiresAt: NOW + 86_400_000 });
      const past = clip(a, s, NOW + 2000, { expiresAt: NOW - 1 });
      for (const c of [long, short, past]) await store.insertClip(c);
      const graceEnd = NOW + 5 * 86_400_000;
      expect(await store.lapsePlan(a, NOW, graceEnd)).toBe(2);
      expect(await store.getAccountById(a)).toMatchObject({ plan: null, planLapsedAt: NOW });
      expect((await store.getClip(long.id))!.expiresAt).toBe(graceEnd);
      expect((await store.getClip(short.id))!.expiresAt).toBe(NOW + 86_400_000);
      expect((await store.getClip(past.id))!.expiresAt).toBe(NOW - 1);
      // no plan: nothing changes
      expect(await store.lapsePlan(a, NOW + 100, NOW + 100)).toBe(0);
      expect(await store.getAccountById(a)).toMatchObject({ plan: null, planLapsedAt: NOW });
      expect((await store.getClip(long.id))!.expiresAt).toBe(graceEnd);
      expect(await store.lapsePlan(ulid(), NOW, NOW)).toBe(0);
    });

    it('hitRateLimit counts per key within a fixed window, starts again in the next, and counts concurrent hits apart', async () => {
      const key = `test:${hash().slice(0, 40)}`;
      const other = `test:${hash().slice(0, 40)}`;
      const w = 60_000;
      const start = Math.floor(NOW / w) * w;
      expect(await store.hitRateLimit(key, w, start)).toBe(1);
      expect(await store.hitRateLimit(key, w, start + 1)).toBe(2);
      expect(await store.hitRateLimit(other, w, start + 2)).toBe(1);
      expect(await store.hitRateLimit(key, w, start + w - 1)).toBe(3);
      expect(await store.hitRateLimit(key, w, start + w)).toBe(1);
      // a late hit from the window before counts in the stored (newer) one
      expect(await store.hitRateLimit(key, w, start + w - 5)).toBe(2);
      const third = `test:${hash().slice(0, 40)}`;
      const counts = await Promise.all(Array.from({ length: 10 }, () => store.hitRateLimit(third, w, start + w + 3)));
      expect([...counts].sort((x, y) => x - y)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      // far later: every window has ended, each key starts at 1
      expect(await store.hitRateLimit(third, w, start + 100 * w)).toBe(1);
      expect(await store.hitRateLimit(key, w, start + 100 * w)).toBe(1);
    });
  });
}
