import { open } from 'node:fs/promises';

/**
 * fsync a file or a folder. On Linux fsync works on a read-only descriptor,
 * for files and folders alike; a new directory entry (a rename, a new
 * segment) is durable only once its folder is synced too.
 */
export async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
