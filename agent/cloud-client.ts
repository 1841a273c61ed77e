import { readFileSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { rootCertificates } from 'node:tls';
import type { z } from 'zod';
import { systemClock, type Clock } from '../shared/clock.js';
import { ErrorResponse } from '../shared/contracts/common.js';
import { CompleteResponse } from '../shared/contracts/clips.js';
import { ClaimResponse, DeviceConfigResponse, type ClaimRequest } from '../shared/contracts/devices.js';
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
  /**
   * The server's TLS certificate was refused: not issued by a trusted CA
   * (Node's bundled roots, plus caFile), self-signed, expired, or for another
   * host name. No request was sent. Retried with backoff like a network
   * failure: an operator fixes the certificate or the CA file, and uploads
   * resume without a restart of the camera.
   */
  TLS_CERT_INVALID: 'TLS_CERT_INVALID',
} as const;

/**
 * Node's codes for a certificate that failed verification: OpenSSL's X509
 * verify results (as Node names them) and Node's own host name check.
 */
const CERT_ERROR_CODES: ReadonlySet<string> = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_CRL',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECRYPT_CRL_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'CERT_SIGNATURE_FAILURE',
  'CRL_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'CRL_NOT_YET_VALID',
  'CRL_HAS_EXPIRED',
  'ERROR_IN_CERT_NOT_BEFORE_FIELD',
  'ERROR_IN_CERT_NOT_AFTER_FIELD',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'CERT_CHAIN_TOO_LONG',
  'CERT_REVOKED',
  'INVALID_CA',
  'PATH_LENGTH_EXCEEDED',
  'INVALID_PURPOSE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_TLS_CERT_ALTNAME_FORMAT',
]);

/** The verification code of a refused certificate (fetch puts it on the cause), or undefined. */
export function certificateErrorCode(err: unknown): string | undefined {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 4; e = e.cause as typeof e, depth++) {
    if (typeof e.code === 'string' && CERT_ERROR_CODES.has(e.code)) return e.code;
  }
  return undefined;
}

/** A refused certificate as the client reports it: the verification code, the host, never a URL. */
function certificateError(status: number, what: string, certCode: string, err: unknown): CloudError {
  const hint = certCode.includes('ALTNAME') || certCode === 'HOSTNAME_MISMATCH' ? 'the certificate is for another host name' : 'is caFile (CAMVAULT_AGENT_CA_FILE) the CA that issued it?';
  return new CloudError(status, CLIENT_CODES.TLS_CERT_INVALID, `${what}: the server's TLS certificate was refused (${networkMessage(err)}); ${hint}`);
}

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
  /**
   * Make the JSON calls through this fetch instead of node:http(s) (tests).
   * Node's global fetch cannot take caFile: with one, leave this unset.
   */
  fetch?: typeof fetch;
  /**
   * A PEM file of CA certificates trusted for every https call (the JSON API
   * and the PUTs to presigned URLs), in addition to Node's bundled roots.
   */
  caFile?: string;
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
  private readonly fetchFn: typeof fetch | undefined;
  /** keep-alive connections for the JSON calls and the PUTs; the https one carries caFile */
  private readonly httpAgent: http.Agent;
  private readonly httpsAgent: https.Agent;
  private authorization: string | undefined;
  /** shared by every PUT stream of this client (whole clips and parts) */
  private readonly uploadCap: TokenBucket | undefined;

  constructor(opts: CloudClientOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '');
    this.timeoutMs = opts.timeoutMs ?? 15_000;
    this.putIdleTimeoutMs = opts.putIdleTimeoutMs ?? 30_000;
    this.clock = opts.clock ?? systemClock;
    this.fetchFn = opts.fetch;
    // as Node's global agents: keep-alive, an idle socket closed after 5 s
    // (well before fastify's 72 s, so the server never closes one under us)
    const agentOptions = { keepAlive: true, scheduling: 'lifo' as const, timeout: 5000 };
    this.httpAgent = new http.Agent(agentOptions);
    this.httpsAgent = new https.Agent({
      ...agentOptions,
      // `ca` replaces the default trust: give the bundled roots back, so a
      // presigned URL on a public S3 endpoint still verifies
      ...(opts.caFile !== undefined ? { ca: [...rootCertificates, readFileSync(opts.caFile, 'utf8')] } : {}),
    });
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

  /** The owner unbound the device (issue 7): its token is gone; authenticated calls fail from now on. */
  clearDeviceCredentials(): void {
    this.authorization = undefined;
  }

  /** GET /v1/device/config: where the MQTT broker is (issue 7). */
  deviceConfig(opts: CallOptions = {}): Promise<DeviceConfigResponse> {
    return this.call('GET', '/v1/device/config', undefined, DeviceConfigResponse, { ...opts, auth: true });
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
      ({ status, retryAfter, text } = await this.send(method, this.baseUrl + path, headers, body === undefined ? undefined : JSON.stringify(body), signal));
    } catch (err) {
      if (opts.signal?.aborted) throw new CloudError(0, CLIENT_CODES.ABORTED, 'aborted');
      if (timeout.aborted) throw new CloudError(status, CLIENT_CODES.TIMEOUT, `${method} ${path} timed out after ${this.timeoutMs} ms`);
      const certCode = certificateErrorCode(err);
      if (certCode !== undefined) throw certificateError(status, `${method} ${path}`, certCode, err);
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
   * One JSON request and its answer, read whole. Through node:http(s) and this
   * client's agents (so caFile applies), or the fetch given in the options.
   */
  private async send(
    method: string,
    url: string,
    headers: Record<string, string>,
    body: string | undefined,
    signal: AbortSignal,
  ): Promise<{ status: number; retryAfter: string | null; text: string }> {
    if (this.fetchFn) {
      const res = await this.fetchFn(url, { method, headers, body, signal });
      return { status: res.status, retryAfter: res.headers.get('retry-after'), text: await res.text() };
    }
    const target = new URL(url);
    const secure = target.protocol === 'https:';
    const sendHeaders = body === undefined ? headers : { ...headers, 'content-length': String(Buffer.byteLength(body)) };
    return new Promise((resolve, reject) => {
      const req = (secure ? https : http).request(target, {
        method,
        headers: sendHeaders,
        agent: secure ? this.httpsAgent : this.httpAgent,
        signal,
      });
      req.on('error', reject);
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          // a presign answer for 1024 parts is about 1 MB; anything far beyond is not ours
          if (size > MAX_JSON_ANSWER_BYTES) {
            req.destroy(new Error(`the answer is larger than ${MAX_JSON_ANSWER_BYTES} bytes`));
            return;
          }
          chunks.push(c);
        });
        res.on('error', reject);
        res.on('close', () => {
          if (!res.complete) reject(new Error('the connection closed before the answer was complete'));
        });
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            retryAfter: headerValue(res.headers['retry-after']) ?? null,
            text: Buffer.concat(chunks).toString('utf8'),
          }),
        );
      });
      req.end(body);
    });
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
      const req = transport.request(url, { method: 'PUT', headers: presigned.headers, agent: url.protocol === 'https:' ? this.httpsAgent : this.httpAgent });
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
          const certCode = certificateErrorCode(err);
          if (certCode !== undefined) {
            settle(() => reject(certificateError(0, 'PUT', certCode, err)));
            return;
          }
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

/** The most of a JSON answer the client reads. */
const MAX_JSON_ANSWER_BYTES = 16 * 1024 * 1024;

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
