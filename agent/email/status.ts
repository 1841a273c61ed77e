import type { Journal } from '../journal/journal.js';
import { loadEmailSettings } from './store.js';

/**
 * What `agent status` says about email alerts: on or off, how many
 * recipients, the interval, the last mail. Not the host, the user or the
 * addresses: status output gets pasted into support tickets.
 */
export interface EmailStatus {
  enabled: boolean;
  recipients: number;
  minIntervalMinutes: number | null;
  lastSentAt: number | null;
  lastAttemptAt: number | null;
  /** 'OK' or the last failure's codes ("EAUTH 535") */
  lastCode: string | null;
  /** the stored settings cannot be read (run email set again) */
  unreadable?: boolean;
}

export function readEmailStatus(journal: Journal): EmailStatus {
  const last = journal.lastEmailSent();
  const base = { lastSentAt: last?.lastSentAt ?? null, lastAttemptAt: last?.lastAttemptAt ?? null, lastCode: last?.lastCode ?? null };
  try {
    const s = loadEmailSettings(journal);
    return s
      ? { enabled: true, recipients: s.recipients.length, minIntervalMinutes: s.minIntervalMinutes, ...base }
      : { enabled: false, recipients: 0, minIntervalMinutes: null, ...base };
  } catch {
    return { enabled: true, recipients: 0, minIntervalMinutes: null, unreadable: true, ...base };
  }
}

/** The one line of `agent status`; `when` formats a time as the rest of the status does. */
export function formatEmailStatus(e: EmailStatus, when: (at: number) => string): string {
  if (!e.enabled) return 'off (npm run agent -- email set)';
  if (e.unreadable) return 'on, but the stored settings cannot be read: run email set again';
  const parts = [`on, to ${e.recipients} recipient${e.recipients === 1 ? '' : 's'}, at most one every ${e.minIntervalMinutes} min`];
  parts.push(e.lastSentAt !== null ? `last sent ${when(e.lastSentAt)}` : 'none sent yet');
  if (e.lastCode && e.lastCode !== 'OK' && e.lastAttemptAt !== null) parts.push(`last attempt failed: ${e.lastCode} at ${when(e.lastAttemptAt)}`);
  return parts.join('; ');
}
