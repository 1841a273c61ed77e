import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  fchmodSync,
  fstatSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { KEY_BYTES } from './crypto.js';

/**
 * The device-local key that encrypts the SMTP password (DESIGN P4):
 * `<dataDir>/email.key`, 32 random bytes, mode 0600, owned by the agent's
 * user. It sits next to the journal, so it does not protect against someone
 * who can read the agent's data directory as its user; it does keep the
 * password out of a copy of the journal alone (a backup, a support bundle, a
 * card image of agent.db), and deleting it at `email disable` makes whatever
 * an SD card's wear levelling kept of old journal pages undecryptable.
 */
export const EMAIL_KEY_FILE = 'email.key';

/** A key file that is missing or unsafe to use: the message is the one line the CLI prints. */
export class EmailKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EmailKeyError';
  }
}

export function emailKeyPath(dataDir: string): string {
  return join(dataDir, EMAIL_KEY_FILE);
}

/**
 * Reads the key, refusing a file that is not a regular file of ours (a
 * symlink is not followed), is open to group or others in any way, or is not
 * 32 bytes. Checked on the open descriptor, so the file checked is the file
 * read.
 */
export function readEmailKey(dataDir: string): Buffer {
  const path = emailKeyPath(dataDir);
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new EmailKeyError(`the email key file ${path} is missing: run email set again`);
    if (code === 'ELOOP') throw new EmailKeyError(`the email key file ${path} is a symbolic link; refusing to use it`);
    throw new EmailKeyError(`the email key file ${path} cannot be read: ${code ?? 'unknown error'}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new EmailKeyError(`the email key file ${path} is not a regular file; refusing to use it`);
    if ((st.mode & 0o077) !== 0) {
      throw new EmailKeyError(
        `the email key file ${path} is open to group or others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}); refusing to use it: chmod 600 it`,
      );
    }
    const uid = process.getuid?.();
    if (uid !== undefined && st.uid !== uid) {
      throw new EmailKeyError(`the email key file ${path} belongs to another user (uid ${st.uid}, the agent runs as ${uid}); refusing to use it`);
    }
    if (st.size !== KEY_BYTES) throw new EmailKeyError(`the email key file ${path} is not a ${KEY_BYTES}-byte key (${st.size} bytes): delete it and run email set again`);
    const key = Buffer.alloc(KEY_BYTES);
    if (readSync(fd, key, 0, KEY_BYTES, 0) !== KEY_BYTES) throw new EmailKeyError(`the email key file ${path} could not be read whole`);
    return key;
  } finally {
    closeSync(fd);
  }
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * The key, made first if there is none. Atomic: the bytes go to a temp file
 * created 0600 (O_EXCL, never through a symlink) and fsynced, then hard-linked
 * to the name, which fails rather than replace a key another process made a
 * moment before; then whichever key won is read back through readEmailKey's
 * checks. A reader never sees a half-written key.
 */
export function loadOrCreateEmailKey(dataDir: string): Buffer {
  const path = emailKeyPath(dataDir);
  try {
    return readEmailKey(dataDir);
  } catch (err) {
    if (!(err instanceof EmailKeyError) || !/is missing/.test(err.message)) throw err;
  }
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    try {
      // the umask can only take bits away; this makes the mode exact whatever it is
      fchmodSync(fd, 0o600);
      const key = randomBytes(KEY_BYTES);
      writeSync(fd, key, 0, KEY_BYTES, 0);
      key.fill(0);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      linkSync(tmp, path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  } finally {
    unlinkSync(tmp);
  }
  fsyncDir(dataDir);
  return readEmailKey(dataDir);
}

/**
 * Deletes the key (at `email disable`): overwritten with zeros and synced
 * first, which on a disk that writes in place removes the bytes themselves;
 * on flash only the unlink counts, and that is what makes every leftover
 * ciphertext useless. Returns false when there was no key.
 */
export function deleteEmailKey(dataDir: string): boolean {
  const path = emailKeyPath(dataDir);
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return false;
    if (code !== 'ELOOP') throw err;
    fd = -1;
  }
  if (fd >= 0) {
    try {
      const st = fstatSync(fd);
      if (st.isFile() && st.size > 0) {
        writeSync(fd, Buffer.alloc(st.size), 0, st.size, 0);
        fsyncSync(fd);
      }
    } finally {
      closeSync(fd);
    }
  }
  unlinkSync(path);
  fsyncDir(dataDir);
  return true;
}
