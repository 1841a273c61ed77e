import { z } from 'zod';
import { MAX_PART_BYTES, MAX_PARTS, MIN_PART_BYTES } from '../multipart.js';
import { ClipId, ClipKind, Md5Base64, Sha256Hex, Timestamp } from './common.js';

/** Largest clip the API accepts at all (plans cap storage separately). */
export const MAX_CLIP_BYTES = 5 * 1024 ** 3;

/**
 * The part MD5s of a clip, sent with every presign of a clip larger than
 * MIN_PART_BYTES (the lowest threshold a cloud can have): the device does not
 * know the cloud's threshold, and the cloud decides. Part i covers bytes
 * [(i-1)·partBytes, min(i·partBytes, size)).
 */
export const MultipartDeclaration = z
  .object({
    partBytes: z.number().int().min(MIN_PART_BYTES).max(MAX_PART_BYTES),
    parts: z
      .array(z.object({ md5: Md5Base64 }).strict())
      .min(1)
      .max(MAX_PARTS),
  })
  .strict();
export type MultipartDeclaration = z.infer<typeof MultipartDeclaration>;

export const PresignRequest = z
  .object({
    clipId: ClipId,
    start: Timestamp,
    durationMs: z.number().int().positive().max(24 * 3600 * 1000),
    size: z.number().int().positive().max(MAX_CLIP_BYTES),
    md5: Md5Base64,
    sha256: Sha256Hex,
    kind: ClipKind,
    multipart: MultipartDeclaration.optional(),
  })
  .strict()
  .superRefine((r, ctx) => {
    if (r.multipart && r.multipart.parts.length !== Math.ceil(r.size / r.multipart.partBytes)) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['multipart', 'parts'],
        message: `a clip of ${r.size} bytes in parts of ${r.multipart.partBytes} has ${Math.ceil(r.size / r.multipart.partBytes)} parts`,
      });
    }
  });
export type PresignRequest = z.infer<typeof PresignRequest>;

/** One PUT of the whole clip. `mode` is absent in answers from clouds older than multipart. */
export const SinglePresignResponse = z.object({
  clipId: ClipId,
  mode: z.literal('single').default('single'),
  method: z.literal('PUT'),
  url: z.string().url(),
  headers: z.record(z.string(), z.string()),
  expiresAt: Timestamp,
});
export type SinglePresignResponse = z.infer<typeof SinglePresignResponse>;

export const PresignedPart = z.object({
  partNumber: z.number().int().min(1).max(MAX_PARTS),
  /** the part's bytes are [offset, offset + length) of the clip file */
  offset: z.number().int().min(0),
  length: z.number().int().positive(),
  url: z.string().url(),
  /** send exactly these (Content-Length and Content-MD5 are signed into the URL) */
  headers: z.record(z.string(), z.string()),
  /**
   * Present when the store already holds this part with the declared MD5 (an
   * earlier attempt sent it): the device need not send it again.
   */
  etag: z.string().optional(),
});
export type PresignedPart = z.infer<typeof PresignedPart>;

/**
 * A multipart upload: PUT each part not yet stored to its URL, then complete.
 * Presigning the same clip again (a retry, expired URLs) answers with the same
 * uploadId while the declaration is unchanged, and marks the parts already
 * stored, so nothing sent is sent twice.
 */
export const MultipartPresignResponse = z.object({
  clipId: ClipId,
  mode: z.literal('multipart'),
  method: z.literal('PUT'),
  uploadId: z.string().min(1).max(1024),
  partBytes: z.number().int().positive(),
  parts: z.array(PresignedPart).min(1).max(MAX_PARTS),
  expiresAt: Timestamp,
});
export type MultipartPresignResponse = z.infer<typeof MultipartPresignResponse>;

export const PresignResponse = z.union([MultipartPresignResponse, SinglePresignResponse]);
export type PresignResponse = z.infer<typeof PresignResponse>;

/** An ETag as a store sends it: hex digits, a part count, quotes; nothing that could carry markup. */
const Etag = z.string().regex(/^"?[0-9A-Za-z-]{1,64}"?$/, 'etag must be an S3-style entity tag');

/**
 * POST /v1/device/uploads/:clipId/complete. No body (or `{}`) for a single PUT.
 * For a multipart upload the device may list the ETags the store answered
 * each part with; the cloud then checks them against the declared part MD5s
 * (422 UPLOAD_MISMATCH when one differs). Without the list (a device that
 * restarted mid-upload) the cloud completes from the declaration alone.
 */
export const CompleteRequest = z
  .object({
    parts: z
      .array(z.object({ partNumber: z.number().int().min(1).max(MAX_PARTS), etag: Etag }).strict())
      .min(1)
      .max(MAX_PARTS)
      .optional(),
  })
  .strict();
export type CompleteRequest = z.infer<typeof CompleteRequest>;
