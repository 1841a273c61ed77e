import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

/**
 * The SMTP password at rest (DESIGN P4): AES-256-GCM under the device-local
 * key (key-file.ts), a fresh random 12-byte IV per encryption, and the
 * settings row's id as additional authenticated data, so a ciphertext moved
 * into another row (or left from an earlier `email set`) does not decrypt.
 *
 * Layout: version (1 byte, 1) | IV (12) | tag (16) | ciphertext.
 */
const VERSION = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;
export const KEY_BYTES = 32;

function aad(rowId: string): Buffer {
  return Buffer.from(`camvault/email-password/v${VERSION}/${rowId}`, 'utf8');
}

export class EmailCryptoError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EmailCryptoError';
  }
}

function checkKey(key: Buffer): void {
  if (key.length !== KEY_BYTES) throw new EmailCryptoError(`the email key must be ${KEY_BYTES} bytes, not ${key.length}`);
}

export function encryptPassword(key: Buffer, password: string, rowId: string): Buffer {
  checkKey(key);
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad(rowId));
  const ct = Buffer.concat([cipher.update(password, 'utf8'), cipher.final()]);
  return Buffer.concat([Buffer.from([VERSION]), iv, cipher.getAuthTag(), ct]);
}

/**
 * Throws EmailCryptoError when the blob is not ours, was changed, belongs to
 * another row, or was made under another key (the key file was replaced): the
 * fix is the same every time, `email set` again.
 */
export function decryptPassword(key: Buffer, blob: Buffer, rowId: string): string {
  checkKey(key);
  if (blob.length < 1 + IV_BYTES + TAG_BYTES || blob[0] !== VERSION) {
    throw new EmailCryptoError('the stored SMTP password is not in a format this agent knows: run email set again');
  }
  const iv = blob.subarray(1, 1 + IV_BYTES);
  const tag = blob.subarray(1 + IV_BYTES, 1 + IV_BYTES + TAG_BYTES);
  const ct = blob.subarray(1 + IV_BYTES + TAG_BYTES);
  const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  decipher.setAAD(aad(rowId));
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([decipher.update(ct), decipher.final()]).toString('utf8');
  } catch {
    throw new EmailCryptoError('the stored SMTP password does not decrypt with the email key file (it was replaced, or the journal was changed): run email set again');
  }
}
