import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import { createTransport, type Transporter } from 'nodemailer';
import type { EmailCredentials } from './store.js';

/**
 * Sends one alert email through the owner's SMTP server with nodemailer. A
 * transport per mail (alerts are minutes apart at most; a pooled connection
 * would sit idle), nodemailer's own logger off, and every failure reduced to
 * its codes (EmailSendError): nodemailer's messages can quote the server's
 * reply, which may echo the user name or an address.
 */

export interface AlertMail {
  subject: string;
  text: string;
  /** a JPEG, attached as `snapshotName` */
  snapshot?: Buffer;
  snapshotName?: string;
}

export interface SendOptions {
  /** the agent's caFile: trusted in addition to Node's roots, as for the cloud */
  caFile?: string;
  /** tests shorten these */
  timeouts?: { connectionMs?: number; greetingMs?: number; socketMs?: number };
  signal?: AbortSignal;
}

export interface SendResult {
  /** the server's reply code to the message, usually 250 */
  responseCode: number | undefined;
  accepted: number;
  rejected: number;
}

/** A failed send, by codes only: nodemailer's code (EAUTH, ECONNECTION, ETLS, EENVELOPE…), the SMTP reply code and the command. */
export class EmailSendError extends Error {
  readonly code: string;
  readonly responseCode: number | undefined;
  readonly command: string | undefined;

  constructor(code: string, responseCode?: number, command?: string) {
    super(`${code}${responseCode !== undefined ? ` (SMTP ${responseCode}${command ? ` on ${command}` : ''})` : command ? ` (on ${command})` : ''}`);
    this.name = 'EmailSendError';
    this.code = code;
    this.responseCode = responseCode;
    this.command = command;
  }

  /** what the journal and `agent status` keep: "EAUTH 535" */
  get summary(): string {
    return this.responseCode !== undefined ? `${this.code} ${this.responseCode}` : this.code;
  }
}

/** Only the verb (and an AUTH mechanism): nothing a command carries after it. */
function safeCommand(command: unknown): string | undefined {
  if (typeof command !== 'string') return undefined;
  const m = /^(AUTH [A-Z0-9-]+|MAIL FROM|RCPT TO|[A-Z]{3,10})\b/.exec(command.toUpperCase());
  return m?.[1];
}

export function toSendError(err: unknown): EmailSendError {
  if (err instanceof EmailSendError) return err;
  const e = (err ?? {}) as { code?: unknown; responseCode?: unknown; command?: unknown; name?: unknown };
  const code = typeof e.code === 'string' && /^[A-Z0-9_]{2,32}$/.test(e.code) ? e.code : e.name === 'AbortError' ? 'EABORT' : 'ESEND';
  return new EmailSendError(code, typeof e.responseCode === 'number' ? e.responseCode : undefined, safeCommand(e.command));
}

export function transportFor(creds: EmailCredentials, opts: SendOptions = {}): Transporter {
  const { settings, password } = creds;
  const t = opts.timeouts ?? {};
  return createTransport({
    host: settings.host,
    port: settings.port,
    secure: settings.security === 'tls',
    requireTLS: settings.security === 'starttls',
    ignoreTLS: settings.security === 'none',
    auth: { user: settings.user, pass: password },
    tls: {
      minVersion: 'TLSv1.2',
      ...(opts.caFile ? { ca: [...rootCertificates, readFileSync(opts.caFile, 'utf8')] } : {}),
    },
    connectionTimeout: t.connectionMs ?? 15_000,
    greetingTimeout: t.greetingMs ?? 15_000,
    socketTimeout: t.socketMs ?? 30_000,
    logger: false,
    debug: false,
    // the message is built here from the agent's own values: no file or URL may be pulled in
    disableFileAccess: true,
    disableUrlAccess: true,
  });
}

export async function sendAlertMail(creds: EmailCredentials, mail: AlertMail, opts: SendOptions = {}): Promise<SendResult> {
  let transport: Transporter;
  try {
    transport = transportFor(creds, opts);
  } catch (err) {
    throw toSendError(err);
  }
  const onAbort = (): void => transport.close();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    if (opts.signal?.aborted) throw new EmailSendError('EABORT');
    const info = (await transport.sendMail({
      from: creds.settings.from,
      to: creds.settings.recipients,
      subject: mail.subject,
      text: mail.text,
      attachments: mail.snapshot
        ? [{ filename: mail.snapshotName ?? 'snapshot.jpg', content: mail.snapshot, contentType: 'image/jpeg' }]
        : [],
    })) as { response?: unknown; accepted?: unknown[]; rejected?: unknown[] };
    const m = typeof info.response === 'string' ? /^(\d{3})/.exec(info.response) : null;
    return {
      responseCode: m ? Number(m[1]) : undefined,
      accepted: Array.isArray(info.accepted) ? info.accepted.length : 0,
      rejected: Array.isArray(info.rejected) ? info.rejected.length : 0,
    };
  } catch (err) {
    throw toSendError(err);
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    transport.close();
  }
}
