import { z } from 'zod';
import { ClipId, ClipKind, Serial, Sha256Hex, Timestamp } from './common.js';

export const Clip = z.object({
  id: ClipId,
  serial: Serial,
  kind: ClipKind,
  start: Timestamp,
  durationMs: z.number().int(),
  size: z.number().int(),
  sha256: Sha256Hex,
  uploadedAt: Timestamp,
  expiresAt: Timestamp,
});
export type Clip = z.infer<typeof Clip>;

export const ClipListQuery = z
  .object({
    serial: Serial.optional(),
    from: Timestamp.optional(),
    to: Timestamp.optional(),
    kind: ClipKind.optional(),
    cursor: z.string().max(200).optional(),
    limit: z.coerce.number().int().min(1).max(500).default(100),
  })
  .strict();
export type ClipListQuery = z.infer<typeof ClipListQuery>;

export const ClipListResponse = z.object({ clips: z.array(Clip), nextCursor: z.string().nullable() });
export type ClipListResponse = z.infer<typeof ClipListResponse>;

export const ViewQuery = z.object({ download: z.enum(['true', 'false', '1', '0']).optional() }).strict();
export const ViewResponse = z.object({ url: z.string().url(), expiresAt: Timestamp });
export type ViewResponse = z.infer<typeof ViewResponse>;

export const CompleteResponse = z.object({ clip: Clip });
export type CompleteResponse = z.infer<typeof CompleteResponse>;

/** POST /v1/clips/delete: some clips by id, or a camera's clips that start in [from, to). */
export const DeleteClipsRequest = z.union([
  z.object({ ids: z.array(ClipId).min(1).max(1000) }).strict(),
  z.object({ serial: Serial, from: Timestamp, to: Timestamp }).strict(),
]);
export type DeleteClipsRequest = z.infer<typeof DeleteClipsRequest>;
export const DeleteClipsResponse = z.object({ deleted: z.number().int() });
export type DeleteClipsResponse = z.infer<typeof DeleteClipsResponse>;
