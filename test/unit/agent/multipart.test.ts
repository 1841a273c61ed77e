import { describe, expect, it } from 'vitest';
import { PutSlots, checkPartLayout, wantsParts } from '../../../agent/uploader/multipart.js';
import type { MultipartPresignResponse } from '../../../shared/contracts/uploads.js';
import { MIN_PART_BYTES } from '../../../shared/multipart.js';

describe('which clips declare parts', () => {
  it('every clip above 5 MiB, the lowest multipart threshold a cloud may set', () => {
    expect(wantsParts(MIN_PART_BYTES)).toBe(false);
    expect(wantsParts(MIN_PART_BYTES + 1)).toBe(true);
  });
});

describe('checking the presigned parts against the clip', () => {
  const answer = (parts: [number, number, number][], partBytes = 5): MultipartPresignResponse => ({
    clipId: '01J0000000000000000000000A',
    mode: 'multipart',
    method: 'PUT',
    uploadId: 'u',
    partBytes,
    expiresAt: new Date().toISOString(),
    parts: parts.map(([partNumber, offset, length]) => ({ partNumber, offset, length, url: 'http://x/', headers: {} })),
  });
  const clipParts = { partBytes: 5, md5s: ['a', 'b', 'c'] };

  it('accepts parts that tile the file as it was hashed', () => {
    expect(() => checkPartLayout(answer([[1, 0, 5], [2, 5, 5], [3, 10, 2]]), 12, clipParts)).not.toThrow();
  });

  it('refuses any other tiling as a bad response', () => {
    const cases: [MultipartPresignResponse, number][] = [
      [answer([[1, 0, 5], [2, 5, 5], [3, 10, 2]], 6), 12],
      [answer([[1, 0, 5], [2, 5, 7]]), 12],
      [answer([[1, 0, 5], [3, 5, 5], [2, 10, 2]]), 12],
      [answer([[1, 0, 5], [2, 6, 5], [3, 11, 1]]), 12],
      [answer([[1, 0, 5], [2, 5, 5], [3, 10, 3]]), 12],
      [answer([[1, 0, 5], [2, 5, 5], [3, 10, 2]]), 13],
    ];
    for (const [a, size] of cases) expect(() => checkPartLayout(a, size, clipParts)).toThrow(expect.objectContaining({ code: 'BAD_RESPONSE' }));
  });
});

describe('PUT slots shared by every upload', () => {
  it('hands out at most N at once, in the order asked, and a release passes the slot on once', async () => {
    const slots = new PutSlots(2);
    const a = await slots.acquire();
    const b = await slots.acquire();
    const order: string[] = [];
    const c = slots.acquire().then((r) => (order.push('c'), r));
    const d = slots.acquire().then((r) => (order.push('d'), r));
    await new Promise((r) => setTimeout(r, 5));
    expect(order).toEqual([]);
    a();
    a(); // a second release of the same slot is a no-op
    const releaseC = await c;
    await new Promise((r) => setTimeout(r, 5));
    expect(order).toEqual(['c']);
    b();
    (await d)();
    releaseC();
    // all free again: two at once without waiting
    const [x, y] = await Promise.all([slots.acquire(), slots.acquire()]);
    x();
    y();
  });

  it('a waiter whose signal aborts leaves the queue with ABORTED', async () => {
    const slots = new PutSlots(1);
    const held = await slots.acquire();
    const ctl = new AbortController();
    const waiting = slots.acquire(ctl.signal);
    ctl.abort();
    await expect(waiting).rejects.toMatchObject({ code: 'ABORTED' });
    held();
    // the aborted waiter did not take the slot
    (await slots.acquire())();
  });
});
