import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decryptPassword, EmailCryptoError, encryptPassword, KEY_BYTES } from '../../../agent/email/crypto.js';

const key = randomBytes(KEY_BYTES);
const password = 'Sm7p-Pässwörd with spaces & symbols %2B';

describe('email password encryption (AES-256-GCM, row id as AAD)', () => {
  it('decrypts what it encrypted, with the same key and row id', () => {
    const blob = encryptPassword(key, password, 'row-1');
    expect(decryptPassword(key, blob, 'row-1')).toBe(password);
  });

  it('holds neither the password nor its UTF-8 bytes in the ciphertext', () => {
    const blob = encryptPassword(key, password, 'row-1');
    expect(blob.includes(Buffer.from(password, 'utf8'))).toBe(false);
    expect(blob.toString('latin1')).not.toContain('Sm7p');
    // version, 12-byte IV, 16-byte tag, then as many bytes as the plaintext
    expect(blob.length).toBe(1 + 12 + 16 + Buffer.byteLength(password, 'utf8'));
    expect(blob[0]).toBe(1);
  });

  it('uses a fresh IV every time: the same password twice gives different ciphertexts', () => {
    const a = encryptPassword(key, password, 'row-1');
    const b = encryptPassword(key, password, 'row-1');
    expect(a.equals(b)).toBe(false);
    expect(a.subarray(1, 13).equals(b.subarray(1, 13))).toBe(false);
  });

  it('refuses a ciphertext moved to another row (the AAD differs)', () => {
    const blob = encryptPassword(key, password, 'row-1');
    expect(() => decryptPassword(key, blob, 'row-2')).toThrow(EmailCryptoError);
  });

  it('refuses another key, and says what to do without quoting anything secret', () => {
    const blob = encryptPassword(key, password, 'row-1');
    let err: unknown;
    try {
      decryptPassword(randomBytes(KEY_BYTES), blob, 'row-1');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(EmailCryptoError);
    expect((err as Error).message).toContain('run email set again');
    expect((err as Error).message).not.toContain(password);
  });

  it('refuses a changed byte anywhere: IV, tag or ciphertext', () => {
    const blob = encryptPassword(key, password, 'row-1');
    for (const at of [1, 5, 13, 20, 29, blob.length - 1]) {
      const bad = Buffer.from(blob);
      bad[at] = (bad[at] as number) ^ 0x01;
      expect(() => decryptPassword(key, bad, 'row-1'), `byte ${at}`).toThrow(EmailCryptoError);
    }
  });

  it('refuses a truncated blob, an unknown version and a key of the wrong size', () => {
    const blob = encryptPassword(key, password, 'row-1');
    expect(() => decryptPassword(key, blob.subarray(0, 20), 'row-1')).toThrow(/format/);
    const v2 = Buffer.from(blob);
    v2[0] = 2;
    expect(() => decryptPassword(key, v2, 'row-1')).toThrow(/format/);
    expect(() => encryptPassword(randomBytes(16), password, 'row-1')).toThrow(/32 bytes/);
  });
});
