/**
 * The metadata store contract: what the API relies on from any Store (SQLite
 * now, PostgreSQL later). Each test makes its own accounts, so one database
 * can serve the whole suite.
 */
import { randomBytes } from 'node:crypto';
import { ulid } from 'ulid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClipRow, NotificationRow, Store } from '../../cloud/store/types.js';
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
      expect(await store.getSession(tokenHash, NOW + 999)).toEqual({ tokenHash, accountId, createdAt: NOW, expiresAt: NOW + 1000, accountCancelledAt: null });
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

    it('deleteExpiredSessions forgets sessions at or past their expiry, in batches, and no live one', async () => {
      const owner = await account();
      const hashes = [hash(), hash(), hash()];
      await store.createSession({ tokenHash: hashes[0]!, accountId: owner, createdAt: NOW, expiresAt: NOW + 1000 });
      await store.createSession({ tokenHash: hashes[1]!, accountId: owner, createdAt: NOW, expiresAt: NOW + 2000 });
      await store.createSession({ tokenHash: hashes[2]!, accountId: owner, createdAt: NOW, expiresAt: NOW + 9_000_000_000_000 });
      // other tests' sessions may share the database: count only ours
      const mine = async (): Promise<number> => (await Promise.all(hashes.map((h) => store.getSession(h, 0)))).filter(Boolean).length;
      for (let n = 1; n > 0; ) n = await store.deleteExpiredSessions(NOW + 2000, 1);
      expect(await mine()).toBe(1);
      expect(await store.getSession(hashes[2]!, NOW)).not.toBeNull();
    });

    it('completing an upload stores the clip and ends its pending upload in one step, idempotently', async () => {
      const owner = await account();
      const s = await bound(owner);
      const base = { serial: s, accountId: owner, key: 'k', md5: 'm', sha256: 's', startMs: NOW, durationMs: 1, kind: 'event' as const, createdAt: NOW, multipart: null };
      const [a, b] = [newClipId(NOW), newClipId(NOW + 1)];
      await store.upsertUpload({ ...base, clipId: a, size: 10 });
      await store.upsertUpload({ ...base, clipId: b, size: 5 });
      const row = clip(owner, s, NOW, { id: a, size: 10 });
      expect(await store.completeUpload(row)).toEqual(row);
      expect(await store.getUpload(a)).toBeNull();
      expect(await store.getClip(a)).toEqual(row);
      // the pending bytes lost the completed upload, kept the other
      expect(await store.sumPendingUploadBytes(owner)).toBe(5);
      // again (a retried complete): the first clip stands, nothing else moves
      expect(await store.completeUpload({ ...row, uploadedAt: NOW + 5000 })).toEqual(row);
      expect(await store.sumPendingUploadBytes(owner)).toBe(5);
      expect((await store.getUpload(b))!.size).toBe(5);
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
      expect(await store.getAccountById(id)).toEqual({ ...first, emailVerifiedAt: null, planLapsedAt: null, cancelledAt: null });

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

    // retention, the orphan sweep and receipts (issue 6). These clips expire
    // around T, decades before the other tests' (NOW), so a claim at T never
    // takes another test's clip out of this shared database.

    const T = 1_000_000_000;
    const byExpiry = (rows: { id: string; expiresAt: number }[]): string[] => rows.map((r) => r.id);

    it('claimExpiredClips leases expired clips oldest expiry first, none twice while the lease holds, and again once it lapses', async () => {
      const a = await account();
      const s = await bound(a);
      const live = clip(a, s, T - 5000, { expiresAt: T + 1_000_000 });
      const due = [3, 1, 2, 0].map((k) => clip(a, s, T - 10_000 + k, { expiresAt: T - 100 + k * 10 }));
      for (const c of [live, ...due]) await store.insertClip(c);
      const oldestFirst = [...due].sort((x, y) => x.expiresAt - y.expiresAt);

      const first = await store.claimExpiredClips('node-a', T, T + 60_000, 3);
      expect(first).toEqual(oldestFirst.slice(0, 3).map((c) => ({ id: c.id, key: c.key, expiresAt: c.expiresAt })));
      const second = await store.claimExpiredClips('node-b', T, T + 60_000, 10);
      expect(byExpiry(second)).toEqual([oldestFirst[3]!.id]);
      expect(await store.claimExpiredClips('node-b', T + 59_999, T + 120_000, 10)).toEqual([]);
      // a lease lapses: whoever asks next takes the clips again; the unexpired clip is never taken
      const again = await store.claimExpiredClips('node-b', T + 60_000, T + 120_000, 10);
      expect(byExpiry(again)).toEqual(oldestFirst.map((c) => c.id));
      expect(await store.getClip(live.id)).toEqual(live);
      // a lease changes nothing a reader sees, and the rows go with deleteClips
      expect(await store.getClip(due[0]!.id)).toEqual(due[0]);
      expect(await store.deleteClips(due.map((c) => c.id))).toBe(4);
      expect(await store.claimExpiredClips('node-a', T + 200_000, T + 300_000, 10)).toEqual([]);
      await store.deleteClips([live.id]);
    });

    it('concurrent claims split the expired clips between them: each clip to exactly one caller', async () => {
      const a = await account();
      const s = await bound(a);
      const due = Array.from({ length: 24 }, (_, k) => clip(a, s, T - 50_000 + k, { expiresAt: T - 1000 + k }));
      for (const c of due) await store.insertClip(c);
      const claims = await Promise.all(['n1', 'n2', 'n3', 'n4'].map((owner) => store.claimExpiredClips(owner, T, T + 60_000, 5)));
      const ids = claims.flat().map((c) => c.id);
      expect(ids).toHaveLength(new Set(ids).size);
      expect(ids).toHaveLength(20);
      const rest = await store.claimExpiredClips('n5', T, T + 60_000, 100);
      expect(new Set([...ids, ...rest.map((c) => c.id)])).toEqual(new Set(due.map((c) => c.id)));
      await store.deleteClips(due.map((c) => c.id));
    });

    it('releaseClipLeases hands the owner’s clips back for a later pass, not this one, and leaves other owners’ leases alone', async () => {
      const a = await account();
      const s = await bound(a);
      const [x, y] = [clip(a, s, T - 9000, { expiresAt: T - 20 }), clip(a, s, T - 8000, { expiresAt: T - 10 })];
      await store.insertClip(x);
      await store.insertClip(y);
      expect(byExpiry(await store.claimExpiredClips('mine', T, T + 60_000, 1))).toEqual([x.id]);
      expect(byExpiry(await store.claimExpiredClips('theirs', T, T + 60_000, 1))).toEqual([y.id]);
      await store.releaseClipLeases('mine', [x.id, y.id], T + 1);
      expect(await store.claimExpiredClips('other', T, T + 60_000, 10)).toEqual([]);
      expect(byExpiry(await store.claimExpiredClips('other', T + 1, T + 60_000, 10))).toEqual([x.id]);
      await store.releaseClipLeases('mine', [], T + 1);
      await store.deleteClips([x.id, y.id]);
    });

    it('deleteStaleUploads removes pending uploads created before a time, a batch at a time, and their pending bytes', async () => {
      const a = await account();
      const s = await bound(a);
      const base = { serial: s, accountId: a, md5: 'm', sha256: 's', startMs: T, durationMs: 1, kind: 'event' as const, multipart: null };
      const ids = [newClipId(T), newClipId(T), newClipId(T)];
      await store.upsertUpload({ ...base, clipId: ids[0]!, key: 'k0', size: 10, createdAt: T - 3 });
      await store.upsertUpload({ ...base, clipId: ids[1]!, key: 'k1', size: 20, createdAt: T - 2 });
      await store.upsertUpload({ ...base, clipId: ids[2]!, key: 'k2', size: 40, createdAt: T });
      expect(await store.deleteStaleUploads(T, 1)).toBe(1);
      expect(await store.deleteStaleUploads(T, 10)).toBe(1);
      expect(await store.deleteStaleUploads(T, 10)).toBe(0);
      expect(await store.getUpload(ids[0]!)).toBeNull();
      expect(await store.getUpload(ids[1]!)).toBeNull();
      expect((await store.getUpload(ids[2]!))?.size).toBe(40);
      expect(await store.sumPendingUploadBytes(a)).toBe(40);
    });

    it('objectKeysInUse names the keys of clip rows and pending uploads with the given ids, and nothing else', async () => {
      const a = await account();
      const s = await bound(a);
      const c = clip(a, s, T);
      await store.insertClip(c);
      const pendingId = newClipId(T);
      const pendingKey = `accounts/${a}/devices/${s}/x/${pendingId}.mp4`;
      await store.upsertUpload({ clipId: pendingId, serial: s, accountId: a, key: pendingKey, size: 1, md5: 'm', sha256: 's', startMs: T, durationMs: 1, kind: 'event', createdAt: T, multipart: null });
      expect((await store.objectKeysInUse([c.id, pendingId, newClipId(T), c.id])).sort()).toEqual([c.key, pendingKey].sort());
      expect(await store.objectKeysInUse([])).toEqual([]);
      expect(await store.objectKeysInUse([newClipId(T)])).toEqual([]);
      await store.deleteClips([c.id]);
    });

    it('clipSummary gives the oldest visible clip start and the next expiry of one account, null when it has none', async () => {
      const a = await account();
      const other = await account();
      const s = await bound(a);
      expect(await store.clipSummary(a, NOW)).toEqual({ oldestStartMs: null, nextExpiresAt: null });
      const gone = clip(a, s, NOW - 9 * 86_400_000, { expiresAt: NOW });
      const old = clip(a, s, NOW - 5 * 86_400_000, { expiresAt: NOW + 3 * 86_400_000 });
      const soon = clip(a, s, NOW - 86_400_000, { expiresAt: NOW + 1000 });
      const theirs = clip(other, await bound(other), NOW - 20 * 86_400_000, { expiresAt: NOW + 1 });
      for (const c of [gone, old, soon, theirs]) await store.insertClip(c);
      expect(await store.clipSummary(a, NOW)).toEqual({ oldestStartMs: old.startMs, nextExpiresAt: NOW + 1000 });
      expect(await store.clipSummary(a, NOW + 1000)).toEqual({ oldestStartMs: old.startMs, nextExpiresAt: old.expiresAt });
      expect(await store.clipSummary(a, old.expiresAt)).toEqual({ oldestStartMs: null, nextExpiresAt: null });
    });

    it('recordJobRun keeps receipts of counts only, newest first, prunes old ones, and refuses anything that is not a count', async () => {
      const job = `test-${randomBytes(4).toString('hex')}`;
      const run = (startedAt: number, counts: Record<string, number>, ok = true) => ({ job, startedAt, durationMs: 12, ok, counts });
      await store.recordJobRun(run(T, { clipsDeleted: 3, keysFailed: 0 }), 0);
      await store.recordJobRun(run(T + 60_000, { clipsDeleted: 0 }, false), 0);
      await store.recordJobRun(run(T + 120_000, {}), 0);
      expect(await store.listJobRuns(job, 10)).toEqual([run(T + 120_000, {}), run(T + 60_000, { clipsDeleted: 0 }, false), run(T, { clipsDeleted: 3, keysFailed: 0 })]);
      expect(await store.listJobRuns(job, 1)).toEqual([run(T + 120_000, {})]);
      expect(await store.listJobRuns(`${job}-none`, 10)).toEqual([]);
      // receipts that started before the prune time go in the same step
      await store.recordJobRun(run(T + 180_000, { orphansDeleted: 1 }), T + 60_000);
      expect((await store.listJobRuns(job, 10)).map((r) => r.startedAt)).toEqual([T + 180_000, T + 120_000, T + 60_000]);
      for (const bad of [
        { ...run(T, {}), job: 'Bad Name' },
        run(T, { 'user@example.com': 1 }),
        run(T, { clipsDeleted: -1 }),
        run(T, { clipsDeleted: 1.5 }),
        run(T, { accountId: Number.NaN }),
      ]) {
        await expect(store.recordJobRun(bad, 0)).rejects.toThrow(/job run/);
      }
      expect(await store.listJobRuns(job, 10)).toHaveLength(3);
    });

    // notifications and webhooks (issue 7)

    it('notificationRecipients: the owner first, then the grantees of shares in force; nobody for a serial not bound', async () => {
      const [owner, g1, g2] = [await account(), await account(), await account()];
      const s = await bound(owner);
      expect(await store.notificationRecipients(s)).toEqual([owner]);
      await store.putShare({ serial: s, granteeAccountId: g2, role: 'viewer', grantedBy: owner, createdAt: NOW + 2 });
      await store.putShare({ serial: s, granteeAccountId: g1, role: 'manager', grantedBy: owner, createdAt: NOW + 1 });
      expect(await store.notificationRecipients(s)).toEqual([owner, g1, g2]);
      expect(await store.deleteShare(s, g1)).toBe(true);
      expect(await store.notificationRecipients(s)).toEqual([owner, g2]);
      expect(await store.unbindDevice(s, owner)).toBe(true);
      expect(await store.notificationRecipients(s)).toEqual([]);
      expect(await store.notificationRecipients(serial())).toEqual([]);
    });

    it('putNotifications inserts each (account, id) once, of concurrent calls exactly once, and nothing for an account that does not exist', async () => {
      const [a, b] = [await account(), await account()];
      const s = serial();
      const id = randomBytes(16).toString('hex');
      const row = (accountId: string, over: Partial<NotificationRow> = {}): NotificationRow => ({
        id,
        accountId,
        serial: s,
        type: 'motion',
        atMs: NOW - 1000,
        clipId: null,
        receivedAt: NOW,
        ...over,
      });
      expect(await store.putNotifications([])).toEqual([]);
      expect(await store.putNotifications([row(a), row(b, { clipId: newClipId(NOW) })])).toEqual([true, true]);
      // the same alert again (another node, a redelivery): the first row stays as it was
      expect(await store.putNotifications([row(a, { receivedAt: NOW + 5, clipId: newClipId(NOW) }), row(b)])).toEqual([false, false]);
      expect(await store.getNotification(a, id)).toEqual(row(a));
      expect((await store.getNotification(b, id))?.clipId).toMatch(/^[0-9A-Z]{26}$/);
      expect(await store.getNotification(a, randomBytes(16).toString('hex'))).toBeNull();
      expect(await store.putNotifications([row(ulid())])).toEqual([false]);

      const raced = randomBytes(16).toString('hex');
      const results = await Promise.all(Array.from({ length: 6 }, () => store.putNotifications([row(a, { id: raced }), row(b, { id: raced })])));
      expect(results.map((r) => r[0]).filter(Boolean)).toHaveLength(1);
      expect(results.map((r) => r[1]).filter(Boolean)).toHaveLength(1);
    });

    it("lists an account's notifications after a cursor (oldest first) and since a time (newest first), and erases old rows in batches", async () => {
      const [a, other] = [await account(), await account()];
      const s = serial();
      // received at 1970 + a few seconds: no other test's rows are this old, so the erase below counts only these
      const base = 1_000_000;
      const ids = Array.from({ length: 5 }, () => randomBytes(16).toString('hex')).sort();
      const at = [base, base + 1000, base + 1000, base + 2000, base + 3000];
      const rows: NotificationRow[] = ids.map((id, i) => ({ id, accountId: a, serial: s, type: 'motion', atMs: base, clipId: null, receivedAt: at[i] as number }));
      // inserted out of order, with another account's row in between
      expect(await store.putNotifications([rows[3]!, rows[0]!, { ...rows[1]!, accountId: other }, rows[2]!, rows[1]!, rows[4]!])).toEqual([
        true, true, true, true, true, true,
      ]);
      expect(await store.listNotificationsAfter(a, { receivedAt: rows[0]!.receivedAt, id: rows[0]!.id }, 10)).toEqual(rows.slice(1));
      expect(await store.listNotificationsAfter(a, { receivedAt: rows[1]!.receivedAt, id: rows[1]!.id }, 2)).toEqual(rows.slice(2, 4));
      expect(await store.listNotificationsAfter(a, { receivedAt: rows[4]!.receivedAt, id: rows[4]!.id }, 10)).toEqual([]);
      expect(await store.listRecentNotifications(a, base + 1000, 10)).toEqual(rows.slice(1).reverse());
      expect(await store.listRecentNotifications(a, base, 2)).toEqual([rows[4], rows[3]]);
      expect(await store.listRecentNotifications(other, base, 10)).toEqual([{ ...rows[1], accountId: other }]);

      expect(await store.deleteNotificationsBefore(base + 1500, 2)).toBe(2);
      expect(await store.deleteNotificationsBefore(base + 1500, 2)).toBe(2);
      expect(await store.deleteNotificationsBefore(base + 1500, 2)).toBe(0);
      expect(await store.listRecentNotifications(a, 0, 10)).toEqual([rows[4], rows[3]]);
      expect(await store.listRecentNotifications(other, 0, 10)).toEqual([]);
    });

    it('keeps one webhook per account: a new one replaces it, delete removes it, and an account that does not exist gets none', async () => {
      const [a, b] = [await account(), await account()];
      const hook = { accountId: a, url: 'https://hooks.example.com/a', secret: 'a-secret-of-twenty-chars', createdAt: NOW };
      expect(await store.getWebhooks([a, b])).toEqual([]);
      expect(await store.putWebhook(hook)).toBe(true);
      const replaced = { ...hook, url: 'https://hooks.example.com/a2', secret: 'another-secret-0123456', createdAt: NOW + 1 };
      expect(await store.putWebhook(replaced)).toBe(true);
      const hookB = { ...hook, accountId: b, url: 'https://hooks.example.com/b' };
      expect(await store.putWebhook(hookB)).toBe(true);
      const got = await store.getWebhooks([a, b, a, ulid()]);
      expect(got.sort((x, y) => x.url.localeCompare(y.url))).toEqual([replaced, hookB]);
      expect(await store.getWebhooks([])).toEqual([]);
      expect(await store.putWebhook({ ...hook, accountId: ulid() })).toBe(false);
      expect(await store.deleteWebhook(a)).toBe(true);
      expect(await store.deleteWebhook(a)).toBe(false);
      expect(await store.getWebhooks([a, b])).toEqual([hookB]);
    });

    // account rights (issue 6): consents, experience events, the security log, cancellation

    /** a tombstone digest for these tests: anything that is not the token hash itself */
    const tombs = { digest: (h: string): string => `tomb:${[...h].reverse().join('')}`, deviceUntil: NOW + 90 * 86_400_000 };

    it('consents: none until set; a change keeps the time of the last real change; withdrawing the experience program deletes its events at once', async () => {
      const a = await account();
      expect(await store.getConsents(a)).toEqual([]);
      expect(await store.recordExperienceEvent(a, 'sign-in', NOW)).toBe(false);
      expect(await store.setConsents(a, [{ purpose: 'experience', granted: true }, { purpose: 'marketing', granted: false }], NOW)).toEqual([
        { purpose: 'experience', granted: true, updatedAt: NOW },
        { purpose: 'marketing', granted: false, updatedAt: NOW },
      ]);
      expect(await store.recordExperienceEvent(a, 'sign-in', NOW + 1)).toBe(true);
      expect(await store.recordExperienceEvent(a, 'clip-viewed', NOW + 2)).toBe(true);
      expect(await store.listExperienceEvents(a)).toEqual([
        { accountId: a, event: 'sign-in', at: NOW + 1 },
        { accountId: a, event: 'clip-viewed', at: NOW + 2 },
      ]);
      // the same value again: its time stays; another value: a new time
      expect(await store.setConsents(a, [{ purpose: 'experience', granted: true }, { purpose: 'marketing', granted: true }], NOW + 5)).toEqual([
        { purpose: 'experience', granted: true, updatedAt: NOW },
        { purpose: 'marketing', granted: true, updatedAt: NOW + 5 },
      ]);
      expect(await store.setConsents(a, [{ purpose: 'experience', granted: false }], NOW + 6)).toEqual([
        { purpose: 'experience', granted: false, updatedAt: NOW + 6 },
        { purpose: 'marketing', granted: true, updatedAt: NOW + 5 },
      ]);
      expect(await store.listExperienceEvents(a)).toEqual([]);
      expect(await store.recordExperienceEvent(a, 'sign-in', NOW + 7)).toBe(false);
      expect(await store.listExperienceEvents(a)).toEqual([]);
      expect(await store.getConsents(a)).toEqual([
        { purpose: 'experience', granted: false, updatedAt: NOW + 6 },
        { purpose: 'marketing', granted: true, updatedAt: NOW + 5 },
      ]);
      // another account's consent is its own
      const b = await account();
      expect(await store.getConsents(b)).toEqual([]);
      expect(await store.setConsents(ulid(), [{ purpose: 'marketing', granted: true }], NOW)).toEqual([]);
    });

    it('experience events recorded while a withdrawal races them are all gone once the withdrawal returns', async () => {
      const a = await account();
      await store.setConsents(a, [{ purpose: 'experience', granted: true }], NOW);
      const inserts = Array.from({ length: 20 }, (_, i) => store.recordExperienceEvent(a, 'clip-viewed', NOW + i));
      const withdrawal = store.setConsents(a, [{ purpose: 'experience', granted: false }], NOW + 100);
      await Promise.all([...inserts, withdrawal]);
      expect(await store.listExperienceEvents(a)).toEqual([]);
    });

    it('security log: entries per account oldest first, entries without an account, and an erase of old entries a batch at a time', async () => {
      // times decades before every other test's, so the erase below takes only these
      const t = 2_000_000;
      const [a, b] = [await account(), await account()];
      await store.appendSecurityLog({ accountId: a, event: 'sign-in', at: t + 2, ip: 'v1.x' });
      await store.appendSecurityLog({ accountId: a, event: 'device-bound', at: t + 1, ip: 'v1.y' });
      await store.appendSecurityLog({ accountId: null, event: 'sign-in-failed', at: t + 1, ip: 'v1.z' });
      await store.appendSecurityLog({ accountId: b, event: 'sign-in', at: t + 50, ip: 'v1.w' });
      await store.appendSecurityLog({ accountId: a, event: 'sign-in-failed', at: t + 2, ip: 'v1.v' });
      expect(await store.listSecurityLog(a)).toEqual([
        { accountId: a, event: 'device-bound', at: t + 1, ip: 'v1.y' },
        { accountId: a, event: 'sign-in', at: t + 2, ip: 'v1.x' },
        { accountId: a, event: 'sign-in-failed', at: t + 2, ip: 'v1.v' },
      ]);
      expect(await store.eraseSecurityLogBefore(t + 10, 2)).toBe(2);
      expect(await store.eraseSecurityLogBefore(t + 10, 2)).toBe(2);
      expect(await store.eraseSecurityLogBefore(t + 10, 2)).toBe(0);
      expect(await store.listSecurityLog(a)).toEqual([]);
      expect(await store.listSecurityLog(b)).toEqual([{ accountId: b, event: 'sign-in', at: t + 50, ip: 'v1.w' }]);
      expect(await store.eraseSecurityLogBefore(t + 51, 10)).toBe(1);
    });

    it('beginCancellation revokes everything at once, leaving tombstones that name neither the token nor the account', async () => {
      const [a, friend] = [await account('basic'), await account()];
      const [mine, theirs] = [await bound(a), await bound(friend)];
      const session = { tokenHash: hash(), accountId: a, createdAt: NOW, expiresAt: NOW + 3600_000 };
      await store.createSession(session);
      const friendSession = { tokenHash: hash(), accountId: friend, createdAt: NOW, expiresAt: NOW + 3600_000 };
      await store.createSession(friendSession);
      const device = (await store.getDevice(mine))!;
      const code = hash();
      await store.createBindCode({ codeHash: code, accountId: a, createdAt: NOW, expiresAt: NOW + 600_000 });
      await store.putShare({ serial: mine, granteeAccountId: friend, role: 'viewer', grantedBy: a, createdAt: NOW });
      await store.putShare({ serial: theirs, granteeAccountId: a, role: 'manager', grantedBy: friend, createdAt: NOW });
      await store.setConsents(a, [{ purpose: 'experience', granted: true }], NOW);
      await store.recordExperienceEvent(a, 'sign-in', NOW);
      await store.putWebhook({ accountId: a, url: 'https://hooks.example.com/x', secret: 'a-secret-of-twenty-chars', createdAt: NOW });
      const note = (accountId: string, s: string): NotificationRow => ({
        id: randomBytes(8).toString('hex'),
        accountId,
        serial: s,
        type: 'motion',
        atMs: NOW,
        clipId: null,
        receivedAt: NOW,
      });
      // A's own, the friend's copy of an alert of A's camera, and the friend's of its own camera
      const [own, aboutMine, friendOwn] = [note(a, mine), note(friend, mine), note(friend, theirs)];
      await store.putNotifications([own, aboutMine, friendOwn]);

      expect(await store.beginCancellation(a, NOW + 10, tombs)).toBe('started');
      expect((await store.getAccountById(a))!.cancelledAt).toBe(NOW + 10);
      expect(await store.getSession(session.tokenHash, NOW)).toBeNull();
      expect(await store.isCredentialCancelled(tombs.digest(session.tokenHash), NOW)).toBe(true);
      expect(await store.isCredentialCancelled(tombs.digest(device.tokenHash), NOW)).toBe(true);
      // a session tombstone lives as long as the session would have; a device's until deviceUntil
      expect(await store.isCredentialCancelled(tombs.digest(session.tokenHash), session.expiresAt)).toBe(false);
      expect(await store.isCredentialCancelled(tombs.digest(device.tokenHash), tombs.deviceUntil - 1)).toBe(true);
      expect(await store.isCredentialCancelled(session.tokenHash, NOW)).toBe(false);
      // the device row stays (for its unbind command) with credentials nobody can present
      expect(await store.getDevice(mine)).toMatchObject({ serial: mine, accountId: a, tokenHash: '', mqttPasswordHash: '' });
      expect(await store.consumeBindCode(code, NOW)).toBeNull();
      expect(await store.getShare(mine, friend)).toBeNull();
      expect(await store.getShare(theirs, a)).toBeNull();
      expect(await store.listSharedDevices(a)).toEqual([]);
      expect(await store.getConsents(a)).toEqual([]);
      expect(await store.listExperienceEvents(a)).toEqual([]);
      expect(await store.getWebhooks([a])).toEqual([]);
      expect(await store.getNotification(a, own.id)).toBeNull();
      expect(await store.getNotification(friend, aboutMine.id)).toBeNull();
      expect(await store.getNotification(friend, friendOwn.id)).toEqual(friendOwn);
      // the friend keeps everything of its own
      expect(await store.getSession(friendSession.tokenHash, NOW)).toMatchObject({ accountId: friend, accountCancelledAt: null });
      expect((await store.getDevice(theirs))!.tokenHash).not.toBe('');
      // a session that slipped in afterwards says whose it is: a cancelled account's
      const late = { tokenHash: hash(), accountId: a, createdAt: NOW + 20, expiresAt: NOW + 3600_000 };
      await store.createSession(late);
      expect(await store.getSession(late.tokenHash, NOW + 20)).toMatchObject({ accountId: a, accountCancelledAt: NOW + 10 });
      // no new share for a cancelled grantee
      expect(await store.putShare({ serial: theirs, granteeAccountId: a, role: 'viewer', grantedBy: friend, createdAt: NOW })).toEqual({
        status: 'grantee-not-found',
      });
      expect(await store.beginCancellation(a, NOW + 30, tombs)).toBe('already-cancelled');
      expect((await store.getAccountById(a))!.cancelledAt).toBe(NOW + 10);
      expect(await store.beginCancellation(ulid(), NOW, tombs)).toBe('not-found');
    });

    it('cancellation leases: one runner at a time, renewed by its owner, free again when released or lapsed', async () => {
      const [a, live] = [await account(), await account()];
      expect(await store.leaseCancellation(a, 'r1', NOW, NOW + 60_000)).toBe(false);
      await store.beginCancellation(a, NOW, tombs);
      expect(await store.listCancellations(NOW, 10_000)).toContain(a);
      expect(await store.listCancellations(NOW, 10_000)).not.toContain(live);
      expect(await store.leaseCancellation(a, 'r1', NOW, NOW + 60_000)).toBe(true);
      expect(await store.listCancellations(NOW + 1, 10_000)).not.toContain(a);
      expect(await store.leaseCancellation(a, 'r2', NOW + 1, NOW + 60_001)).toBe(false);
      expect(await store.leaseCancellation(a, 'r1', NOW + 2, NOW + 60_002)).toBe(true);
      // lapsed: anyone takes it
      expect(await store.listCancellations(NOW + 60_002, 10_000)).toContain(a);
      expect(await store.leaseCancellation(a, 'r2', NOW + 60_002, NOW + 120_000)).toBe(true);
      expect(await store.leaseCancellation(a, 'r1', NOW + 60_003, NOW + 120_000)).toBe(false);
      // released (until = now): the next runner need not wait
      expect(await store.leaseCancellation(a, 'r2', NOW + 60_004, NOW + 60_004)).toBe(true);
      expect(await store.leaseCancellation(a, 'r3', NOW + 60_004, NOW + 120_000)).toBe(true);
      expect(await store.leaseCancellation(live, 'r1', NOW, NOW + 60_000)).toBe(false);
    });

    it('purgeAccountRows deletes every row of a cancelled account but its clips and its row, and erases its personal data; a live account is left alone', async () => {
      const [a, other] = [await account('basic'), await account()];
      const email = (await store.getAccountById(a))!.email;
      const s = await bound(a);
      const c = clip(a, s, NOW - 1000);
      await store.insertClip(c);
      const upload = { clipId: newClipId(NOW), serial: s, accountId: a, key: 'k', size: 5, md5: 'm', sha256: 's', startMs: NOW, durationMs: 1, kind: 'event' as const, createdAt: NOW, multipart: null };
      await store.upsertUpload(upload);
      await store.appendSecurityLog({ accountId: a, event: 'sign-in', at: NOW, ip: 'v1.x' });
      const emailHash = hash();
      await store.putEmailCode({ emailHash, purpose: 'reset', codeHash: hash(), createdAt: NOW, expiresAt: NOW + 600_000 });
      const [mineKey, otherKey] = [`login-account:${hash().slice(0, 40)}`, `login-account:${hash().slice(0, 40)}`];
      await store.hitRateLimit(mineKey, 900_000, NOW);
      await store.hitRateLimit(otherKey, 900_000, NOW);
      const input = { nowMs: NOW, tombstones: tombs, emailHash, rateLimitKeys: [mineKey], erasedEmail: `cancelled:${hash()}` };

      // not cancelled: nothing happens
      await store.purgeAccountRows(a, input);
      expect(await store.getDevice(s)).not.toBeNull();
      expect(await store.deleteCancelledClipRows(a, 10)).toBe(0);

      await store.beginCancellation(a, NOW, tombs);
      const device = (await store.getDevice(s))!;
      // a session that slipped in after the first step
      const late = { tokenHash: hash(), accountId: a, createdAt: NOW, expiresAt: NOW + 3600_000 };
      await store.createSession(late);
      await store.purgeAccountRows(a, input);
      expect(await store.getDevice(s)).toBeNull();
      expect(device.tokenHash).toBe('');
      expect(await store.getSession(late.tokenHash, NOW)).toBeNull();
      expect(await store.isCredentialCancelled(tombs.digest(late.tokenHash), NOW)).toBe(true);
      expect(await store.getUpload(upload.clipId)).toBeNull();
      expect(await store.sumPendingUploadBytes(a)).toBe(0);
      expect(await store.listSecurityLog(a)).toEqual([]);
      expect(await store.useEmailCode(emailHash, 'reset', hash(), NOW, 5)).toBe(false);
      // the rate-limit row of its address went; another key counts on
      expect(await store.hitRateLimit(mineKey, 900_000, NOW + 1)).toBe(1);
      expect(await store.hitRateLimit(otherKey, 900_000, NOW + 1)).toBe(2);
      const erased = (await store.getAccountById(a))!;
      expect(erased).toMatchObject({ id: a, email: input.erasedEmail, passwordHash: '' });
      expect(await store.getAccountByEmail(email)).toBeNull();
      // the clip row waits for its object; the other account is untouched
      expect(await store.getClip(c.id)).toEqual(c);
      expect(await store.getAccountById(other)).not.toBeNull();
      expect(await store.deleteCancelledClipRows(a, 10)).toBe(1);
      expect(await store.getClip(c.id)).toBeNull();
    });

    it('finishCancellation deletes the account row only once no clip row names it', async () => {
      const a = await account('basic');
      const s = await bound(a);
      const clips = [clip(a, s, NOW - 3000), clip(a, s, NOW - 2000), clip(a, s, NOW - 1000)];
      for (const c of clips) await store.insertClip(c);
      await expect(store.finishCancellation(a)).rejects.toThrow(/not being cancelled/);
      await store.beginCancellation(a, NOW, tombs);
      expect(await store.finishCancellation(a)).toBe(false);
      expect(await store.deleteCancelledClipRows(a, 2)).toBe(2);
      expect(await store.finishCancellation(a)).toBe(false);
      expect(await store.deleteCancelledClipRows(a, 2)).toBe(1);
      expect(await store.finishCancellation(a)).toBe(true);
      expect(await store.getAccountById(a)).toBeNull();
      expect(await store.getDevice(s)).toBeNull();
      expect(await store.listCancellations(NOW, 10_000)).not.toContain(a);
      expect(await store.finishCancellation(a)).toBe(true);
    });

    it('tombstones expire and are pruned a batch at a time', async () => {
      const a = await account();
      // sessions that expire decades before the other tests' tombstones
      const t = 3_000_000;
      const hashes = [hash(), hash(), hash()];
      for (const h of hashes) await store.createSession({ tokenHash: h, accountId: a, createdAt: t - 10, expiresAt: t + 10 });
      await store.beginCancellation(a, t, tombs);
      for (const h of hashes) expect(await store.isCredentialCancelled(tombs.digest(h), t)).toBe(true);
      expect(await store.pruneCancelledCredentials(t + 10, 2)).toBe(2);
      expect(await store.pruneCancelledCredentials(t + 10, 2)).toBe(1);
      expect(await store.pruneCancelledCredentials(t + 10, 2)).toBe(0);
      for (const h of hashes) expect(await store.isCredentialCancelled(tombs.digest(h), t)).toBe(false);
    });
  });
}
