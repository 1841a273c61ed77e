/**
 * Multipart uploads of the local object store, with S3's rules (AWS
 * CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
 * AbortMultipartUpload, ListParts, ListMultipartUploads), so that what works
 * against the embedded store works against S3 and Ceph RGW.
 *
 * An upload lives outside the key space (no key segment starts with '.'):
 *   <root>/.multipart/<uploadId>/upload.json     {"key", "contentType", "initiatedAt"}
 *   <root>/.multipart/<uploadId>/part-00001      a stored part, renamed into place once complete
 *   <root>/.multipart/<uploadId>/part-00001.md5  its sidecar (local-files.ts), written just before
 *   <root>/.multipart/<uploadId>/part-00001.<hex>.tmp  a part arriving
 * The uploadId is 32 random hex digits and validated before it names a folder.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Clock } from '../../shared/clock.js';
import { CamvaultError } from '../../shared/errors.js';
import { MAX_PARTS, MIN_PART_BYTES, normalizeEtag } from '../../shared/multipart.js';
import {
  createInFolder,
  fsyncDir,
  isMissing,
  readSidecar,
  receiveBody,
  sidecarText,
  writeAll,
  writeFileDurably,
} from './local-files.js';
import type { CompletedPart, OpenMultipartUpload, StoredPart } from './types.js';

const UPLOAD_ID_RE = /^[0-9a-f]{32}$/;
const PART_FILE_RE = /^part-(\d{5})$/;

export interface SignedPart {
  uploadId: string;
  partNumber: number;
  contentLength: number;
  /** base64 */
  contentMd5: string;
}

interface UploadInfo {
  key: string;
  contentType: string;
  initiatedAt: number;
}

export interface LocalMultipartOptions {
  root: string;
  clock: Clock;
  /** the object file of a key (validates the key) */
  pathOf: (key: string) => string;
  md5PathOf: (path: string) => string;
  pruneEmptyDirs: (dir: string) => Promise<void>;
}

function noSuchUpload(): CamvaultError {
  return new CamvaultError('MULTIPART_UPLOAD_NOT_FOUND');
}

function partFile(partNumber: number): string {
  return `part-${String(partNumber).padStart(5, '0')}`;
}

export class LocalMultipart {
  private readonly base: string;

  constructor(private readonly opts: LocalMultipartOptions) {
    this.base = join(opts.root, '.multipart');
  }

  static isUploadId(id: string): boolean {
    return UPLOAD_ID_RE.test(id);
  }

  static checkUploadId(id: string): void {
    if (!UPLOAD_ID_RE.test(id)) throw new CamvaultError('BAD_REQUEST', 'invalid upload id');
  }

  static checkPartNumber(n: number): void {
    if (!Number.isInteger(n) || n < 1 || n > MAX_PARTS) throw new CamvaultError('BAD_REQUEST', 'a part number is 1 to 10000');
  }

  private dirOf(uploadId: string): string {
    if (!UPLOAD_ID_RE.test(uploadId)) throw noSuchUpload();
    return join(this.base, uploadId);
  }

  /** The upload's record; MULTIPART_UPLOAD_NOT_FOUND when there is none for this key (as S3 answers NoSuchUpload). */
  private async info(key: string, uploadId: string): Promise<UploadInfo> {
    this.opts.pathOf(key);
    let info: UploadInfo;
    try {
      info = JSON.parse(await readFile(join(this.dirOf(uploadId), 'upload.json'), 'utf8')) as UploadInfo;
    } catch (err) {
      if (isMissing(err) || err instanceof SyntaxError) throw noSuchUpload();
      throw err;
    }
    if (info.key !== key) throw noSuchUpload();
    return info;
  }

  async create(key: string, contentType: string): Promise<string> {
    this.opts.pathOf(key);
    const uploadId = randomBytes(16).toString('hex');
    const dir = join(this.base, uploadId);
    await mkdir(dir, { recursive: true });
    const info: UploadInfo = { key, contentType, initiatedAt: this.opts.clock.now() };
    await writeFileDurably(join(dir, 'upload.json'), JSON.stringify(info));
    await fsyncDir(dir);
    await fsyncDir(this.base);
    return uploadId;
  }

  async writePart(key: string, body: AsyncIterable<Uint8Array>, signed: SignedPart): Promise<{ md5Hex: string }> {
    await this.info(key, signed.uploadId);
    const dir = this.dirOf(signed.uploadId);
    const name = partFile(signed.partNumber);
    const tmp = join(dir, `${name}.${randomBytes(6).toString('hex')}.tmp`);
    let fh: FileHandle;
    try {
      fh = await createInFolder(tmp);
    } catch (err) {
      if (isMissing(err)) throw noSuchUpload();
      throw err;
    }
    let done = false;
    try {
      const digest = await receiveBody(fh, body, signed);
      await fh.sync();
      const { ino } = await fh.stat();
      await fh.close();
      const sidecar = { md5: signed.contentMd5, etag: digest.toString('hex') };
      await writeFileDurably(join(dir, `${name}.md5`), sidecarText(ino, signed.contentLength, sidecar));
      await rename(tmp, join(dir, name));
      await fsyncDir(dir);
      done = true;
      return { md5Hex: sidecar.etag };
    } catch (err) {
      // aborted (or completed) while the part was arriving: its folder is gone
      if (isMissing(err)) throw noSuchUpload();
      throw err;
    } finally {
      if (!done) {
        await fh.close().catch(() => undefined);
        await rm(tmp, { force: true });
      }
    }
  }

  async listParts(key: string, uploadId: string): Promise<StoredPart[]> {
    await this.info(key, uploadId);
    const dir = this.dirOf(uploadId);
    const parts: StoredPart[] = [];
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (err) {
      if (isMissing(err)) throw noSuchUpload();
      throw err;
    }
    for (const name of names) {
      const m = PART_FILE_RE.exec(name);
      if (!m) continue;
      const part = await this.storedPart(dir, Number(m[1]));
      if (part) parts.push(part);
    }
    return parts.sort((a, b) => a.partNumber - b.partNumber);
  }

  private async storedPart(dir: string, partNumber: number): Promise<StoredPart | null> {
    const path = join(dir, partFile(partNumber));
    try {
      const st = await stat(path);
      const { etag } = await readSidecar(`${path}.md5`, path, st.ino, st.size);
      return { partNumber, etag, size: st.size };
    } catch (err) {
      if (isMissing(err)) return null;
      throw err;
    }
  }

  /**
   * Checks the listed parts like S3 does (ascending part numbers, each stored
   * with the listed ETag, all but the last at least 5 MiB), then streams them
   * in order into a temp file beside the object, fsyncs it, writes its sidecar
   * with the multipart ETag, renames it over the key and removes the upload.
   * A reader never sees half an object, and memory stays flat.
   */
  async complete(key: string, uploadId: string, listed: CompletedPart[]): Promise<string> {
    await this.info(key, uploadId);
    const dir = this.dirOf(uploadId);
    if (listed.length === 0) throw new CamvaultError('MULTIPART_PART_INVALID', 'the part list is empty');
    const parts: StoredPart[] = [];
    let previous = 0;
    for (const [i, p] of listed.entries()) {
      if (!Number.isInteger(p.partNumber) || p.partNumber <= previous || p.partNumber > MAX_PARTS) {
        throw new CamvaultError('MULTIPART_PART_INVALID', 'part numbers must ascend, 1 to 10000');
      }
      previous = p.partNumber;
      const stored = await this.storedPart(dir, p.partNumber);
      if (!stored) throw new CamvaultError('MULTIPART_PART_INVALID', `part ${p.partNumber} is not stored`);
      if (stored.etag !== normalizeEtag(p.etag)) {
        throw new CamvaultError('MULTIPART_PART_INVALID', `part ${p.partNumber} is stored with another ETag`);
      }
      if (i < listed.length - 1 && stored.size < MIN_PART_BYTES) {
        throw new CamvaultError('MULTIPART_PART_INVALID', `part ${p.partNumber} is smaller than 5 MiB and not the last`);
      }
      parts.push(stored);
    }

    const target = this.opts.pathOf(key);
    const targetDir = dirname(target);
    const tmp = join(targetDir, `.${basename(target)}.${randomBytes(6).toString('hex')}.tmp`);
    const fh = await createInFolder(tmp);
    let done = false;
    try {
      const etagHash = createHash('md5');
      let size = 0;
      for (const part of parts) {
        const path = join(dir, partFile(part.partNumber));
        let read = 0;
        for await (const chunk of createReadStream(path, { highWaterMark: 256 * 1024 })) {
          await writeAll(fh, chunk as Buffer);
          read += (chunk as Buffer).length;
        }
        // a part replaced between the check and the copy would not match its ETag
        if (read !== part.size) throw new CamvaultError('MULTIPART_PART_INVALID', `part ${part.partNumber} changed while completing`);
        etagHash.update(Buffer.from(part.etag, 'hex'));
        size += read;
      }
      const etag = `${etagHash.digest('hex')}-${parts.length}`;
      await fh.sync();
      const { ino } = await fh.stat();
      await fh.close();
      await writeFileDurably(this.opts.md5PathOf(target), sidecarText(ino, size, { md5: null, etag }));
      await rename(tmp, target);
      await fsyncDir(targetDir);
      done = true;
      // the object is in place: a crash before this leaves an upload the orphan sweep aborts
      await rm(dir, { recursive: true, force: true });
      return etag;
    } catch (err) {
      if (isMissing(err) && !done) throw noSuchUpload();
      throw err;
    } finally {
      if (!done) {
        await fh.close().catch(() => undefined);
        await rm(tmp, { force: true });
        await this.opts.pruneEmptyDirs(targetDir);
      }
    }
  }

  /** An unknown upload, or one for another key, counts as aborted (and is left alone). */
  async abort(key: string, uploadId: string): Promise<void> {
    try {
      await this.info(key, uploadId);
    } catch (err) {
      if (err instanceof CamvaultError && err.code === 'MULTIPART_UPLOAD_NOT_FOUND') return;
      throw err;
    }
    await rm(this.dirOf(uploadId), { recursive: true, force: true });
  }

  async listUploads(prefix: string): Promise<OpenMultipartUpload[]> {
    let ids: string[];
    try {
      ids = await readdir(this.base);
    } catch (err) {
      if (isMissing(err)) return [];
      throw err;
    }
    const out: OpenMultipartUpload[] = [];
    for (const uploadId of ids) {
      if (!UPLOAD_ID_RE.test(uploadId)) continue;
      try {
        const info = JSON.parse(await readFile(join(this.base, uploadId, 'upload.json'), 'utf8')) as UploadInfo;
        if (typeof info.key === 'string' && info.key.startsWith(prefix)) {
          out.push({ key: info.key, uploadId, initiatedAt: info.initiatedAt });
        }
      } catch (err) {
        // completed or aborted while listing, or a create cut short before its record
        if (!isMissing(err) && !(err instanceof SyntaxError)) throw err;
      }
    }
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.initiatedAt - b.initiatedAt));
  }
}
