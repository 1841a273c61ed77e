import { randomBytes } from 'node:crypto';
import type { Journal } from '../journal/journal.js';
import { decryptPassword, encryptPassword } from './crypto.js';
import { deleteEmailKey, loadOrCreateEmailKey, readEmailKey } from './key-file.js';
import { checkPassword, EmailSettingsSchema, EmailSettingsError, type EmailSettings } from './settings.js';

/**
 * The email settings in the journal: the settings as JSON, the password as
 * AES-256-GCM ciphertext under `<dataDir>/email.key`. Nothing here logs, and
 * no error message holds a setting's value.
 */

/** Stores validated settings and the password, encrypted, replacing any earlier ones. */
export function saveEmailSettings(journal: Journal, dataDir: string, settings: EmailSettings, password: string): void {
  checkPassword(password);
  const key = loadOrCreateEmailKey(dataDir);
  try {
    const id = randomBytes(16).toString('hex');
    journal.putEmailSettings({ id, settings: JSON.stringify(settings), password: encryptPassword(key, password, id) });
  } finally {
    key.fill(0);
  }
}

function parseStored(text: string): EmailSettings {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new EmailSettingsError('the stored email settings are not JSON: run email set again');
  }
  const r = EmailSettingsSchema.safeParse(value);
  if (!r.success) throw new EmailSettingsError('the stored email settings do not validate: run email set again');
  return r.data;
}

/** The settings without the password (status, the rate limit), or undefined when email alerts are off. */
export function loadEmailSettings(journal: Journal): EmailSettings | undefined {
  const row = journal.getEmailSettings();
  return row ? parseStored(row.settings) : undefined;
}

export interface EmailCredentials {
  settings: EmailSettings;
  password: string;
}

/**
 * The settings and the decrypted password, for the moment a mail is sent;
 * undefined when email alerts are off. Throws EmailKeyError or
 * EmailCryptoError (one line each) when the key is missing, unsafe or wrong.
 */
export function loadEmailCredentials(journal: Journal, dataDir: string): EmailCredentials | undefined {
  const row = journal.getEmailSettings();
  if (!row) return undefined;
  const settings = parseStored(row.settings);
  const key = readEmailKey(dataDir);
  try {
    return { settings, password: decryptPassword(key, row.password, row.id) };
  } finally {
    key.fill(0);
  }
}

export interface EraseReport {
  /** a settings row was there and is gone */
  erased: boolean;
  /** the WAL was checkpointed and truncated (false: a reader held it; it goes at the next checkpoint) */
  checkpointed: boolean;
  /** the key file was there and is gone */
  keyDeleted: boolean;
}

/**
 * `email disable`: the row goes under secure_delete, the WAL is truncated
 * (Journal.eraseEmailSettings), then the key file is deleted, so that any
 * copy of the old ciphertext anywhere (a backup, a flash block) cannot be
 * decrypted. Nothing else in the journal is touched: clips, credentials and
 * the rate limit's times stay.
 */
export function eraseEmailSettings(journal: Journal, dataDir: string): EraseReport {
  const { erased, checkpointed } = journal.eraseEmailSettings();
  const keyDeleted = deleteEmailKey(dataDir);
  return { erased, checkpointed, keyDeleted };
}
