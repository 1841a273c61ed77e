/**
 * The s3 object-store driver: AWS S3 or any S3-compatible store (tested against
 * Ceph RGW 16 from Debian, started by scripts/rgw-start.sh).
 *
 * Presigned PUTs sign Content-Length, Content-MD5 and Content-Type into the URL, so
 * the store itself refuses a body of another length or digest (S3 and RGW enforce
 * both; RGW 16 ignores x-amz-checksum-sha256, hence MD5). URLs are made with
 * SignatureV4.presign directly: an order of magnitude faster than getSignedUrl.
 *
 * Multipart uploads: Create, Complete, Abort, ListParts and ListMultipartUploads
 * go through the SDK client; UploadPart URLs are presigned like PUTs, with the
 * part's Content-Length and Content-MD5 signed and partNumber and uploadId in
 * the signed query. S3's own errors become catalogue codes
 * (MULTIPART_UPLOAD_NOT_FOUND, MULTIPART_PART_INVALID) so callers see one
 * vocabulary whichever driver runs.
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectsCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { CamvaultError } from '../../shared/errors.js';
import { DOWNLOAD_NAME_RE, MD5_BASE64_RE, isObjectKey, isObjectPrefix } from '../../shared/keys.js';
import { MAX_PART_BYTES, MAX_PARTS, normalizeEtag } from '../../shared/multipart.js';
import type {
  CompletedPart,
  CreateMultipartOptions,
  DeleteResult,
  ListResult,
  ObjectHead,
  ObjectStore,
  OpenMultipartUpload,
  PresignedRequest,
  PresignGetOptions,
  PresignPartOptions,
  PresignPutOptions,
  StoredPart,
} from './types.js';

export interface S3ObjectStoreOptions {
  /** e.g. http://127.0.0.1:7480; unset means AWS (https://s3.<region>.amazonaws.com) */
  endpoint?: string;
  region: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** path-style URLs (http://host/bucket/key); Ceph RGW without `rgw dns name` needs them */
  forcePathStyle: boolean;
  /**
   * Informational: the cloud's upload route decides single or multipart from
   * its own config (multipartThresholdBytes); the driver serves both. Default 64 MiB.
   */
  multipartThresholdBytes?: number;
}

/** A start-up error of the object store: one line, never a secret. */
export class ObjectStoreError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ObjectStoreError';
  }
}

/** S3's limit for DeleteObjects. */
const DELETE_BATCH = 1000;
const MAX_PRESIGN_SEC = 7 * 24 * 3600;
const DEFAULT_CONTENT_TYPE = 'application/octet-stream';
// the same rules as the local driver, so a key or name that works in development works here
const SINGLE_PART_ETAG = /^"?([0-9a-fA-F]{32})"?$/;
const SHA256_HEADER = 'x-amz-content-sha256';
const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';
const PAYLOAD_HASH_ONLY = new Set([SHA256_HEADER]);

/** RFC 3986 escaping as SigV4 wants it (encodeURIComponent leaves !'()* alone). */
function escapeUri(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function formatQuery(query: Record<string, string | string[] | null>): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(query)) {
    if (v === null) parts.push(escapeUri(k));
    else if (Array.isArray(v)) for (const item of v) parts.push(`${escapeUri(k)}=${escapeUri(item)}`);
    else parts.push(`${escapeUri(k)}=${escapeUri(v)}`);
  }
  return parts.join('&');
}

function checkKey(key: string): void {
  if (!isObjectKey(key)) throw new CamvaultError('BAD_REQUEST', 'invalid object key');
}

function checkPresignedPart(uploadId: string, partNumber: number, opts: PresignPartOptions): void {
  if (!uploadId || uploadId.length > 1024) throw new CamvaultError('BAD_REQUEST', 'invalid upload id');
  if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > MAX_PARTS) {
    throw new CamvaultError('BAD_REQUEST', 'a part number is 1 to 10000');
  }
  if (!Number.isSafeInteger(opts.contentLength) || opts.contentLength < 1 || opts.contentLength > MAX_PART_BYTES) {
    throw new CamvaultError('BAD_REQUEST', 'a part is 1 byte to 5 GiB');
  }
  if (!MD5_BASE64_RE.test(opts.contentMd5)) throw new CamvaultError('BAD_REQUEST', 'contentMd5 must be base64 MD5');
}

/**
 * S3's multipart refusals, as catalogue codes; anything else is rethrown as it
 * is. Ceph RGW 16 answers ListParts on a completed or aborted upload with 404
 * NoSuchKey rather than NoSuchUpload.
 */
function multipartError(err: unknown): never {
  const info = errorInfo(err);
  if (info.name === 'NoSuchUpload' || info.code === 'NoSuchUpload' || info.name === 'NoSuchKey') {
    throw new CamvaultError('MULTIPART_UPLOAD_NOT_FOUND');
  }
  if (['InvalidPart', 'InvalidPartOrder', 'EntityTooSmall'].includes(info.name)) {
    throw new CamvaultError('MULTIPART_PART_INVALID', `the store refused the part list (${info.name})`);
  }
  throw err;
}

function checkExpiry(expiresInSec: number): void {
  if (!Number.isInteger(expiresInSec) || expiresInSec < 1 || expiresInSec > MAX_PRESIGN_SEC) {
    throw new CamvaultError('BAD_REQUEST', 'expiresInSec must be 1 s to 7 days');
  }
}

function errorInfo(err: unknown): { name: string; status: number | undefined; code: string | undefined; message: string } {
  const e = err as {
    name?: unknown;
    code?: unknown;
    message?: unknown;
    $metadata?: { httpStatusCode?: number };
    cause?: { code?: unknown };
  };
  const status = err instanceof S3ServiceException ? err.$metadata.httpStatusCode : e?.$metadata?.httpStatusCode;
  const code =
    typeof e?.code === 'string' ? e.code : typeof e?.cause?.code === 'string' ? (e.cause.code as string) : undefined;
  return {
    name: typeof e?.name === 'string' ? e.name : 'Error',
    status,
    code,
    message: typeof e?.message === 'string' ? e.message : String(err),
  };
}

export class S3ObjectStore implements ObjectStore {
  readonly driver = 's3' as const;
  readonly bucket: string;
  readonly multipartThresholdBytes: number;
  private readonly client: S3Client;
  private readonly signer: SignatureV4;
  /** scheme://host[:port] the URLs point at, and the path before the key */
  private readonly origin: URL;
  private readonly pathPrefix: string;
  private readonly endpointLabel: string;

  constructor(private readonly opts: S3ObjectStoreOptions) {
    if (!opts.bucket) throw new ObjectStoreError('s3 object store: bucket is not set');
    if (!opts.region) throw new ObjectStoreError('s3 object store: region is not set');
    if (!opts.accessKeyId || !opts.secretAccessKey) {
      throw new ObjectStoreError('s3 object store: access key or secret key is not set');
    }
    this.bucket = opts.bucket;
    this.multipartThresholdBytes = opts.multipartThresholdBytes ?? 64 * 1024 * 1024;

    let base: URL;
    try {
      base = new URL(opts.endpoint ?? `https://s3.${opts.region}.amazonaws.com`);
    } catch {
      throw new ObjectStoreError(`s3 object store: endpoint is not a URL: ${opts.endpoint}`);
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:') {
      throw new ObjectStoreError(`s3 object store: endpoint must be http(s): ${opts.endpoint}`);
    }
    if (base.username || base.password) {
      throw new ObjectStoreError('s3 object store: endpoint must not carry credentials');
    }
    this.endpointLabel = base.origin;
    const basePath = base.pathname.replace(/\/+$/, '');
    if (opts.forcePathStyle) {
      this.origin = new URL(base.origin);
      this.pathPrefix = `${basePath}/${escapeUri(opts.bucket)}/`;
    } else {
      this.origin = new URL(base.origin);
      this.origin.hostname = `${opts.bucket}.${base.hostname}`;
      this.pathPrefix = `${basePath}/`;
    }

    const credentials = { accessKeyId: opts.accessKeyId, secretAccessKey: opts.secretAccessKey };
    this.client = new S3Client({
      region: opts.region,
      endpoint: opts.endpoint,
      forcePathStyle: opts.forcePathStyle,
      credentials,
      // the default frames bodies as aws-chunked with trailing checksums, which older
      // S3-compatible servers store or reject
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: { connectionTimeout: 5_000, requestTimeout: 60_000 },
    });
    this.signer = new SignatureV4({
      credentials,
      region: opts.region,
      service: 's3',
      sha256: Hash.bind(null, 'sha256'),
      // S3 signs the path as sent, encoded once (objectPath does it)
      uriEscapePath: false,
      applyChecksum: false,
    });
  }

  /** the path of a key as sent and signed: each segment escaped once */
  private objectPath(key: string): string {
    return this.pathPrefix + key.split('/').map(escapeUri).join('/');
  }

  private async presign(
    method: 'PUT' | 'GET',
    key: string,
    expiresInSec: number,
    signedHeaders: Record<string, string>,
    query: Record<string, string>,
  ): Promise<PresignedRequest> {
    checkKey(key);
    checkExpiry(expiresInSec);
    const nowSec = Math.floor(Date.now() / 1000);
    const request = new HttpRequest({
      method,
      protocol: this.origin.protocol,
      hostname: this.origin.hostname,
      port: this.origin.port ? Number(this.origin.port) : undefined,
      path: this.objectPath(key),
      query: { ...query },
      headers: {
        host: this.origin.host,
        ...signedHeaders,
        // a presigned URL never signs the body: this only sets the payload hash the
        // signer uses; it is neither signed as a header nor hoisted into the URL
        [SHA256_HEADER]: UNSIGNED_PAYLOAD,
      },
    });
    const signed = await this.signer.presign(request, {
      expiresIn: expiresInSec,
      signingDate: new Date(nowSec * 1000),
      unsignableHeaders: PAYLOAD_HASH_ONLY,
      unhoistableHeaders: PAYLOAD_HASH_ONLY,
    });
    const url = `${this.origin.origin}${signed.path}?${formatQuery(signed.query ?? {})}`;
    return { method, url, headers: { ...signedHeaders }, expiresAt: (nowSec + expiresInSec) * 1000 };
  }

  async presignPut(key: string, opts: PresignPutOptions): Promise<PresignedRequest> {
    if (!Number.isSafeInteger(opts.contentLength) || opts.contentLength < 0) {
      throw new CamvaultError('BAD_REQUEST', 'contentLength must be a non-negative integer');
    }
    if (!MD5_BASE64_RE.test(opts.contentMd5)) throw new CamvaultError('BAD_REQUEST', 'contentMd5 must be base64 MD5');
    const contentType = opts.contentType ?? DEFAULT_CONTENT_TYPE;
    if (!/^[\x21-\x7e][\x20-\x7e]*$/.test(contentType)) throw new CamvaultError('BAD_REQUEST', 'invalid content type');
    // lower-case names: these are the headers signed, and the ones the client sends
    const headers = {
      'content-length': String(opts.contentLength),
      'content-md5': opts.contentMd5,
      'content-type': contentType,
    };
    return this.presign('PUT', key, opts.expiresInSec, headers, {});
  }

  async presignGet(key: string, opts: PresignGetOptions): Promise<PresignedRequest> {
    if (opts.downloadName !== undefined && !DOWNLOAD_NAME_RE.test(opts.downloadName)) {
      throw new CamvaultError('BAD_REQUEST', 'invalid download name');
    }
    const query: Record<string, string> = { 'response-content-type': 'video/mp4' };
    if (opts.downloadName !== undefined) {
      query['response-content-disposition'] = `attachment; filename="${opts.downloadName}"`;
    }
    return this.presign('GET', key, opts.expiresInSec, {}, query);
  }

  async head(key: string): Promise<ObjectHead | null> {
    checkKey(key);
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      const m = SINGLE_PART_ETAG.exec(out.ETag ?? '');
      return {
        size: out.ContentLength ?? 0,
        md5: m?.[1] ? Buffer.from(m[1], 'hex').toString('base64') : null,
        etag: out.ETag ? normalizeEtag(out.ETag) : null,
      };
    } catch (err) {
      const info = errorInfo(err);
      if (info.status === 404 || info.name === 'NotFound' || info.name === 'NoSuchKey') return null;
      throw err;
    }
  }

  async deleteMany(keys: string[]): Promise<DeleteResult> {
    const result: DeleteResult = { deleted: [], failed: [] };
    for (let i = 0; i < keys.length; i += DELETE_BATCH) {
      const batch = keys.slice(i, i + DELETE_BATCH);
      try {
        const out = await this.client.send(
          new DeleteObjectsCommand({
            Bucket: this.bucket,
            Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
          }),
        );
        const failed = new Map<string, string>();
        for (const e of out.Errors ?? []) {
          if (e.Key === undefined) continue;
          // a missing key counts as deleted
          if (e.Code === 'NoSuchKey') continue;
          failed.set(e.Key, [e.Code, e.Message].filter(Boolean).join(': ') || 'delete failed');
        }
        for (const key of batch) {
          const error = failed.get(key);
          if (error === undefined) result.deleted.push(key);
          else result.failed.push({ key, error });
        }
      } catch (err) {
        const info = errorInfo(err);
        const error = `DeleteObjects failed: ${info.name}${info.status ? ` (HTTP ${info.status})` : ''}`;
        for (const key of batch) result.failed.push({ key, error });
      }
    }
    return result;
  }

  async list(prefix: string, cursor?: string | null, limit?: number): Promise<ListResult> {
    if (!isObjectPrefix(prefix)) {
      throw new CamvaultError('BAD_REQUEST', 'invalid prefix');
    }
    const maxKeys = limit ?? 1000;
    if (!Number.isInteger(maxKeys) || maxKeys < 1 || maxKeys > 1000) throw new CamvaultError('BAD_REQUEST', 'limit must be 1-1000');
    const out = await this.client.send(
      new ListObjectsV2Command({
        Bucket: this.bucket,
        Prefix: prefix || undefined,
        ContinuationToken: cursor || undefined,
        MaxKeys: maxKeys,
      }),
    );
    return {
      objects: (out.Contents ?? []).flatMap((o) =>
        o.Key === undefined ? [] : [{ key: o.Key, size: o.Size ?? 0, lastModified: o.LastModified?.getTime() ?? 0 }],
      ),
      nextCursor: out.IsTruncated && out.NextContinuationToken ? out.NextContinuationToken : null,
    };
  }

  async createMultipartUpload(key: string, opts: CreateMultipartOptions = {}): Promise<string> {
    checkKey(key);
    const out = await this.client.send(
      new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key, ContentType: opts.contentType ?? DEFAULT_CONTENT_TYPE }),
    );
    if (!out.UploadId) throw new Error('CreateMultipartUpload answered without an UploadId');
    return out.UploadId;
  }

  async presignUploadPart(key: string, uploadId: string, partNumber: number, opts: PresignPartOptions): Promise<PresignedRequest> {
    checkPresignedPart(uploadId, partNumber, opts);
    const headers = { 'content-length': String(opts.contentLength), 'content-md5': opts.contentMd5 };
    return this.presign('PUT', key, opts.expiresInSec, headers, { partNumber: String(partNumber), uploadId });
  }

  async listParts(key: string, uploadId: string): Promise<StoredPart[]> {
    checkKey(key);
    const parts: StoredPart[] = [];
    let marker: string | undefined;
    try {
      for (;;) {
        const out = await this.client.send(
          new ListPartsCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, PartNumberMarker: marker, MaxParts: 1000 }),
        );
        for (const p of out.Parts ?? []) {
          if (p.PartNumber === undefined || p.ETag === undefined) continue;
          parts.push({ partNumber: p.PartNumber, etag: normalizeEtag(p.ETag), size: p.Size ?? 0 });
        }
        if (!out.IsTruncated || !out.NextPartNumberMarker) break;
        marker = out.NextPartNumberMarker;
      }
    } catch (err) {
      multipartError(err);
    }
    return parts.sort((a, b) => a.partNumber - b.partNumber);
  }

  /**
   * Ceph RGW 16 differs from S3 here in three ways, each measured: it accepts
   * a part list out of order (S3: InvalidPartOrder), so the order is checked
   * here; it answers the first, successful, completion with 200 and an empty
   * body, so the ETag then comes from a HEAD; and completing an aborted or
   * unknown upload is a 500 "This multipart completion is already in
   * progress" (S3: 404 NoSuchUpload), so an unexplained failure asks ListParts
   * whether the upload still exists.
   */
  async completeMultipartUpload(key: string, uploadId: string, parts: CompletedPart[]): Promise<{ etag: string }> {
    checkKey(key);
    if (parts.length === 0) throw new CamvaultError('MULTIPART_PART_INVALID', 'the part list is empty');
    for (const [i, p] of parts.entries()) {
      const previous = i === 0 ? 0 : (parts[i - 1] as CompletedPart).partNumber;
      if (!Number.isInteger(p.partNumber) || p.partNumber <= previous || p.partNumber > MAX_PARTS) {
        throw new CamvaultError('MULTIPART_PART_INVALID', 'part numbers must ascend, 1 to 10000');
      }
    }
    let etag: string;
    try {
      const out = await this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: key,
          UploadId: uploadId,
          MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.partNumber, ETag: `"${normalizeEtag(p.etag)}"` })) },
        }),
      );
      etag = normalizeEtag(out.ETag ?? '');
    } catch (err) {
      const info = errorInfo(err);
      const known = ['NoSuchUpload', 'InvalidPart', 'InvalidPartOrder', 'EntityTooSmall'].includes(info.name);
      if (!known) await this.listParts(key, uploadId); // throws MULTIPART_UPLOAD_NOT_FOUND when it is gone
      multipartError(err);
    }
    if (etag === '') etag = (await this.head(key))?.etag ?? '';
    return { etag };
  }

  async abortMultipartUpload(key: string, uploadId: string): Promise<void> {
    checkKey(key);
    try {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }));
    } catch (err) {
      const info = errorInfo(err);
      if (info.name === 'NoSuchUpload' || info.status === 404) return;
      throw err;
    }
  }

  async listMultipartUploads(prefix: string): Promise<OpenMultipartUpload[]> {
    if (!isObjectPrefix(prefix)) {
      throw new CamvaultError('BAD_REQUEST', 'invalid prefix');
    }
    const uploads: OpenMultipartUpload[] = [];
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      const out = await this.client.send(
        new ListMultipartUploadsCommand({
          Bucket: this.bucket,
          Prefix: prefix || undefined,
          KeyMarker: keyMarker,
          UploadIdMarker: uploadIdMarker,
          MaxUploads: 1000,
        }),
      );
      for (const u of out.Uploads ?? []) {
        if (u.Key === undefined || u.UploadId === undefined) continue;
        uploads.push({ key: u.Key, uploadId: u.UploadId, initiatedAt: u.Initiated?.getTime() ?? 0 });
      }
      if (!out.IsTruncated || (!out.NextKeyMarker && !out.NextUploadIdMarker)) break;
      keyMarker = out.NextKeyMarker;
      uploadIdMarker = out.NextUploadIdMarker;
    }
    return uploads;
  }

  async check(): Promise<void> {
    const where = `bucket "${this.bucket}" at ${this.endpointLabel}`;
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (err) {
      const info = errorInfo(err);
      if (info.status === 404 || info.name === 'NotFound' || info.name === 'NoSuchBucket') {
        throw new ObjectStoreError(`s3 object store: ${where} does not exist`);
      }
      if (info.status === 403 || info.status === 401) {
        throw new ObjectStoreError(
          `s3 object store: access to ${where} denied (HTTP ${info.status}): check CAMVAULT_S3_ACCESS_KEY and CAMVAULT_S3_SECRET_KEY`,
        );
      }
      if (info.status === 301 || info.status === 400) {
        throw new ObjectStoreError(
          `s3 object store: ${where} refused the request (HTTP ${info.status}): check CAMVAULT_S3_REGION ("${this.opts.region}") and CAMVAULT_S3_FORCE_PATH_STYLE`,
        );
      }
      if (info.status !== undefined) {
        throw new ObjectStoreError(`s3 object store: ${where} answered HTTP ${info.status} (${info.name})`);
      }
      const reason = info.code ?? info.name;
      throw new ObjectStoreError(`s3 object store: cannot reach ${this.endpointLabel} (${reason}): check CAMVAULT_S3_ENDPOINT`);
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}
