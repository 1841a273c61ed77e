import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';

export interface FileDigest {
  size: number;
  /** base64, as Content-MD5 wants it */
  md5: string;
  /** hex */
  sha256: string;
}

export interface FileDigestWithParts extends FileDigest {
  partBytes: number;
  /** base64 MD5 of each `partBytes` slice of the file, in order (the last may be shorter) */
  partMd5s: string[];
}

export interface HashFileOptions {
  /** also hash each slice of this many bytes, for a multipart upload */
  partBytes?: number;
}

/**
 * MD5 and SHA-256 of a file in one streaming pass, and with `partBytes` the MD5
 * of each part too, in the same pass: the file is read once, and memory stays
 * flat whatever its size.
 */
export async function hashFile(path: string): Promise<FileDigest>;
export async function hashFile(path: string, opts: { partBytes: number }): Promise<FileDigestWithParts>;
export async function hashFile(path: string, opts: HashFileOptions = {}): Promise<FileDigest | FileDigestWithParts> {
  const partBytes = opts.partBytes;
  if (partBytes !== undefined && (!Number.isSafeInteger(partBytes) || partBytes < 1)) {
    throw new RangeError('partBytes must be a positive integer');
  }
  const md5 = createHash('md5');
  const sha = createHash('sha256');
  const partMd5s: string[] = [];
  let part: Hash | undefined;
  let inPart = 0;
  let size = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 256 * 1024 })) {
    const buf = chunk as Buffer;
    md5.update(buf);
    sha.update(buf);
    size += buf.length;
    if (partBytes === undefined) continue;
    // a chunk may straddle part boundaries: feed each part its own slice
    let at = 0;
    while (at < buf.length) {
      part ??= createHash('md5');
      const take = Math.min(partBytes - inPart, buf.length - at);
      part.update(buf.subarray(at, at + take));
      inPart += take;
      at += take;
      if (inPart === partBytes) {
        partMd5s.push(part.digest('base64'));
        part = undefined;
        inPart = 0;
      }
    }
  }
  const digest: FileDigest = { size, md5: md5.digest('base64'), sha256: sha.digest('hex') };
  if (partBytes === undefined) return digest;
  if (part) partMd5s.push(part.digest('base64'));
  return { ...digest, partBytes, partMd5s };
}
