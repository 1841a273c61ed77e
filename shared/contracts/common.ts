import { z } from 'zod';
import { SERIAL_RE, ULID_RE } from '../ids.js';
import { MD5_BASE64_RE } from '../keys.js';

export const Serial = z.string().regex(SERIAL_RE, 'serial must be 8-32 characters A-Z 0-9');
export const ClipId = z.string().regex(ULID_RE, 'clip id must be a ULID');
export const AccountId = z.string().regex(ULID_RE, 'account id must be a ULID');
/** ISO 8601 with a zone, e.g. 2026-11-29T10:00:00.000Z */
export const Timestamp = z.string().datetime({ offset: true });
export const Md5Base64 = z.string().regex(MD5_BASE64_RE, 'md5 must be 16 bytes in base64');
export const Sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'sha256 must be 64 lower-case hex digits');
export const ClipKind = z.enum(['event', 'continuous']);
export type ClipKind = z.infer<typeof ClipKind>;

export const ErrorResponse = z.object({
  error: z.object({ code: z.string(), message: z.string(), details: z.unknown().optional() }),
});
