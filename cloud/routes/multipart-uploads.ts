/**
 * The multipart side of device uploads (DESIGN.md, "Data flow"): a clip above
 * config.multipartThresholdBytes goes to the store in parts, each PUT through
 * its own presigned URL that signs the part's length and MD5, and the cloud
 * assembles and verifies it on complete. The device sees URLs and headers
 * only; which driver runs is not its business.
 */
import type { FastifyBaseLogger } from 'fastify';
import type { MultipartPresignResponse, PresignRequest } from '../../shared/contracts/index.js';
import { CamvaultError } from '../../shared/errors.js';
import { multipartEtag, normalizeEtag, partEtag, splitIntoParts } from '../../shared/multipart.js';
import type { AppContext } from '../context.js';
import type { CompletedPart, StoredPart } from '../objects/types.js';
import type { UploadMultipart, UploadRow } from '../store/types.js';

export type MultipartDeclared = Omit<UploadMultipart, 'uploadId'>;

function sameDeclaration(a: UploadRow, key: string, size: number, d: MultipartDeclared): boolean {
  const m = a.multipart;
  return (
    m !== null &&
    a.key === key &&
    a.size === size &&
    m.partBytes === d.partBytes &&
    m.partMd5s.length === d.partMd5s.length &&
    m.partMd5s.every((md5, i) => md5 === d.partMd5s[i])
  );
}

function isCode(err: unknown, code: string): boolean {
  return err instanceof CamvaultError && err.code === code;
}

/** Best effort: an upload left open is found later by listMultipartUploads. */
export async function abortQuietly(ctx: AppContext, key: string, uploadId: string, log: FastifyBaseLogger): Promise<void> {
  try {
    await ctx.objects.abortMultipartUpload(key, uploadId);
  } catch (err) {
    log.warn({ err }, 'could not abort a multipart upload; the orphan sweep will');
  }
}

/** The declaration of a presign request, when it has one. */
export function declaredParts(body: PresignRequest): MultipartDeclared | null {
  if (!body.multipart) return null;
  return { partBytes: body.multipart.partBytes, partMd5s: body.multipart.parts.map((p) => p.md5) };
}

/**
 * The store upload for a presign: the pending one while the declaration is
 * unchanged and the store still has it (so parts already sent count), else a
 * new one (the old one aborted). Returns the parts already stored.
 */
export async function openMultipartUpload(
  ctx: AppContext,
  pending: UploadRow | null,
  key: string,
  size: number,
  declared: MultipartDeclared,
  log: FastifyBaseLogger,
): Promise<{ uploadId: string; stored: Map<number, StoredPart> }> {
  if (pending?.multipart) {
    if (sameDeclaration(pending, key, size, declared)) {
      try {
        const parts = await ctx.objects.listParts(key, pending.multipart.uploadId);
        return { uploadId: pending.multipart.uploadId, stored: new Map(parts.map((p) => [p.partNumber, p])) };
      } catch (err) {
        if (!isCode(err, 'MULTIPART_UPLOAD_NOT_FOUND')) throw err;
        log.info('the store no longer has the pending multipart upload; starting another');
      }
    } else {
      await abortQuietly(ctx, pending.key, pending.multipart.uploadId, log);
    }
  }
  const uploadId = await ctx.objects.createMultipartUpload(key, { contentType: 'video/mp4' });
  return { uploadId, stored: new Map() };
}

/** One presigned URL a part; parts the store already holds with the declared MD5 carry their ETag. */
export async function presignParts(
  ctx: AppContext,
  clipId: string,
  key: string,
  size: number,
  multipart: UploadMultipart,
  stored: Map<number, StoredPart>,
): Promise<MultipartPresignResponse> {
  const ranges = splitIntoParts(size, multipart.partBytes);
  let expiresAt = Infinity;
  const parts = await Promise.all(
    ranges.map(async (r) => {
      const md5 = multipart.partMd5s[r.partNumber - 1] as string;
      const signed = await ctx.objects.presignUploadPart(key, multipart.uploadId, r.partNumber, {
        contentLength: r.length,
        contentMd5: md5,
        expiresInSec: ctx.config.uploadUrlTtlSec,
      });
      expiresAt = Math.min(expiresAt, signed.expiresAt);
      const have = stored.get(r.partNumber);
      const etag = have && have.size === r.length && have.etag === partEtag(md5) ? have.etag : undefined;
      return { ...r, url: signed.url, headers: signed.headers, ...(etag !== undefined ? { etag } : {}) };
    }),
  );
  return {
    clipId,
    mode: 'multipart',
    method: 'PUT',
    uploadId: multipart.uploadId,
    partBytes: multipart.partBytes,
    parts,
    expiresAt: new Date(expiresAt).toISOString(),
  };
}

/**
 * Completes a pending multipart upload and verifies the object: its size is
 * the declared size and its ETag is the multipart ETag of the declared part
 * MD5s. The store is given the ETags the declaration implies (each part's URL
 * signed its MD5, so a stored part has exactly that ETag); ETags the device
 * lists must agree with them. A mismatch deletes the object: 422.
 *
 * Safe to repeat: an object already assembled and verified is not assembled
 * again (the first answer may have been lost).
 */
export async function completeMultipart(
  ctx: AppContext,
  upload: UploadRow & { multipart: UploadMultipart },
  listed: CompletedPart[] | undefined,
  log: FastifyBaseLogger,
): Promise<void> {
  const { key, size, multipart } = upload;
  const expectedParts: CompletedPart[] = splitIntoParts(size, multipart.partBytes).map((r) => ({
    partNumber: r.partNumber,
    etag: partEtag(multipart.partMd5s[r.partNumber - 1] as string),
  }));
  if (listed !== undefined) {
    if (listed.length !== expectedParts.length) {
      throw new CamvaultError('UPLOAD_MISMATCH', `the upload has ${expectedParts.length} parts, ${listed.length} were listed`);
    }
    for (const [i, p] of listed.entries()) {
      const want = expectedParts[i] as CompletedPart;
      if (p.partNumber !== want.partNumber || normalizeEtag(p.etag) !== want.etag) {
        throw new CamvaultError('UPLOAD_MISMATCH', `part ${want.partNumber} does not match its declared MD5`, { partNumber: want.partNumber });
      }
    }
  }

  const expectedEtag = multipartEtag(multipart.partMd5s);
  const verified = (h: { size: number; etag: string | null } | null): boolean => h !== null && h.size === size && h.etag === expectedEtag;
  let head = await ctx.objects.head(key);
  if (verified(head)) {
    // assembled by an earlier call whose answer was lost; a newer upload id may still be open
    await abortQuietly(ctx, key, multipart.uploadId, log);
  } else {
    try {
      await ctx.objects.completeMultipartUpload(key, multipart.uploadId, expectedParts);
    } catch (err) {
      if (isCode(err, 'MULTIPART_PART_INVALID')) {
        throw new CamvaultError('UPLOAD_OBJECT_MISSING', 'not every part has arrived in the store; presign again to see which');
      }
      if (!isCode(err, 'MULTIPART_UPLOAD_NOT_FOUND')) throw err;
      // completed by a concurrent call, or lost: the object says which
      if (!verified(await ctx.objects.head(key))) {
        throw new CamvaultError('UPLOAD_OBJECT_MISSING', 'the store no longer has this upload; presign again');
      }
    }
    head = await ctx.objects.head(key);
  }
  if (!head) throw new CamvaultError('UPLOAD_OBJECT_MISSING');
  if (!verified(head)) {
    await ctx.objects.deleteMany([key]);
    log.warn({ expected: size, stored: head.size, expectedEtag, storedEtag: head.etag }, 'assembled object does not match its declaration');
    throw new CamvaultError('UPLOAD_MISMATCH', 'the assembled object does not match the declared size and part MD5s');
  }
}
