import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, rmdir, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { CamvaultError } from '../../shared/errors.js';
import { DOWNLOAD_NAME_RE, isObjectKey, isObjectPrefix } from '../../shared/keys.js';
import { MAX_PART_BYTES } from '../../shared/multipart.js';
import { systemClock, type Clock } from '../../shared/clock.js';
import {
  MD5_BASE64_RE,
  createInFolder,
  fsyncDir,
  isMissing,
  readSidecar,
  receiveBody,
  sidecarText,
  writeFileDurably,
} from './local-files.js';
import { LocalMultipart, type SignedPart } from './local-multipart.js';
import { QUERY, signGet, signPart, signPut, signaturesEqual } from './local-signing.js';
import type {
  CompletedPart,
  CreateMultipartOptions,
  DeleteResult,
  ListResult,
  ObjectHead,
  ObjectStore,
  OpenMultipartUpload,
  PresignGetOptions,
  PresignPartOptions,
  PresignPutOptions,
  PresignedRequest,
  StoredPart,
} from './types.js';

export { localObjectRoutes } from './local-routes.js';

/** what a download name may hold: it goes into a header */
const MAX_EXPIRES_SEC = 7 * 24 * 3600;
const DELETE_BATCH = 1000;

export interface LocalObjectStoreOptions {
  /** the folder objects live under: <dataDir>/objects */
  root: string;
  /** HMAC key of the signed URLs */
  secret: string;
  /** the server's base URL; known only after listen, hence a function */
  publicUrl: () => string;
  clock?: Clock;
}

export interface SignedPut {
  contentLength: number;
  contentMd5: string;
}

export interface ReadableObject {
  handle: FileHandle;
  size: number;
}

function badKey(): CamvaultError {
  return new CamvaultError('BAD_REQUEST', 'invalid object key');
}

/**
 * The `local` object store: files under <root>/<key>, reached through URLs the
 * cloud signs itself with the same contract as S3 presigning (DESIGN.md,
 * "Object store contract"). The HTTP side is localObjectRoutes.
 *
 * Files beside an object, all with names no key can have (keys never start a
 * segment with '.'):
 *   .<name>.md5        "<inode> <size> <base64 md5 | -> <etag>", written just before the object
 *                      appears; trusted only while the object's inode and size still match
 *   .<name>.<hex>.tmp  an upload in progress; renamed into place only once complete
 * and, outside the key space, <root>/.multipart/<uploadId>/ for multipart
 * uploads in progress (local-multipart.ts).
 */
export class LocalObjectStore implements ObjectStore {
  readonly driver = 'local' as const;
  private readonly root: string;
  private readonly secret: string;
  private readonly publicUrl: () => string;
  private readonly clock: Clock;
  private readonly multipart: LocalMultipart;
  private closed = false;

  constructor(opts: LocalObjectStoreOptions) {
    this.root = resolve(opts.root);
    this.secret = opts.secret;
    this.publicUrl = opts.publicUrl;
    this.clock = opts.clock ?? systemClock;
    this.multipart = new LocalMultipart({
      root: this.root,
      clock: this.clock,
      pathOf: (key) => this.pathOf(key),
      md5PathOf: (path) => this.md5PathOf(path),
      pruneEmptyDirs: (dir) => this.pruneEmptyDirs(dir),
    });
  }

  private pathOf(key: string): string {
    if (!isObjectKey(key)) throw badKey();
    const path = join(this.root, ...key.split('/'));
    // isObjectKey already forbids '..'; this is the belt to its braces
    if (!path.startsWith(this.root + sep)) throw badKey();
    return path;
  }

  private md5PathOf(path: string): string {
    return join(dirname(path), `.${basename(path)}.md5`);
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('the object store is closed');
  }

  private expiresFor(expiresInSec: number): number {
    if (!Number.isInteger(expiresInSec) || expiresInSec < 1 || expiresInSec > MAX_EXPIRES_SEC) {
      throw new CamvaultError('BAD_REQUEST', 'expiresInSec must be 1 s to 7 days');
    }
    return Math.floor(this.clock.now() / 1000) + expiresInSec;
  }

  private urlOf(key: string, params: Record<string, string>): string {
    const base = this.publicUrl().replace(/\/+$/, '');
    return `${base}/objects/${key}?${new URLSearchParams(params).toString()}`;
  }

  async presignPut(key: string, opts: PresignPutOptions): Promise<PresignedRequest> {
    this.assertOpen();
    this.pathOf(key);
    if (!Number.isSafeInteger(opts.contentLength) || opts.contentLength < 0) {
      throw new CamvaultError('BAD_REQUEST', 'contentLength must be a non-negative integer');
    }
    if (!MD5_BASE64_RE.test(opts.contentMd5)) throw new CamvaultError('BAD_REQUEST', 'contentMd5 must be base64 MD5');
    const expires = this.expiresFor(opts.expiresInSec);
    const claims = { key, contentLength: opts.contentLength, contentMd5: opts.contentMd5, expires };
    const url = this.urlOf(key, {
      [QUERY.expires]: String(expires),
      [QUERY.length]: String(opts.contentLength),
      [QUERY.md5]: opts.contentMd5,
      [QUERY.signature]: signPut(this.secret, claims),
    });
    return {
      method: 'PUT',
      url,
      headers: {
        'Content-Length': String(opts.contentLength),
        'Content-MD5': opts.contentMd5,
        'Content-Type': opts.contentType ?? 'application/octet-stream',
      },
      expiresAt: expires * 1000,
    };
  }

  async presignGet(key: string, opts: PresignGetOptions): Promise<PresignedRequest> {
    this.assertOpen();
    this.pathOf(key);
    if (opts.downloadName !== undefined && !DOWNLOAD_NAME_RE.test(opts.downloadName)) {
      throw new CamvaultError('BAD_REQUEST', 'invalid download name');
    }
    const expires = this.expiresFor(opts.expiresInSec);
    const params: Record<string, string> = { [QUERY.expires]: String(expires) };
    if (opts.downloadName !== undefined) params[QUERY.download] = opts.downloadName;
    params[QUERY.signature] = signGet(this.secret, { key, expires, downloadName: opts.downloadName });
    return { method: 'GET', url: this.urlOf(key, params), headers: {}, expiresAt: expires * 1000 };
  }

  async presignUploadPart(key: string, uploadId: string, partNumber: number, opts: PresignPartOptions): Promise<PresignedRequest> {
    this.assertOpen();
    this.pathOf(key);
    LocalMultipart.checkUploadId(uploadId);
    LocalMultipart.checkPartNumber(partNumber);
    if (!Number.isSafeInteger(opts.contentLength) || opts.contentLength < 1 || opts.contentLength > MAX_PART_BYTES) {
      throw new CamvaultError('BAD_REQUEST', 'a part is 1 byte to 5 GiB');
    }
    if (!MD5_BASE64_RE.test(opts.contentMd5)) throw new CamvaultError('BAD_REQUEST', 'contentMd5 must be base64 MD5');
    const expires = this.expiresFor(opts.expiresInSec);
    const claims = { key, uploadId, partNumber, contentLength: opts.contentLength, contentMd5: opts.contentMd5, expires };
    // the S3 names, so a URL reads the same whichever driver made it
    const url = this.urlOf(key, {
      [QUERY.uploadId]: uploadId,
      [QUERY.partNumber]: String(partNumber),
      [QUERY.expires]: String(expires),
      [QUERY.length]: String(opts.contentLength),
      [QUERY.md5]: opts.contentMd5,
      [QUERY.signature]: signPart(this.secret, claims),
    });
    return {
      method: 'PUT',
      url,
      headers: { 'Content-Length': String(opts.contentLength), 'Content-MD5': opts.contentMd5 },
      expiresAt: expires * 1000,
    };
  }

  /** Signature first, then expiry: an expired URL must also be a genuine one to say so. */
  private checkExpiry(expires: number): void {
    if (this.clock.now() > expires * 1000) throw new CamvaultError('URL_EXPIRED');
  }

  /** Checks a PUT URL; returns what was signed into it. */
  verifyPut(key: string, query: URLSearchParams): SignedPut {
    this.pathOf(key);
    const expires = Number(query.get(QUERY.expires));
    const lengthRaw = query.get(QUERY.length) ?? '';
    const contentMd5 = query.get(QUERY.md5) ?? '';
    const signature = query.get(QUERY.signature) ?? '';
    if (!Number.isSafeInteger(expires) || !/^\d{1,16}$/.test(lengthRaw) || !MD5_BASE64_RE.test(contentMd5)) {
      throw new CamvaultError('URL_SIGNATURE_INVALID');
    }
    const contentLength = Number(lengthRaw);
    const expected = signPut(this.secret, { key, contentLength, contentMd5, expires });
    if (!signaturesEqual(expected, signature)) throw new CamvaultError('URL_SIGNATURE_INVALID');
    this.checkExpiry(expires);
    return { contentLength, contentMd5 };
  }

  /** Checks a part's PUT URL; returns what was signed into it. */
  verifyPartPut(key: string, query: URLSearchParams): SignedPart {
    this.pathOf(key);
    const uploadId = query.get(QUERY.uploadId) ?? '';
    const partRaw = query.get(QUERY.partNumber) ?? '';
    const expires = Number(query.get(QUERY.expires));
    const lengthRaw = query.get(QUERY.length) ?? '';
    const contentMd5 = query.get(QUERY.md5) ?? '';
    const signature = query.get(QUERY.signature) ?? '';
    if (
      !LocalMultipart.isUploadId(uploadId) ||
      !/^[1-9]\d{0,4}$/.test(partRaw) ||
      !Number.isSafeInteger(expires) ||
      !/^\d{1,16}$/.test(lengthRaw) ||
      !MD5_BASE64_RE.test(contentMd5)
    ) {
      throw new CamvaultError('URL_SIGNATURE_INVALID');
    }
    const partNumber = Number(partRaw);
    const contentLength = Number(lengthRaw);
    const expected = signPart(this.secret, { key, uploadId, partNumber, contentLength, contentMd5, expires });
    if (!signaturesEqual(expected, signature)) throw new CamvaultError('URL_SIGNATURE_INVALID');
    this.checkExpiry(expires);
    return { uploadId, partNumber, contentLength, contentMd5 };
  }

  /** Checks a GET URL; returns the signed download name, if any. */
  verifyGet(key: string, query: URLSearchParams): { downloadName?: string } {
    this.pathOf(key);
    const expires = Number(query.get(QUERY.expires));
    const downloadName = query.get(QUERY.download) ?? undefined;
    const signature = query.get(QUERY.signature) ?? '';
    if (!Number.isSafeInteger(expires)) throw new CamvaultError('URL_SIGNATURE_INVALID');
    if (downloadName !== undefined && !DOWNLOAD_NAME_RE.test(downloadName)) {
      throw new CamvaultError('URL_SIGNATURE_INVALID');
    }
    const expected = signGet(this.secret, { key, expires, downloadName });
    if (!signaturesEqual(expected, signature)) throw new CamvaultError('URL_SIGNATURE_INVALID');
    this.checkExpiry(expires);
    return { downloadName };
  }

  /**
   * Streams a body into place. Bytes go to a temp file in the object's folder
   * while they are counted and hashed; only a body of exactly the signed length
   * and MD5 is fsynced and renamed over the key, so a refused or broken upload
   * leaves nothing behind and a reader never sees half an object.
   */
  async writeObject(key: string, body: AsyncIterable<Uint8Array>, expected: SignedPut): Promise<{ md5Hex: string }> {
    this.assertOpen();
    const path = this.pathOf(key);
    const dir = dirname(path);
    const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
    const fh = await createInFolder(tmp);
    let done = false;
    try {
      const digest = await receiveBody(fh, body, expected);
      await fh.sync();
      const { ino } = await fh.stat();
      await fh.close();
      // rename keeps the inode, so the sidecar names the exact file it describes
      const sidecar = { md5: expected.contentMd5, etag: digest.toString('hex') };
      await writeFileDurably(this.md5PathOf(path), sidecarText(ino, expected.contentLength, sidecar));
      await rename(tmp, path);
      await fsyncDir(dir);
      done = true;
      return { md5Hex: digest.toString('hex') };
    } finally {
      if (!done) {
        await fh.close().catch(() => undefined);
        await rm(tmp, { force: true });
        await this.pruneEmptyDirs(dir);
      }
    }
  }

  /** Streams a part into its upload's folder; same checks and durability as writeObject. */
  async writePart(key: string, body: AsyncIterable<Uint8Array>, signed: SignedPart): Promise<{ md5Hex: string }> {
    this.assertOpen();
    return this.multipart.writePart(key, body, signed);
  }

  /** Opens an object for reading; null when there is none. The handle stays valid if the file is deleted meanwhile. */
  async openForRead(key: string): Promise<ReadableObject | null> {
    this.assertOpen();
    const path = this.pathOf(key);
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (err) {
      if (isMissing(err)) return null;
      throw err;
    }
    const st = await handle.stat();
    if (!st.isFile()) {
      await handle.close();
      return null;
    }
    return { handle, size: st.size };
  }

  async head(key: string): Promise<ObjectHead | null> {
    this.assertOpen();
    const path = this.pathOf(key);
    let size: number;
    let ino: number;
    try {
      const st = await stat(path);
      if (!st.isFile()) return null;
      size = st.size;
      ino = st.ino;
    } catch (err) {
      if (isMissing(err)) return null;
      throw err;
    }
    try {
      const { md5, etag } = await readSidecar(this.md5PathOf(path), path, ino, size);
      return { size, md5, etag };
    } catch (err) {
      if (isMissing(err)) return null; // deleted meanwhile
      throw err;
    }
  }

  async createMultipartUpload(key: string, opts: CreateMultipartOptions = {}): Promise<string> {
    this.assertOpen();
    return this.multipart.create(key, opts.contentType ?? 'application/octet-stream');
  }

  async listParts(key: string, uploadId: string): Promise<StoredPart[]> {
    this.assertOpen();
    return this.multipart.listParts(key, uploadId);
  }

  async completeMultipartUpload(key: string, uploadId: string, parts: CompletedPart[]): Promise<{ etag: string }> {
    this.assertOpen();
    const etag = await this.multipart.complete(key, uploadId, parts);
    return { etag };
  }

  async abortMultipartUpload(key: string, uploadId: string): Promise<void> {
    this.assertOpen();
    await this.multipart.abort(key, uploadId);
  }

  async listMultipartUploads(prefix: string): Promise<OpenMultipartUpload[]> {
    this.assertOpen();
    if (!isObjectPrefix(prefix)) {
      throw new CamvaultError('BAD_REQUEST', 'invalid prefix');
    }
    return this.multipart.listUploads(prefix);
  }

  async deleteMany(keys: string[]): Promise<DeleteResult> {
    this.assertOpen();
    const result: DeleteResult = { deleted: [], failed: [] };
    for (let i = 0; i < keys.length; i += DELETE_BATCH) {
      for (const key of keys.slice(i, i + DELETE_BATCH)) {
        if (!isObjectKey(key)) {
          result.failed.push({ key, error: 'invalid object key' });
          continue;
        }
        try {
          const path = this.pathOf(key);
          await rm(path, { force: true });
          await rm(this.md5PathOf(path), { force: true });
          await this.pruneEmptyDirs(dirname(path));
          result.deleted.push(key);
        } catch (err) {
          result.failed.push({ key, error: (err as NodeJS.ErrnoException).code ?? 'delete failed' });
        }
      }
    }
    return result;
  }

  /**
   * Keys under a prefix in byte order, a page at a time. The cursor is the last
   * key of the previous page. This walks the folder on every call: fine for the
   * embedded driver, whose stores are small; S3 does it for real.
   */
  async list(prefix: string, cursor?: string | null, limit = 1000): Promise<ListResult> {
    this.assertOpen();
    if (!isObjectPrefix(prefix)) {
      throw new CamvaultError('BAD_REQUEST', 'invalid prefix');
    }
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new CamvaultError('BAD_REQUEST', 'limit must be 1-1000');
    const after = cursor ? decodeCursor(cursor) : null;
    const folder = prefix.slice(0, prefix.lastIndexOf('/') + 1);
    const keys: string[] = [];
    await this.walk(join(this.root, ...folder.split('/').filter(Boolean)), folder, (key) => {
      if (key.startsWith(prefix) && (after === null || key > after)) keys.push(key);
    });
    keys.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const page = keys.slice(0, limit);
    const objects: ListResult['objects'] = [];
    for (const key of page) {
      try {
        const st = await stat(this.pathOf(key));
        objects.push({ key, size: st.size, lastModified: st.mtimeMs });
      } catch (err) {
        if (!isMissing(err)) throw err; // deleted while listing
      }
    }
    const last = page[page.length - 1];
    return { objects, nextCursor: keys.length > limit && last !== undefined ? encodeCursor(last) : null };
  }

  private async walk(dir: string, keyPrefix: string, visit: (key: string) => void): Promise<void> {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (isMissing(err) || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return;
      throw err;
    }
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue; // temp files and MD5 sidecars
      const key = keyPrefix + entry.name;
      if (entry.isDirectory()) await this.walk(join(dir, entry.name), `${key}/`, visit);
      else if (entry.isFile() && isObjectKey(key)) visit(key);
    }
  }

  /** Removes empty folders from dir up to (not including) the root; a folder in use stays. */
  private async pruneEmptyDirs(dir: string): Promise<void> {
    let current = dir;
    while (current.startsWith(this.root + sep)) {
      try {
        await rmdir(current);
      } catch {
        return; // not empty, or gone: either way, stop
      }
      current = dirname(current);
    }
  }

  async check(): Promise<void> {
    this.assertOpen();
    try {
      await mkdir(this.root, { recursive: true });
      const probe = join(this.root, `.probe.${randomBytes(4).toString('hex')}`);
      await writeFileDurably(probe, 'ok');
      await rm(probe, { force: true });
    } catch (err) {
      throw new Error(`the local object store at ${this.root} is not writable: ${(err as NodeJS.ErrnoException).code ?? err}`, {
        cause: err,
      });
    }
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

function encodeCursor(key: string): string {
  return Buffer.from(key, 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): string {
  const key = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!isObjectKey(key)) throw new CamvaultError('BAD_REQUEST', 'invalid list cursor');
  return key;
}
