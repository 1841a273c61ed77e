import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type { z } from 'zod';
import { systemClock, type Clock } from '../shared/clock.js';
import { ErrorResponse } from '../shared/contracts/common.js';
import { CompleteResponse } from '../shared/contracts/clips.js';
import { ClaimResponse, type ClaimRequest } from '../shared/contracts/devices.js';
import { PresignResponse, type CompleteRequest, type PresignRequest, type PresignedPart } from '../shared/contracts/uploads.js';
import { sliceBytes, TokenBucket } from './uploader/token-bucket.js';

/**
 * Codes the client itself produces, next to the API's catalogue codes: the
 * request never got an HTTP answer, or the answer made no sense.
 */
export const CLIENT_CODES = {
  NETWORK_ERROR: 'NETWORK_ERROR',
  TIMEOUT: 'TIMEOUT',
  ABORTED: 'ABORTED',
  BAD_RESPONSE: 'BAD_RESPONSE',
  /** the clip's file is not on disk any more */
  FILE_MISSING: 'FILE_MISSING',
  /** the file's size differs from the one journaled and signed */
  FILE_CHANGED: 'FILE_CHANGED',
  FILE_UNREADABLE: 'FILE_UNREADABLE',
} as const;

/** A refusal or failure of a cloud call. status is 0 when no HTTP answer came. */
export class CloudError extends Error {
  readonly status: number;
  readonly code: string;
  readonly retryAfterSec?: number;

  constructor(status: number, code: string, message?: string, retryAfterSec?: number) {
    super(message ?? code);
    this.name = 'CloudError';
    this.status = status;
    this.code = code;
    if (retryAfterSec !== undefined) this.retryAfterSec = retryAfterSec;
  }
}

export interface PutResult {
  status: number;
  ok: boolean;
  code?: string;
  retryAfterSec?: number;
  /** the ETag the store answered a stored body with, as sent (quoted) */
  etag?: string;
}

/** Where a PUT goes: a presigned URL and the headers to send, exactly. */
export interface PutTarget {
  url: string;
  headers: Record<string, string>;
}

/** Retry-After is either delta-seconds or an HTTP date (RFC 9110, 10.2.3). */
export function parseRetryAfter(value: string | null | undefined, nowMs: number): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v);
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, Math.ceil((at - nowMs) / 1000));
}

/**
 * The error code in an error body: the API's JSON shape, or an S3-style XML
 * error, where an expired presigned URL is `AccessDenied` with "Request has
 * expired" (AWS, Ceph RGW, MinIO) and maps to URL_EXPIRED like the local
 * driver's answer.
 */
export function errorCodeFromBody(status: number, body: string): string {
  const text = body.trim();
  if (text.startsWith('{')) {
    try {
      const parsed = ErrorResponse.safeParse(JSON.parse(text));
      if (parsed.success) return parsed.data.error.code;
    } catch {
      // not JSON after all
    }
  }
  const xmlCode = /<Code>([^<]{1,64})<\/Code>/.exec(text)?.[1];
  if (xmlCode) {
    if (xmlCode === 'ExpiredToken' || (xmlCode === 'AccessDenied' && /expired/i.test(text))) return 'URL_EXPIRED';
    return xmlCode;
  }
  return `HTTP_${status}`;
}

export interface CallOptions {
  signal?: AbortSignal;
}

export interface CloudClientOptions {
  /** the cloud's base URL, e.g. https://cloud.example.com */
  baseUrl: string;
  /** per API request */
  timeoutMs?: number;
  /** an upload that makes no progress for this long is abandoned */
  putIdleTimeoutMs?: number;
  clock?: Clock;
  fetch?: typeof fetch;
  /** the cap on PUT bodies, all uploads together, in bytes a second; 0 or absent: none */
  uploadBytesPerSec?: number;
  /** the cap's burst (TokenBucket's default when absent) */
  uploadBurstBytes?: number;
}

/**
 * The device side of the API. Nothing here logs: callers log codes and clip
 * ids, never a URL's query (its signature) or the device token.
 */
export class CloudClient {
  private readonly baseUrl: string;
  private readonly timeoutMs: number;
  private readonly putIdleTimeoutMs: number;
  private readonly clock: Clock;
  private readonly fetchFn: typeof fetch;
  private authorization: string | undefined;
  /** shared by every PUT stream of this client (whole clips and parts) */
  private readonly uploadCap: TokenBucket | undefined;

  constructor(opts: CloudClientOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '');
    this.timeoutMs = opts.timeoutMs ?? 15_000;
    this.putIdleTimeoutMs = opts.putIdleTimeoutMs ?? 30_000;
    this.clock = opts.clock ?? systemClock;
    this.fetchFn = opts.fetch ?? fetch;
    if (opts.uploadBytesPerSec !== undefined && opts.uploadBytesPerSec > 0) {
      this.uploadCap = new TokenBucket({ bytesPerSec: opts.uploadBytesPerSec, burstBytes: opts.uploadBurstBytes });
    }
  }

  /** The upload bandwidth cap in bytes a second, or undefined when there is none. */
  get uploadBytesPerSec(): number | undefined {
    return this.uploadCap?.bytesPerSec;
  }

  setDeviceCredentials(serial: string, deviceToken: string): void {
    this.authorization = `Device ${serial}:${deviceToken}`;
  }

  claim(req: ClaimRequest, opts: CallOptions = {}): Promise<ClaimResponse> {
    return this.call('POST', '/v1/device/claim', req, ClaimResponse, { ...opts, auth: false });
  }

  async presign(req: PresignRequest, opts: CallOptions = {}): Promise<PresignResponse> {
    const res = await this.call('POST', '/v1/device/uploads', req, PresignResponse, { ...opts, auth: true });
    if (res.clipId !== req.clipId) throw new CloudError(200, CLIENT_CODES.BAD_RESPONSE, 'presign answered for another clip');
    return res;
  }

  /** For a multipart upload, `body.parts` lists the ETags the store answered each part with. */
  complete(clipId: string, opts: CallOptions = {}, body: CompleteRequest = {}): Promise<CompleteResponse> {
    return this.call('POST', `/v1/device/uploads/${encodeURIComponent(clipId)}/complete`, body, CompleteResponse, { ...opts, auth: true });
  }

  private async call<S extends z.ZodTypeAny>(
    method: string,
    path: string,
    body: unknown,
    schema: S,
    opts: CallOptions & { auth: boolean },
  ): Promise<z.output<S>> {
    if (opts.signal?.aborted) throw new CloudError(0, CLIENT_CODES.ABORTED, 'aborted');
    const headers: Record<string, string> = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (opts.auth) {
      if (!this.authorization) throw new CloudError(0, 'DEVICE_UNAUTHENTICATED', 'the device has no credentials yet');
      headers.authorization = this.authorization;
    }
    const timeout = AbortSignal.timeout(this.timeoutMs);
    const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
    let status = 0;
    let text: string;
    let retryAfter: string | null;
    try {
      const res = await this.fetchFn(this.baseUrl + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
      status = res.status;
      retryAfter = res.headers.get('retry-after');
      text = await res.text();
    } catch (err) {
      if (opts.signal?.aborted) throw new CloudError(0, CLIENT_CODES.ABORTED, 'aborted');
      if (timeout.aborted) throw new CloudError(status, CLIENT_CODES.TIMEOUT, `${method} ${path} timed out after ${this.timeoutMs} ms`);
      throw new CloudError(status, CLIENT_CODES.NETWORK_ERROR, `${method} ${path}: ${networkMessage(err)}`);
    }
    if (status < 200 || status >= 300) {
      const code = errorCodeFromBody(status, text);
      throw new CloudError(status, code, `${method} ${path} → ${status} ${code}`, parseRetryAfter(retryAfter, this.clock.now()));
    }
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      throw new CloudError(status, CLIENT_CODES.BAD_RESPONSE, `${method} ${path}: the answer is not JSON`);
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      throw new CloudError(status, CLIENT_CODES.BAD_RESPONSE, `${method} ${path}: unexpected answer (${parsed.error.issues[0]?.path.join('.') ?? ''})`);
    }
    return parsed.data as z.output<S>;
  }

  /**
   * PUTs a file to a presigned URL, streamed from disk with exactly the headers
   * the presign answer lists (Content-Length and Content-MD5 are signed into
   * the URL). Memory stays flat whatever the size. Resolves with the status and
   * the error code of a refusal; rejects with a CloudError when no HTTP answer
   * came (network, timeout, abort) or the file is missing or changed.
   */
  async streamPut(presigned: PutTarget, path: string, opts: CallOptions = {}): Promise<PutResult> {
    const { signal } = opts;
    if (signal?.aborted) throw new CloudError(0, CLIENT_CODES.ABORTED, 'aborted');
    const fh = await openClipFile(path);
    try {
      const { size } = await fh.stat();
      const declared = signedLength(presigned.headers);
      if (declared !== undefined && Number(declared) !== size) {
        throw new CloudError(0, CLIENT_CODES.FILE_CHANGED, `the clip file is ${size} bytes, ${declared} were signed`);
      }
      return await this.put(presigned, fh, signal, { start: 0 });
    } finally {
      await fh.close().catch(() => undefined);
    }
  }

  /**
   * PUTs one part of a multipart upload: bytes [offset, offset + length) of the
   * file, streamed from disk with exactly the headers given. `fileSize` is the
   * size the clip was hashed at: a file of another size has changed since.
   */
  async streamPart(part: Pick<PresignedPart, 'url' | 'headers' | 'offset' | 'length'>, path: string, opts: CallOptions & { fileSize: number }): Promise<PutResult> {
    const { signal } = opts;
    if (signal?.aborted) throw new CloudError(0, CLIENT_CODES.ABORTED, 'aborted');
    const fh = await openClipFile(path);
    try {
      const { size } = await fh.stat();
      if (size !== opts.fileSize) throw new CloudError(0, CLIENT_CODES.FILE_CHANGED, `the clip file is ${size} bytes, ${opts.fileSize} were hashed`);
      const declared = signedLength(part.headers);
      if (part.offset + part.length > size || (declared !== undefined && Number(declared) !== part.length)) {
        throw new CloudError(0, CLIENT_CODES.BAD_RESPONSE, 'the presigned part does not fit the clip file');
      }
      if (part.length === 0) throw new CloudError(0, CLIENT_CODES.BAD_RESPONSE, 'the presigned part is empty');
      return await this.put(part, fh, signal, { start: part.offset, end: part.offset + part.length - 1 });
    } finally {
      await fh.close().catch(() => undefined);
    }
  }

  private put(presigned: PutTarget, fh: FileHandle, signal: AbortSignal | undefined, range: { start: number; end?: number }): Promise<PutResult> {
    const url = new URL(presigned.url);
    const transport = url.protocol === 'https:' ? https : http;
    return new Promise<PutResult>((resolve, reject) => {
      let settled = false;
      const settle = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        fn();
      };
      const req = transport.request(url, { method: 'PUT', headers: presigned.headers });
      const onAbort = (): void => {
        req.destroy();
        settle(() => reject(new CloudError(0, CLIENT_CODES.ABORTED, 'aborted')));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      req.setTimeout(this.putIdleTimeoutMs, () => {
        req.destroy();
        settle(() => reject(new CloudError(0, CLIENT_CODES.TIMEOUT, `upload made no progress for ${this.putIdleTimeoutMs} ms`)));
      });
      req.on('response', (res) => {
        const status = res.statusCode ?? 0;
        const chunks: Buffer[] = [];
        let kept = 0;
        res.on('data', (c: Buffer) => {
          // an error body is small; never hold more than 64 KiB of whatever comes back
          if (kept < 64 * 1024) {
            chunks.push(c);
            kept += c.length;
          }
        });
        res.on('end', () => {
          const ok = status >= 200 && status < 300;
          const result: PutResult = { status, ok };
          const etag = headerValue(res.headers.etag);
          if (ok && etag !== undefined) result.etag = etag;
          if (!ok) {
            result.code = errorCodeFromBody(status, Buffer.concat(chunks).toString('utf8'));
            const ra = parseRetryAfter(headerValue(res.headers['retry-after']), this.clock.now());
            if (ra !== undefined) result.retryAfterSec = ra;
            // a refusal can come before the body was sent: stop sending it
            if (!req.writableFinished) req.destroy();
          }
          settle(() => resolve(result));
        });
        res.on('error', (err) => settle(() => reject(new CloudError(status, CLIENT_CODES.NETWORK_ERROR, networkMessage(err)))));
      });
      req.on('error', (err) => {
        // after a refusal the server may reset the connection while the body
        // is still going out; the response (if any) settles the call
        setImmediate(() => {
          const code = (err as NodeJS.ErrnoException).syscall === 'read' ? CLIENT_CODES.FILE_UNREADABLE : CLIENT_CODES.NETWORK_ERROR;
          settle(() => reject(new CloudError(0, code, networkMessage(err))));
        });
      });
      sendBody(req, fh, range, this.uploadCap).catch((err: unknown) => {
        // a read error is reported through req's 'error' (its syscall is 'read');
        // a write error already is
        if (!req.destroyed) req.destroy(err as Error);
      });
    });
  }
}

/** Without a cap, the body goes out in 1 MiB reads. */
const PUT_CHUNK_BYTES = 1024 * 1024;

/**
 * The PUT buffers, kept between PUTs. Each part of a multipart upload is a PUT
 * of its own: with two fresh 1 MiB buffers per PUT, a 500 MB clip in 16 MiB
 * parts left 60 MiB of dead buffers outside the V8 heap, which a small heap
 * collects late, so the peak RSS grew with the clip (bench/upload, 30 MiB).
 * Free buffers are kept by size, a few of each (two per PUT at the default
 * concurrency of 2, and a spare pair).
 */
const freeBuffers = new Map<number, Buffer[]>();
const FREE_BUFFERS_PER_SIZE = 6;

function takeBuffer(size: number): Buffer {
  return freeBuffers.get(size)?.pop() ?? Buffer.allocUnsafe(size);
}

function giveBuffer(buf: Buffer): void {
  let list = freeBuffers.get(buf.length);
  if (!list) {
    // sizes change only with the cap's rate: forget the old ones
    freeBuffers.clear();
    list = [];
    freeBuffers.set(buf.length, list);
  }
  if (list.length < FREE_BUFFERS_PER_SIZE) list.push(buf);
}

/**
 * Streams a byte range of the file into the request through two buffers that
 * are reused for the whole upload: a buffer is read into again only once its
 * last write has left for the socket (the write callback). createReadStream
 * allocated a fresh 256 KiB buffer per read, and the garbage that made was 40% of
 * the agent's upload CPU and a peak RSS that grew with the clip (bench/upload).
 * Memory is two chunks whatever the size; waiting on the writes is the
 * backpressure. With a cap, chunks shrink to the bucket's slice so that no wait
 * is long enough to look like a stalled upload. The buffers go back to the
 * pool only when the body has been written in full: after a failure, a write
 * may still hold one.
 */
async function sendBody(req: http.ClientRequest, fh: FileHandle, range: { start: number; end?: number }, cap: TokenBucket | undefined): Promise<void> {
  const end = range.end ?? (await fh.stat()).size - 1;
  const chunk = cap ? sliceBytes(cap) : PUT_CHUNK_BYTES;
  const bufs = [takeBuffer(chunk), takeBuffer(chunk)];
  const written: (Promise<void> | undefined)[] = [undefined, undefined];
  let pos = range.start;
  for (let i = 0; pos <= end; i++) {
    const slot = i % 2;
    await written[slot];
    if (req.destroyed) return;
    const buf = bufs[slot] as Buffer;
    const { bytesRead } = await fh.read(buf, 0, Math.min(chunk, end - pos + 1), pos);
    if (bytesRead === 0) throw Object.assign(new Error('the clip file ended early'), { syscall: 'read' });
    pos += bytesRead;
    if (cap) {
      const wait = cap.reserve(bytesRead);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      if (req.destroyed) return;
    }
    written[slot] = new Promise<void>((resolve, reject) => {
      req.write(buf.subarray(0, bytesRead), (err) => (err ? reject(err) : resolve()));
    });
  }
  await Promise.all(written);
  for (const buf of bufs) giveBuffer(buf);
  req.end();
}

async function openClipFile(path: string): Promise<FileHandle> {
  try {
    return await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new CloudError(0, CLIENT_CODES.FILE_MISSING, 'the clip file is gone');
    throw new CloudError(0, CLIENT_CODES.FILE_UNREADABLE, `the clip file cannot be opened: ${(err as NodeJS.ErrnoException).code ?? ''}`);
  }
}

function signedLength(headers: Record<string, string>): string | undefined {
  return Object.entries(headers).find(([k]) => k.toLowerCase() === 'content-length')?.[1];
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** An error's message and code, without URLs (a presigned URL's query is a credential). */
function networkMessage(err: unknown): string {
  const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
  const code = e.cause?.code ?? e.code;
  const msg = (e.cause?.message ?? e.message ?? String(err)).replace(/\bhttps?:\/\/\S+/g, '[url]');
  return code ? `${code}: ${msg}` : msg;
}
