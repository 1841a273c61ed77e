import { createHash } from 'node:crypto';

/**
 * Multipart uploads as S3 defines them, shared by the agent (which splits and
 * hashes), the cloud (which validates and verifies) and both object-store
 * drivers (the local one imitates S3's rules so a clip that uploads in
 * development uploads in production).
 *
 * S3's limits (AWS "Amazon S3 multipart upload limits"): parts are numbered
 * 1..10000; every part but the last is at least 5 MiB; a part is at most 5 GiB.
 */
export const MIN_PART_BYTES = 5 * 1024 * 1024;
export const MAX_PART_BYTES = 5 * 1024 ** 3;
export const MAX_PARTS = 10_000;
/** the agent's default part size */
export const DEFAULT_PART_BYTES = 16 * 1024 * 1024;

export interface PartRange {
  /** 1-based, as S3 numbers them */
  partNumber: number;
  offset: number;
  length: number;
}

/** How many parts of `partBytes` a body of `size` bytes makes (the last may be shorter). */
export function partCount(size: number, partBytes: number): number {
  if (!Number.isSafeInteger(size) || size < 1) throw new RangeError('size must be a positive integer');
  if (!Number.isSafeInteger(partBytes) || partBytes < 1) throw new RangeError('partBytes must be a positive integer');
  return Math.ceil(size / partBytes);
}

/** The byte ranges of the parts, in order; together they cover [0, size) exactly. */
export function splitIntoParts(size: number, partBytes: number): PartRange[] {
  const n = partCount(size, partBytes);
  const parts: PartRange[] = [];
  for (let i = 0; i < n; i++) {
    const offset = i * partBytes;
    parts.push({ partNumber: i + 1, offset, length: Math.min(partBytes, size - offset) });
  }
  return parts;
}

/**
 * The ETag S3 gives a part, and a single-PUT object: the hex MD5 of its bytes
 * (for buckets without SSE-KMS or SSE-C, which camvault does not use).
 */
export function partEtag(md5Base64: string): string {
  return Buffer.from(md5Base64, 'base64').toString('hex');
}

/**
 * The ETag S3 gives an object assembled from parts: the MD5 of the parts'
 * binary MD5s concatenated in part order, in hex, then "-" and the number of
 * parts. Not documented by AWS as a contract, but what AWS, Ceph RGW and MinIO
 * all compute, and what lets the cloud check an assembled object against the
 * part MD5s the device declared without reading it back.
 */
export function multipartEtag(partMd5sBase64: readonly string[]): string {
  if (partMd5sBase64.length === 0) throw new RangeError('a multipart upload has at least one part');
  const h = createHash('md5');
  for (const md5 of partMd5sBase64) h.update(Buffer.from(md5, 'base64'));
  return `${h.digest('hex')}-${partMd5sBase64.length}`;
}

/** An ETag as compared here: without the quotes HTTP puts around it (and a weak prefix), lower case. */
export function normalizeEtag(etag: string): string {
  return etag
    .trim()
    .replace(/^W\//, '')
    .replace(/^"(.*)"$/, '$1')
    .toLowerCase();
}
