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
  });
}
