/**
 * A device's upload, the way the agent does it: presign, PUT the bytes with
 * the signed headers, complete. No vitest here: the demo may use it too.
 */
import { createHash } from 'node:crypto';
import { newClipId } from '../../shared/ids.js';
import type { ClipKind } from '../../shared/contracts/index.js';
import { api, type ApiResponse, type ClaimedDevice } from './cloud.js';

export interface ClipToUpload {
  body: Buffer;
  startMs?: number;
  kind?: ClipKind;
  durationMs?: number;
  clipId?: string;
}

export function presignBody(clip: ClipToUpload): Record<string, unknown> {
  const startMs = clip.startMs ?? Date.now();
  return {
    clipId: clip.clipId ?? newClipId(startMs),
    start: new Date(startMs).toISOString(),
    durationMs: clip.durationMs ?? 2000,
    size: clip.body.length,
    md5: createHash('md5').update(clip.body).digest('base64'),
    sha256: createHash('sha256').update(clip.body).digest('hex'),
    kind: clip.kind ?? 'event',
  };
}

/** a Buffer as fetch's types want a body (same memory, no copy) */
export function bodyOf(buf: Buffer): Uint8Array<ArrayBuffer> {
  return new Uint8Array(buf.buffer as ArrayBuffer, buf.byteOffset, buf.length);
}

/** PUT with exactly the headers the presign answer listed */
export async function putPresigned(presigned: { url: string; headers: Record<string, string> }, body: Buffer): Promise<Response> {
  return fetch(presigned.url, { method: 'PUT', headers: presigned.headers, body: bodyOf(body) });
}

export interface UploadOutcome {
  presign: ApiResponse;
  put?: Response;
  complete?: ApiResponse;
  clipId: string;
}

/** presign → PUT → complete; stops at the first step that fails */
export async function uploadClip(base: string, device: ClaimedDevice, clip: ClipToUpload): Promise<UploadOutcome> {
  const req = presignBody(clip);
  const clipId = req.clipId as string;
  const presign = await api(base, 'POST', '/v1/device/uploads', { device, body: req });
  if (presign.status !== 200) return { presign, clipId };
  const put = await putPresigned(presign.body, clip.body);
  await put.arrayBuffer();
  if (put.status !== 200) return { presign, put, clipId };
  const complete = await api(base, 'POST', `/v1/device/uploads/${clipId}/complete`, { device });
  return { presign, put, complete, clipId };
}
