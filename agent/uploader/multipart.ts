/**
 * The agent's side of multipart uploads: which clips are hashed in parts, the
 * check that a presigned part list fits the clip, the PUT slots every upload
 * shares, and the part uploads themselves (each part streamed from its byte
 * range on disk, so memory stays flat whatever the clip size).
 */
import type { MultipartPresignResponse, PresignedPart } from '../../shared/contracts/uploads.js';
import { hashFile } from '../../shared/hash.js';
import { MIN_PART_BYTES } from '../../shared/multipart.js';
import { CLIENT_CODES, CloudError, type CallOptions, type PutResult } from '../cloud-client.js';
import type { ClipParts } from '../journal/journal.js';

/**
 * Part MD5s are declared for every clip above S3's smallest part: no cloud
 * can set its multipart threshold lower, and the device does not know the
 * threshold. Below it a clip is one part, whose MD5 the whole-file MD5 is.
 */
export function wantsParts(size: number): boolean {
  return size > MIN_PART_BYTES;
}

export interface ClipDigest {
  size: number;
  md5: string;
  sha256: string;
  parts: ClipParts | null;
}

/** Hashes a clip once: MD5 and SHA-256 of the file and, when it is large enough, the MD5 of each part. */
export async function hashClip(path: string, partBytes: number): Promise<ClipDigest> {
  const d = await hashFile(path, { partBytes });
  return { size: d.size, md5: d.md5, sha256: d.sha256, parts: wantsParts(d.size) ? { partBytes, md5s: d.partMd5s } : null };
}

/**
 * The parts of a presign answer must tile the file exactly as it was hashed:
 * numbered 1..N, contiguous from offset 0, `partBytes` each but the last. A
 * cloud that answers otherwise is not trusted with the bytes.
 */
export function checkPartLayout(presigned: MultipartPresignResponse, size: number, parts: ClipParts): void {
  const bad = (why: string): CloudError => new CloudError(200, CLIENT_CODES.BAD_RESPONSE, `the presigned parts do not fit the clip: ${why}`);
  if (presigned.partBytes !== parts.partBytes) throw bad('another part size');
  if (presigned.parts.length !== parts.md5s.length) throw bad('another part count');
  let offset = 0;
  for (const [i, p] of presigned.parts.entries()) {
    if (p.partNumber !== i + 1 || p.offset !== offset) throw bad(`part ${i + 1} is out of place`);
    const want = Math.min(parts.partBytes, size - offset);
    if (p.length !== want) throw bad(`part ${i + 1} has another length`);
    offset += p.length;
  }
  if (offset !== size) throw bad('the parts do not cover the file');
}

/**
 * A counting semaphore over PUT streams, shared by every upload of the
 * uploader, so that the configured concurrency bounds the streams in flight
 * whether they carry whole clips or parts. Waiters are served in order.
 */
export class PutSlots {
  private free: number;
  private readonly waiters: (() => void)[] = [];

  constructor(size: number) {
    this.free = Math.max(1, size);
  }

  /** Resolves with a release function once a slot is free; rejects with ABORTED if the signal aborts first. */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(new CloudError(0, CLIENT_CODES.ABORTED, 'aborted'));
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      const next = this.waiters.shift();
      if (next) next();
      else this.free += 1;
    };
    if (this.free > 0) {
      this.free -= 1;
      return Promise.resolve(release);
    }
    return new Promise((resolve, reject) => {
      const grant = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve(release);
      };
      const onAbort = (): void => {
        const i = this.waiters.indexOf(grant);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new CloudError(0, CLIENT_CODES.ABORTED, 'aborted'));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(grant);
    });
  }
}

export interface PartPutApi {
  streamPart(part: Pick<PresignedPart, 'url' | 'headers' | 'offset' | 'length'>, path: string, opts: CallOptions & { fileSize: number }): Promise<PutResult>;
}

export interface UploadPartsOptions {
  api: PartPutApi;
  path: string;
  /** the size the clip was hashed at */
  fileSize: number;
  /** the parts still to send, in order */
  parts: PresignedPart[];
  slots: PutSlots;
  /** parts of this clip in flight at once (each also holds a shared slot) */
  concurrency: number;
  signal: AbortSignal;
  /** called as each part is stored */
  onStored?: (partNumber: number, etag: string | undefined) => void;
}

/**
 * PUTs the parts, up to `concurrency` at a time. The first refusal or failure
 * stops new parts from starting; parts already on the wire finish (their
 * bytes are not wasted), then the failure is thrown. Parts stored before it
 * stay stored: presigning again reports them, and only the rest are sent.
 */
export async function uploadParts(opts: UploadPartsOptions): Promise<void> {
  let next = 0;
  let failure: unknown;
  const worker = async (): Promise<void> => {
    while (failure === undefined && next < opts.parts.length) {
      const part = opts.parts[next++] as PresignedPart;
      let release: (() => void) | undefined;
      try {
        release = await opts.slots.acquire(opts.signal);
        if (failure !== undefined) return;
        const put = await opts.api.streamPart(part, opts.path, { signal: opts.signal, fileSize: opts.fileSize });
        if (!put.ok) {
          throw new CloudError(put.status, put.code ?? `HTTP_${put.status}`, `PUT part ${part.partNumber} → ${put.status}`, put.retryAfterSec);
        }
        opts.onStored?.(part.partNumber, put.etag);
      } catch (err) {
        failure ??= err;
      } finally {
        release?.();
      }
    }
  };
  const workers = Array.from({ length: Math.max(1, Math.min(opts.concurrency, opts.parts.length)) }, () => worker());
  await Promise.all(workers);
  if (failure !== undefined) throw failure;
}
