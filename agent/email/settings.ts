import { isIP } from 'node:net';
import { z } from 'zod';

/**
 * The SMTP settings of the device's email alerts (issue 7; DESIGN P4: they
 * live only in the device's SQLite, the password encrypted at rest, and are
 * never sent to the cloud, logged or published). The password is not part of
 * these settings: it is kept apart, encrypted (crypto.ts), and handled only
 * where a mail is sent.
 */
export const EMAIL_SECURITY = ['tls', 'starttls', 'none'] as const;
export type EmailSecurity = (typeof EMAIL_SECURITY)[number];

/** the usual port of each security mode: 465 implicit TLS, 587 submission with STARTTLS, 25 plain */
export const DEFAULT_PORTS: Record<EmailSecurity, number> = { tls: 465, starttls: 587, none: 25 };

export const MAX_RECIPIENTS = 10;
export const DEFAULT_MIN_INTERVAL_MINUTES = 10;

/** Control characters would let a value inject SMTP commands or headers. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f]/;

const EmailAddress = z
  .string()
  .max(254, 'must be at most 254 characters')
  .email('must be an email address')
  .refine((s) => !CONTROL.test(s), 'must not contain control characters');

const Host = z
  .string()
  .min(1, 'must not be empty')
  .max(253, 'must be at most 253 characters')
  .refine((h) => isIP(h) !== 0 || /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(h), 'must be a host name or an IP address');

export const EmailSettingsSchema = z
  .object({
    host: Host,
    port: z.number().int('must be a whole number').min(1, 'must be 1-65535').max(65535, 'must be 1-65535'),
    /** tls: TLS from the first byte (465); starttls: upgrade required (587); none: plain, loopback or development only */
    security: z.enum(EMAIL_SECURITY),
    user: z
      .string()
      .min(1, 'must not be empty')
      .max(256, 'must be at most 256 characters')
      .refine((s) => !CONTROL.test(s), 'must not contain control characters'),
    recipients: z
      .array(EmailAddress)
      .min(1, 'must name at least one address')
      .max(MAX_RECIPIENTS, `must name at most ${MAX_RECIPIENTS} addresses`)
      .refine((a) => new Set(a.map((x) => x.toLowerCase())).size === a.length, 'must not name an address twice'),
    /** the sender; relays often insist it is the account's own address */
    from: EmailAddress,
    /** at most one alert email per camera in this many minutes */
    minIntervalMinutes: z
      .number()
      .int('must be a whole number')
      .min(1, 'must be at least 1')
      .max(1440, 'must be at most 1440 (a day)')
      .default(DEFAULT_MIN_INTERVAL_MINUTES),
  })
  .strict();

export type EmailSettings = z.output<typeof EmailSettingsSchema>;
export type EmailSettingsInput = z.input<typeof EmailSettingsSchema>;

/** The password's bounds: SMTP AUTH carries it in one line. */
export const MAX_PASSWORD_LENGTH = 1024;

/** A setting that does not validate: its message is one line naming the field, never the value. */
export class EmailSettingsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EmailSettingsError';
  }
}

/** localhost, 127.0.0.0/8 and ::1: a plain connection that never leaves the machine */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || h === '0:0:0:0:0:0:0:1';
  return false;
}

/**
 * Validates settings. `development` allows security 'none' to a host that is
 * not loopback; without it, the password would cross a network in clear.
 * Messages name the field and the rule, never the value (it may be the user).
 */
export function parseEmailSettings(input: unknown, opts: { development: boolean }): EmailSettings {
  const result = EmailSettingsSchema.safeParse(input);
  if (!result.success) {
    const issue = result.error.issues[0];
    if (issue?.code === z.ZodIssueCode.unrecognized_keys) {
      throw new EmailSettingsError(`email settings: unknown field ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`);
    }
    const field = issue?.path.join('.') || '(root)';
    const msg = issue?.code === z.ZodIssueCode.invalid_type && issue.received === 'undefined' ? 'is required' : (issue?.message ?? 'is invalid');
    throw new EmailSettingsError(`email settings: ${field}: ${msg}`);
  }
  const s = result.data;
  if (s.security === 'none' && !opts.development && !isLoopbackHost(s.host)) {
    throw new EmailSettingsError(
      'email settings: security: "none" sends the password in clear; it is allowed only to a loopback host (localhost, 127.0.0.1, ::1) or with development: true',
    );
  }
  return s;
}

/** Checks a password read from stdin or the prompt; the message never holds it. */
export function checkPassword(password: string): string {
  if (password.length === 0) throw new EmailSettingsError('the SMTP password is empty');
  if (password.length > MAX_PASSWORD_LENGTH) throw new EmailSettingsError(`the SMTP password is longer than ${MAX_PASSWORD_LENGTH} characters`);
  if (/[\r\n\0]/.test(password)) throw new EmailSettingsError('the SMTP password holds a line break or a NUL character');
  return password;
}
