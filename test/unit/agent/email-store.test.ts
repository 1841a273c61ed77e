/**
 * The email settings at rest, with the real file system and SQLite: the key
 * file (0600, atomic, refused when open to others), the password encrypted
 * in the journal, and `email disable` erasing it from every file SQLite
 * keeps: the database, its WAL and the shared-memory index.
 */
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EmailKeyError, emailKeyPath, loadOrCreateEmailKey, readEmailKey } from '../../../agent/email/key-file.js';
import { parseEmailSettings } from '../../../agent/email/settings.js';
import { eraseEmailSettings, loadEmailCredentials, loadEmailSettings, saveEmailSettings } from '../../../agent/email/store.js';
import { Journal, JOURNAL_FILE } from '../../../agent/journal/journal.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'camvault-email-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const settings = parseEmailSettings(
  {
    host: 'smtp.example.net',
    port: 465,
    security: 'tls',
    user: 'smtp-user-7c1e@example.net',
    recipients: ['first.owner@example.org', 'second.owner@example.org'],
    from: 'smtp-user-7c1e@example.net',
  },
  { development: false },
);

/** Every file SQLite keeps for the journal, concatenated (absent ones as nothing). */
function journalBytes(): Buffer {
  const base = join(dir, JOURNAL_FILE);
  return Buffer.concat([base, `${base}-wal`, `${base}-shm`].map((f) => (existsSync(f) ? readFileSync(f) : Buffer.alloc(0))));
}

describe('the email key file', () => {
  it('is made once, 32 random bytes, mode 0600, whatever the umask', () => {
    const old = process.umask(0);
    try {
      const key = loadOrCreateEmailKey(dir);
      expect(key).toHaveLength(32);
      const st = statSync(emailKeyPath(dir));
      expect(st.mode & 0o777).toBe(0o600);
      expect(st.size).toBe(32);
      expect(loadOrCreateEmailKey(dir).equals(key)).toBe(true);
      expect(readEmailKey(dir).equals(key)).toBe(true);
    } finally {
      process.umask(old);
    }
    // no temp file is left behind
    expect(readdirSync(dir).sort()).toEqual(['email.key']);
  });

  it('is refused, in one line, when group or others may read or write it', () => {
    loadOrCreateEmailKey(dir);
    for (const mode of [0o640, 0o604, 0o620, 0o644]) {
      chmodSync(emailKeyPath(dir), mode);
      let err: unknown;
      try {
        readEmailKey(dir);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(EmailKeyError);
      expect((err as Error).message).toBe(
        `the email key file ${emailKeyPath(dir)} is open to group or others (mode 0${mode.toString(8)}); refusing to use it: chmod 600 it`,
      );
      expect((err as Error).message).not.toContain('\n');
      expect(() => loadOrCreateEmailKey(dir)).toThrow(EmailKeyError);
    }
    chmodSync(emailKeyPath(dir), 0o600);
    expect(readEmailKey(dir)).toHaveLength(32);
  });

  it('is refused through a symlink, at the wrong size, and when missing', () => {
    expect(() => readEmailKey(dir)).toThrow(/is missing: run email set again/);
    writeFileSync(join(dir, 'elsewhere'), Buffer.alloc(32), { mode: 0o600 });
    symlinkSync(join(dir, 'elsewhere'), emailKeyPath(dir));
    expect(() => readEmailKey(dir)).toThrow(/symbolic link/);
    rmSync(emailKeyPath(dir));
    writeFileSync(emailKeyPath(dir), Buffer.alloc(31), { mode: 0o600 });
    expect(() => readEmailKey(dir)).toThrow(/not a 32-byte key/);
  });
});

describe('email settings in the journal', () => {
  it('round-trips, with the password encrypted: neither journal file holds it in clear', () => {
    const j = Journal.open(dir);
    try {
      saveEmailSettings(j, dir, settings, 'Pl4in-Text-Pw!');
      expect(loadEmailSettings(j)).toEqual(settings);
      expect(loadEmailCredentials(j, dir)).toEqual({ settings, password: 'Pl4in-Text-Pw!' });
      const row = j.getEmailSettings();
      expect(row?.password.length).toBe(1 + 12 + 16 + 'Pl4in-Text-Pw!'.length);
      expect(journalBytes().includes(Buffer.from('Pl4in-Text-Pw!'))).toBe(false);
      // the ciphertext is there: the search above reads the right files
      expect(journalBytes().includes(row!.password)).toBe(true);
    } finally {
      j.close();
    }
  });

  it('a key file replaced since email set makes the password undecryptable, said in one line', () => {
    const j = Journal.open(dir);
    try {
      saveEmailSettings(j, dir, settings, 'pw-1');
      rmSync(emailKeyPath(dir));
      loadOrCreateEmailKey(dir);
      expect(() => loadEmailCredentials(j, dir)).toThrow(/does not decrypt with the email key file/);
    } finally {
      j.close();
    }
  });

  it('disable erases the settings, the old and current ciphertexts and the key from the database, the WAL and the disk, and nothing else', () => {
    const j = Journal.open(dir);
    const other = Journal.open(dir, { readonly: true });
    try {
      j.addClip({ id: '01JN0000000000000000000001', channel: 'main', path: join(dir, 'a.mp4'), startMs: 1, durationMs: 2, size: 3, md5: 'm', sha256: 's', kind: 'event' });
      j.setCredentials({ serial: 'CAM00000001', deviceToken: 'device-token', mqtt: { username: 'CAM00000001', password: 'mqtt-pw' }, claimedAt: 1 });
      saveEmailSettings(j, dir, settings, 'First-Password-1');
      const first = j.getEmailSettings()!.password;
      // the first row reaches the database file itself, so the second set must overwrite it there
      expect(j.checkpoint()).toBe(true);
      expect(readFileSync(join(dir, JOURNAL_FILE)).includes(first)).toBe(true);
      saveEmailSettings(j, dir, settings, 'Second-Password-2');
      const second = j.getEmailSettings()!.password;
      j.recordEmailAttempt('CAM00000001/main', 1000);
      const key = readFileSync(emailKeyPath(dir));
      expect(journalBytes().includes(second)).toBe(true);
      // a second connection (the running agent's) has read the row: it must not keep the checkpoint from finishing
      expect(other.getEmailSettings()?.password.equals(second)).toBe(true);

      const report = eraseEmailSettings(j, dir);
      expect(report).toEqual({ erased: true, checkpointed: true, keyDeleted: true });
      expect(j.getEmailSettings()).toBeUndefined();
      expect(existsSync(emailKeyPath(dir))).toBe(false);
      expect(statSync(`${join(dir, JOURNAL_FILE)}-wal`).size).toBe(0);

      const bytes = journalBytes();
      for (const secret of [first, second, key, Buffer.from('First-Password-1'), Buffer.from('Second-Password-2'), Buffer.from(settings.user), Buffer.from(settings.host), Buffer.from('first.owner@example.org')]) {
        expect(bytes.includes(secret), `found ${secret.length} bytes that should be gone`).toBe(false);
      }
      // nothing else went
      expect(j.getClip('01JN0000000000000000000001')).toBeDefined();
      expect(j.getCredentials()?.deviceToken).toBe('device-token');
      expect(j.emailSent('CAM00000001/main')?.lastAttemptAt).toBe(1000);
      expect(loadEmailCredentials(j, dir)).toBeUndefined();
      // twice is fine
      expect(eraseEmailSettings(j, dir)).toEqual({ erased: false, checkpointed: true, keyDeleted: false });
    } finally {
      other.close();
      j.close();
    }
  });
});
