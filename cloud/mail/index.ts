import type { MailSettings } from '../config.js';
import { DevOutbox } from './outbox.js';
import { SmtpMailer } from './smtp.js';
import { MailError, type MailMessage, type Mailer } from './types.js';

export { DevOutbox, type OutboxMail } from './outbox.js';
export { SmtpMailer } from './smtp.js';
export { MailError, type MailMessage, type Mailer } from './types.js';
export { alreadyRegisteredMail, extractCode, passwordResetMail, verificationMail } from './messages.js';

/** The SMTP relay when one is configured, else the development outbox. */
export function createMailer(settings: MailSettings): Mailer {
  return settings.smtpUrl ? new SmtpMailer({ smtpUrl: settings.smtpUrl, from: settings.from }) : new DevOutbox();
}

interface WarnLogger {
  warn(obj: object, msg: string): void;
}

/**
 * Sends after the current request's answer has gone out, and never fails the
 * request: an account route answers the same whether or not it mails anyone,
 * and in about the same time, so the relay's latency and errors must not show
 * in the answer. A failure is logged with its codes only (no address, no
 * code, no credential).
 */
export function sendInBackground(mailer: Mailer, message: MailMessage, log: WarnLogger): void {
  setImmediate(() => {
    mailer.send(message).catch((err: unknown) => {
      const e = err instanceof MailError ? err : new MailError('ESEND');
      log.warn({ mailError: { code: e.code, responseCode: e.responseCode, command: e.command } }, 'mail not sent');
    });
  });
}
