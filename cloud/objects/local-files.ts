/**
 * File helpers of the local object store: durable writes, and the streaming
 * receive that counts and hashes a body against what its URL signed.
 */
export { fsyncPath as fsyncDir } from '../../shared/fsync.js';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { CamvaultError } from '../../shared/errors.js';
import { hashFile } from '../../shared/hash.js';

import { MD5_BASE64_RE } from '../../shared/keys.js';
export { MD5_BASE64_RE };

export function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

export async function writeAll(fh: FileHandle, chunk: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < chunk.length) {
    const { bytesWritten } = await fh.write(chunk, offset, chunk.length - offset);
    offset += bytesWritten;
  }
}

export async function writeFileDurably(path: string, text: string): Promise<void> {
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
  const fh = await open(tmp, 'w', 0o640);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
}

/** mkdir -p and create; retried because a concurrent delete may prune the folder in between */
export async function createInFolder(file: string): Promise<FileHandle> {
  for (let attempt = 0; ; attempt++) {
    await mkdir(dirname(file), { recursive: true });
    try {
      return await open(file, 'wx', 0o640);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 3) throw err;
    }
  }
}

export interface Expected {
  contentLength: number;
  /** base64 */
  contentMd5: string;
}

/**
 * Writes a body into an open file while counting and hashing it; throws
 * CONTENT_LENGTH_MISMATCH as soon as it runs past the signed length, and
 * CONTENT_MD5_MISMATCH at the end if the digest differs. Returns the MD5.
 */
export async function receiveBody(fh: FileHandle, body: AsyncIterable<Uint8Array>, expected: Expected): Promise<Buffer> {
  const md5 = createHash('md5');
  let received = 0;
  for await (const chunk of body) {
    received += chunk.length;
    if (received > expected.contentLength) throw new CamvaultError('CONTENT_LENGTH_MISMATCH');
    md5.update(chunk);
    await writeAll(fh, chunk);
  }
  if (received !== expected.contentLength) throw new CamvaultError('CONTENT_LENGTH_MISMATCH');
  const digest = md5.digest();
  if (digest.toString('base64') !== expected.contentMd5) throw new CamvaultError('CONTENT_MD5_MISMATCH');
  return digest;
}

/**
 * The sidecar beside a stored file: "<inode> <size> <base64 md5 | -> [<etag>]",
 * written just before the file is renamed into place (rename keeps the inode),
 * and trusted only while the file's inode and size still match. Sidecars of
 * single PUTs written before multipart existed have no etag field: theirs is
 * the hex MD5.
 */
export interface Sidecar {
  md5: string | null;
  etag: string;
}

export function sidecarText(ino: number, size: number, s: Sidecar): string {
  return `${ino} ${size} ${s.md5 ?? '-'} ${s.etag}\n`;
}

/** What a file's sidecar says, or, when there is none that matches this very file, its MD5 computed now. */
export async function readSidecar(sidecarPath: string, filePath: string, ino: number, size: number): Promise<Sidecar> {
  try {
    const [sIno, sSize, md5, etag] = (await readFile(sidecarPath, 'utf8')).trim().split(' ');
    if (Number(sIno) === ino && Number(sSize) === size) {
      if (md5 !== undefined && MD5_BASE64_RE.test(md5)) {
        return { md5, etag: etag ?? Buffer.from(md5, 'base64').toString('hex') };
      }
      if (md5 === '-' && etag !== undefined && /^[0-9a-f]{32}-\d{1,5}$/.test(etag)) return { md5: null, etag };
    }
  } catch (err) {
    if (!isMissing(err)) throw err;
  }
  // placed by hand, or a crash between the sidecar and the rename: hash it
  const digest = await hashFile(filePath);
  return { md5: digest.md5, etag: Buffer.from(digest.md5, 'base64').toString('hex') };
}
