import { z } from 'zod';
import { ClipId, ClipKind, Md5Base64, Sha256Hex, Timestamp } from './common.js';

/** Largest clip the API accepts at all (plans cap storage separately). */
export const MAX_CLIP_BYTES = 5 * 1024 ** 3;

export const PresignRequest = z
  .object({
    clipId: ClipId,
    start: Timestamp,
    durationMs: z.number().int().positive().max(24 * 3600 * 1000),
    size: z.number().int().positive().max(MAX_CLIP_BYTES),
    md5: Md5Base64,
    sha256: Sha256Hex,
    kind: ClipKind,
  })
  .strict();
export type PresignRequest = z.infer<typeof PresignRequest>;

export const PresignResponse = z.object({
  clipId: ClipId,
  method: z.literal('PUT'),
  url: z.string().url(),
  headers: z.record(z.string(), z.string()),
  expiresAt: Timestamp,
});
export type PresignResponse = z.infer<typeof PresignResponse>;
