import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Signed URLs of the local driver. They play the part of S3's presigned URLs:
 * whoever holds one may do exactly one thing (PUT these bytes, or GET this
 * object) until it expires, and changing any signed part breaks the signature.
 *
 * The string to sign starts with a version tag so a PUT signature can never
 * pass as a GET one, and each field sits on its own line (none can hold '\n':
 * keys, base64 MD5s and download names are validated before signing).
 */
export const QUERY = {
  expires: 'X-Camvault-Expires',
  length: 'X-Camvault-Length',
  md5: 'X-Camvault-MD5',
  download: 'X-Camvault-Download',
  signature: 'X-Camvault-Signature',
  uploadId: 'uploadId',
  partNumber: 'partNumber',
} as const;

export interface PutClaims {
  key: string;
  contentLength: number;
  /** base64 */
  contentMd5: string;
  /** epoch seconds */
  expires: number;
}

export interface GetClaims {
  key: string;
  /** epoch seconds */
  expires: number;
  downloadName?: string;
}

function hmacHex(secret: string, lines: string[]): string {
  return createHmac('sha256', secret).update(lines.join('\n')).digest('hex');
}

export function signPut(secret: string, c: PutClaims): string {
  return hmacHex(secret, ['camvault-v1', 'PUT', c.key, String(c.contentLength), c.contentMd5, String(c.expires)]);
}

export function signGet(secret: string, c: GetClaims): string {
  return hmacHex(secret, ['camvault-v1', 'GET', c.key, String(c.expires), c.downloadName ?? '']);
}

/** constant-time comparison of two hex signatures */
export function signaturesEqual(expectedHex: string, givenHex: string): boolean {
  if (!/^[0-9a-f]{64}$/.test(givenHex)) return false;
  return timingSafeEqual(Buffer.from(expectedHex, 'hex'), Buffer.from(givenHex, 'hex'));
}

export interface PartClaims extends PutClaims {
  uploadId: string;
  partNumber: number;
}

/** A part's URL: its own tag, so neither a whole-object PUT nor another part's URL can pass for it. */
export function signPart(secret: string, c: PartClaims): string {
  return hmacHex(secret, [
    'camvault-v1',
    'PUT-PART',
    c.key,
    c.uploadId,
    String(c.partNumber),
    String(c.contentLength),
    c.contentMd5,
    String(c.expires),
  ]);
}

/** Is this PUT URL one for a part of a multipart upload? (Its signature decides whether it is a valid one.) */
export function isPartUrl(query: URLSearchParams): boolean {
  return query.has(QUERY.uploadId) || query.has(QUERY.partNumber);
}
