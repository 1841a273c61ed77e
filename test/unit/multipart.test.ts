import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PresignRequest } from '../../shared/contracts/uploads.js';
import { hashFile } from '../../shared/hash.js';
import { newClipId } from '../../shared/ids.js';
import { MIN_PART_BYTES, multipartEtag, normalizeEtag, partCount, partEtag, splitIntoParts } from '../../shared/multipart.js';

const md5 = (b: Buffer): string => createHash('md5').update(b).digest('base64');

describe('multipart ETags', () => {
  // vectors computed apart from this code (Python hashlib), and the same rule
  // Ceph RGW applied in the s3 contract suite
  it('a part ETag is the hex of its MD5', () => {
    expect(partEtag('XUFAKrxLKna5cZ2REBfFkg==')).toBe('5d41402abc4b2a76b9719d911017c592'); // "hello"
  });

  it('the multipart ETag is the MD5 of the binary part MD5s, then the part count', () => {
    expect(multipartEtag(['1B2M2Y8AsgTpgAmY7PhCfg==', '4JyAxC/aVfnZkuWcprMwfQ=='])).toBe('79fda5562af3bc72586a0ccb578442b1-2');
    // one part still counts as multipart: not the part's own MD5
    expect(multipartEtag(['XUFAKrxLKna5cZ2REBfFkg=='])).toBe('62109206880d38a4010a98e11243924a-1');
    // the order of the parts matters
    expect(multipartEtag(['4JyAxC/aVfnZkuWcprMwfQ==', '1B2M2Y8AsgTpgAmY7PhCfg=='])).not.toBe('79fda5562af3bc72586a0ccb578442b1-2');
    expect(() => multipartEtag([])).toThrow(RangeError);
  });

  it('ETags compare without quotes, weak prefix or case', () => {
    expect(normalizeEtag('"ABCdef0123-2"')).toBe('abcdef0123-2');
    expect(normalizeEtag('W/"abc"')).toBe('abc');
    expect(normalizeEtag(' abc ')).toBe('abc');
  });
});

describe('splitting a clip into parts', () => {
  it('covers the clip exactly: full parts, then a shorter last one', () => {
    expect(splitIntoParts(12, 5)).toEqual([
      { partNumber: 1, offset: 0, length: 5 },
      { partNumber: 2, offset: 5, length: 5 },
      { partNumber: 3, offset: 10, length: 2 },
    ]);
    expect(splitIntoParts(10, 5).map((p) => p.length)).toEqual([5, 5]);
    expect(splitIntoParts(3, 5)).toEqual([{ partNumber: 1, offset: 0, length: 3 }]);
    expect(partCount(5 * 1024 ** 3, MIN_PART_BYTES)).toBe(1024);
    expect(() => splitIntoParts(0, 5)).toThrow(RangeError);
    expect(() => splitIntoParts(10, 0)).toThrow(RangeError);
  });
});

describe('hashing a file in parts', () => {
  const dir = mkdtempSync(join(tmpdir(), 'camvault-hash-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('gives each part the MD5 of its slice, in the same pass as the whole-file digests', async () => {
    // parts that straddle the 256 KiB read chunks, and a size that is not a multiple of the part
    const bytes = randomBytes(700_001);
    const path = join(dir, 'a.bin');
    writeFileSync(path, bytes);
    const d = await hashFile(path, { partBytes: 100_000 });
    expect(d.size).toBe(bytes.length);
    expect(d.md5).toBe(md5(bytes));
    expect(d.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect(d.partBytes).toBe(100_000);
    expect(d.partMd5s).toEqual(splitIntoParts(bytes.length, 100_000).map((p) => md5(bytes.subarray(p.offset, p.offset + p.length))));
    expect(d.partMd5s).toHaveLength(8);
    expect(await hashFile(path)).toEqual({ size: d.size, md5: d.md5, sha256: d.sha256 });
  });

  it('a file of exactly N parts has N part MD5s, not an empty extra one', async () => {
    const bytes = randomBytes(2 * 262_144);
    const path = join(dir, 'b.bin');
    writeFileSync(path, bytes);
    const d = await hashFile(path, { partBytes: 262_144 });
    expect(d.partMd5s).toEqual([md5(bytes.subarray(0, 262_144)), md5(bytes.subarray(262_144))]);
  });
});

describe('the multipart declaration of a presign request', () => {
  const base = { clipId: newClipId(), start: new Date().toISOString(), durationMs: 1000, md5: md5(Buffer.from('x')), sha256: 'a'.repeat(64), kind: 'event' };
  const parts = (n: number) => Array.from({ length: n }, () => ({ md5: md5(randomBytes(4)) }));

  it('must have as many parts as the size needs, of at least 5 MiB', () => {
    const size = 12 * 1024 * 1024;
    expect(PresignRequest.safeParse({ ...base, size, multipart: { partBytes: MIN_PART_BYTES, parts: parts(3) } }).success).toBe(true);
    expect(PresignRequest.safeParse({ ...base, size, multipart: { partBytes: MIN_PART_BYTES, parts: parts(2) } }).success).toBe(false);
    expect(PresignRequest.safeParse({ ...base, size, multipart: { partBytes: MIN_PART_BYTES - 1, parts: parts(3) } }).success).toBe(false);
    expect(PresignRequest.safeParse({ ...base, size, multipart: { partBytes: MIN_PART_BYTES, parts: [{ md5: 'not-md5' }, ...parts(2)] } }).success).toBe(false);
    // without it, the request is what it always was
    expect(PresignRequest.safeParse({ ...base, size }).success).toBe(true);
  });
});
