import type { Clip } from '../../shared/contracts/index.js';
import type { ClipRow } from '../store/types.js';

/** A clip as the API shows it: no object key, no MD5 (internal to the upload check). */
export function clipJson(row: ClipRow): Clip {
  return {
    id: row.id,
    serial: row.serial,
    kind: row.kind,
    start: new Date(row.startMs).toISOString(),
    durationMs: row.durationMs,
    size: row.size,
    sha256: row.sha256,
    uploadedAt: new Date(row.uploadedAt).toISOString(),
    expiresAt: new Date(row.expiresAt).toISOString(),
  };
}
