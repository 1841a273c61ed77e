import { EventEmitter } from 'node:events';
import { extractCode } from './messages.js';
import type { MailMessage, Mailer } from './types.js';

export interface OutboxMail extends MailMessage {
  /** position in the outbox since it was made (0 first), so a reader can ask only for newer mail */
  seq: number;
  sentAt: number;
}

/**
 * The embedded default (DESIGN.md, "Embedded defaults"): mail is kept in
 * memory, where tests and the demo read it, and goes nowhere else. It never
 * logs a message (they hold codes); the demo prints them itself. Only the last
 * `capacity` messages are kept, so a cloud left on it does not grow forever.
 *
 * Events: 'mail' (OutboxMail), emitted as each message arrives.
 */
export class DevOutbox extends EventEmitter implements Mailer {
  readonly kind = 'outbox' as const;
  private readonly kept: OutboxMail[] = [];
  private next = 0;

  constructor(private readonly capacity = 200) {
    super();
  }

  /** Synchronous underneath: the message is in the outbox when send() returns its promise. */
  send(message: MailMessage): Promise<void> {
    const mail: OutboxMail = { ...message, seq: this.next++, sentAt: Date.now() };
    this.kept.push(mail);
    if (this.kept.length > this.capacity) this.kept.splice(0, this.kept.length - this.capacity);
    this.emit('mail', mail);
    return Promise.resolve();
  }

  /** the messages kept, oldest first */
  get messages(): readonly OutboxMail[] {
    return this.kept;
  }

  /** the seq the next message will get: pass it to waitFor to see only mail sent after now */
  get cursor(): number {
    return this.next;
  }

  /**
   * The first message to `to` with seq >= `since`, already here or still to
   * come; rejects after `timeoutMs`. The rejection names no address.
   */
  waitFor(to: string, since = 0, timeoutMs = 10_000): Promise<OutboxMail> {
    const want = to.trim().toLowerCase();
    const match = (m: OutboxMail): boolean => m.seq >= since && m.to.toLowerCase() === want;
    const found = this.kept.find(match);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const onMail = (m: OutboxMail): void => {
        if (!match(m)) return;
        clearTimeout(timer);
        this.off('mail', onMail);
        resolve(m);
      };
      const timer = setTimeout(() => {
        this.off('mail', onMail);
        reject(new Error(`no mail to that address arrived in the outbox within ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
      this.on('mail', onMail);
    });
  }

  /** The code in the first mail to `to` with seq >= `since` (waitFor, then extractCode). */
  async waitForCode(to: string, since = 0, timeoutMs = 10_000): Promise<string> {
    const mail = await this.waitFor(to, since, timeoutMs);
    const code = extractCode(mail.text);
    if (code === null) throw new Error(`the mail "${mail.subject}" holds no code`);
    return code;
  }

  async close(): Promise<void> {
    this.removeAllListeners('mail');
  }
}
