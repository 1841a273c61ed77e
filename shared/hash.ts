import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

export interface FileDigest {
  size: number;
  /** base64, as Content-MD5 wants it */
  md5: string;
  /** hex */
  sha256: string;
}

/** MD5 and SHA-256 of a file in one streaming pass; memory stays flat whatever the size. */
export async function hashFile(path: string): Promise<FileDigest> {
  const md5 = createHash('md5');
  const sha = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 256 * 1024 })) {
    const buf = chunk as Buffer;
    md5.update(buf);
    sha.update(buf);
    size += buf.length;
  }
  return { size, md5: md5.digest('base64'), sha256: sha.digest('hex') };
}
