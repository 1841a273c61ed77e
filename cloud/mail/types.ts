/**
 * The cloud's own mail: verification and password-reset codes, and notices to
 * an address's owner. Plain text only. A message holds a secret (the code) and
 * an email address, so neither a message nor its recipient is ever logged.
 */
export interface MailMessage {
  to: string;
  subject: string;
  text: string;
}

export interface Mailer {
  /** 'smtp': a relay via nodemailer; 'outbox': the in-memory development outbox */
  readonly kind: 'smtp' | 'outbox';
  /** Rejects with a MailError, whose message holds no address, code or credential. */
  send(message: MailMessage): Promise<void>;
  /** waits a little for messages in flight, then lets go of connections; idempotent */
  close(): Promise<void>;
}

/**
 * A message was not sent. Only the SMTP error code, the reply code and the
 * command travel: a relay's reply text can quote the recipient address.
 */
export class MailError extends Error {
  readonly code: string;
  readonly responseCode?: number;
  readonly command?: string;

  constructor(code: string, responseCode?: number, command?: string) {
    super(`mail not sent: ${code}${responseCode !== undefined ? ` (SMTP ${responseCode})` : ''}`);
    this.name = 'MailError';
    this.code = code;
    this.responseCode = responseCode;
    // AUTH commands are logged by name only: their arguments are credentials
    this.command = command?.split(' ')[0];
  }
}
