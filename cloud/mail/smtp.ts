import { createTransport, type Transporter } from 'nodemailer';
import { MailError, type MailMessage, type Mailer } from './types.js';

export interface SmtpMailerOptions {
  /** smtp://user:pass@host:port or smtps://…; holds the relay's password */
  smtpUrl: string;
  from: string;
}

/** How long close() waits for messages in flight before it drops the connections. */
const CLOSE_WAIT_MS = 5000;

/**
 * Mail through any SMTP relay, via nodemailer (DESIGN.md, "Embedded defaults
 * and production engines"). Connections are pooled; STARTTLS is used when the
 * relay offers it. Timeouts are short: a code that arrives minutes late is
 * worth little, and a hung relay must not pile up sends.
 *
 * The URL (with its password) stays inside nodemailer: nodemailer's own
 * logger is off, and every failure becomes a MailError that carries only the
 * error and reply codes.
 */
export class SmtpMailer implements Mailer {
  readonly kind = 'smtp' as const;
  private readonly transport: Transporter;
  private readonly inFlight = new Set<Promise<unknown>>();
  private closing: Promise<void> | undefined;
  /** host and port, for a start-up line: never the user or password */
  readonly endpoint: string;

  constructor(opts: SmtpMailerOptions) {
    const url = new URL(opts.smtpUrl);
    const secure = url.protocol === 'smtps:';
    this.endpoint = `${url.protocol}//${url.hostname}:${url.port || (secure ? '465' : '587')}`;
    this.transport = createTransport(
      {
        url: opts.smtpUrl,
        pool: true,
        maxConnections: 2,
        connectionTimeout: 10_000,
        greetingTimeout: 10_000,
        socketTimeout: 30_000,
        logger: false,
        debug: false,
      },
      { from: opts.from },
    );
  }

  async send(message: MailMessage): Promise<void> {
    if (this.closing) throw new MailError('ECLOSED');
    const sending = this.transport.sendMail({ to: message.to, subject: message.subject, text: message.text });
    this.inFlight.add(sending);
    try {
      await sending;
    } catch (err) {
      const e = err as { code?: unknown; responseCode?: unknown; command?: unknown };
      throw new MailError(
        typeof e.code === 'string' ? e.code : 'ESEND',
        typeof e.responseCode === 'number' ? e.responseCode : undefined,
        typeof e.command === 'string' ? e.command : undefined,
      );
    } finally {
      this.inFlight.delete(sending);
    }
  }

  close(): Promise<void> {
    return (this.closing ??= (async () => {
      if (this.inFlight.size > 0) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          Promise.allSettled([...this.inFlight]),
          new Promise((r) => {
            timer = setTimeout(r, CLOSE_WAIT_MS);
            timer.unref();
          }),
        ]);
        clearTimeout(timer);
      }
      this.transport.close();
    })());
  }
}
