import { existsSync } from 'node:fs';
import { systemClock, type Clock } from '../../shared/clock.js';
import type { ClipKind } from '../../shared/contracts/common.js';
import type { Logger } from '../../shared/log.js';
import type { Journal } from '../journal/journal.js';
import { EmailSendError, sendAlertMail, toSendError, type AlertMail, type SendOptions } from './mailer.js';
import { grabSnapshot } from './snapshot.js';
import { loadEmailCredentials, loadEmailSettings } from './store.js';

/**
 * Email alerts on the device (issue 7; DESIGN P4). On a motion event, when
 * email alerts are set up and the camera's interval has passed, the agent
 * waits for the event clip that holds the motion to close, takes one frame of
 * it as a JPEG, and mails it through the owner's SMTP server.
 *
 * The settings are read from the journal at each motion, not kept in memory:
 * `email set` and `email disable` (another process) take effect at the next
 * motion, and a disabled device holds no copy of the password anywhere.
 *
 * The rate limit counts attempts, not successes, and the attempt is durable
 * before the mail is sent: a relay that refuses (or a crash mid-send) costs
 * one try per interval, never one per motion, and a restart does not lift it.
 *
 * Logs carry codes only: never the host, user, password or recipients.
 */

export interface EmailAlertsOptions {
  journal: Journal;
  dataDir: string;
  serial: string;
  channel: string;
  ffmpegPath: string;
  caFile?: string;
  logger: Logger;
  clock?: Clock;
  /** how long to wait for the event clip before mailing without a picture */
  clipWaitMs: number;
  /** the margin around a clip within which a motion belongs to it (events.ts uses the same) */
  marginMs?: number;
  /** tests shorten nodemailer's timeouts */
  send?: Pick<SendOptions, 'timeouts'>;
}

/** A journaled clip, as the agent announces it ('clip-queued'). */
export interface QueuedClip {
  clipId: string;
  kind: ClipKind;
  path: string;
  startMs: number;
  durationMs: number;
}

/** What happened to one alert: 'email-sent' or 'email-failed' events carry it. */
export interface EmailAlertResult {
  camera: string;
  motionAt: number;
  clipId: string | null;
  /** a picture was attached */
  snapshot: boolean;
  /** 'OK', or the failure's summary ("EAUTH 535") */
  code: string;
  responseCode?: number;
}

interface Pending {
  motionAt: number;
  timer: NodeJS.Timeout;
}

/** The alert email's words. Pure. */
export function alertMessage(a: { serial: string; motionAt: number; clipId: string | null; snapshot: boolean }): AlertMail {
  const when = new Date(a.motionAt).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
  const lines = [
    `Camera ${a.serial} saw motion at ${when}.`,
    '',
    a.snapshot ? 'The attached picture is a frame of the clip it recorded.' : 'No picture could be taken from the recording.',
    a.clipId ? `Clip: ${a.clipId}` : undefined,
    '',
    'Sent by the camera itself (camvault email alerts). To stop these emails, run on the camera: npm run agent -- email disable',
  ].filter((l): l is string => l !== undefined);
  return {
    subject: `camvault: motion on ${a.serial} at ${when}`,
    text: lines.join('\n'),
    snapshotName: `${a.serial}-${new Date(a.motionAt).toISOString().replace(/[:.]/g, '-')}.jpg`,
  };
}

/** Whether a camera may mail now, given its last attempt. Pure. */
export function emailDue(lastAttemptAt: number | undefined, now: number, minIntervalMinutes: number): boolean {
  if (lastAttemptAt === undefined) return true;
  // a clock that went backwards (NTP after boot) must not silence alerts for years
  if (lastAttemptAt > now) return true;
  return now - lastAttemptAt >= minIntervalMinutes * 60_000;
}

export class EmailAlerts {
  private readonly opts: EmailAlertsOptions;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly camera: string;
  private readonly marginMs: number;
  private pending: Pending | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly abort = new AbortController();
  private listeners: ((r: EmailAlertResult) => void)[] = [];

  constructor(opts: EmailAlertsOptions) {
    this.opts = opts;
    this.log = opts.logger;
    this.clock = opts.clock ?? systemClock;
    this.camera = `${opts.serial}/${opts.channel}`;
    this.marginMs = opts.marginMs ?? 1000;
  }

  /** Called with each alert's outcome (tests, the agent's events). */
  onResult(fn: (r: EmailAlertResult) => void): void {
    this.listeners.push(fn);
  }

  /** A motion event at `motionAt` (agent clock). */
  motion(motionAt: number): void {
    if (this.abort.signal.aborted || !this.opts.journal.isOpen) return;
    // one email per clip's worth of motion: later motion while waiting is in the same clip or the next
    if (this.pending) return;
    let minInterval: number;
    try {
      const settings = loadEmailSettings(this.opts.journal);
      if (!settings) return;
      minInterval = settings.minIntervalMinutes;
    } catch (err) {
      this.log.warn({ err: { message: (err as Error).message } }, 'email alerts: the stored settings cannot be read');
      return;
    }
    const now = this.clock.now();
    const last = this.opts.journal.emailSent(this.camera)?.lastAttemptAt;
    if (!emailDue(last, now, minInterval)) {
      this.log.debug({ minIntervalMinutes: minInterval }, 'email alert skipped: one was tried within the interval');
      return;
    }
    // durable before acting: a crash from here on does not lift the limit
    this.opts.journal.recordEmailAttempt(this.camera, now);
    const timer = setTimeout(() => this.fire(undefined), this.opts.clipWaitMs);
    this.pending = { motionAt, timer };
  }

  /** A clip was journaled: if it is the event clip of the pending alert, mail it. */
  clipQueued(clip: QueuedClip): void {
    const p = this.pending;
    if (!p || clip.kind !== 'event') return;
    if (p.motionAt < clip.startMs - this.marginMs || p.motionAt > clip.startMs + clip.durationMs + this.marginMs) return;
    this.fire(clip);
  }

  /** Cancels a wait, aborts a send in flight (its ffmpeg is killed, its connection closed) and waits for it. Idempotent. */
  async stop(): Promise<void> {
    this.abort.abort();
    if (this.pending) clearTimeout(this.pending.timer);
    this.pending = undefined;
    await Promise.allSettled([...this.inFlight]);
  }

  private fire(clip: QueuedClip | undefined): void {
    const p = this.pending;
    if (!p) return;
    clearTimeout(p.timer);
    this.pending = undefined;
    const sending = this.send(p.motionAt, clip).catch((err: unknown) => {
      this.log.error({ err: { name: (err as Error).name } }, 'email alert: unexpected failure');
    });
    this.inFlight.add(sending);
    void sending.finally(() => this.inFlight.delete(sending));
  }

  private async send(motionAt: number, clip: QueuedClip | undefined): Promise<void> {
    const signal = this.abort.signal;
    let snapshot: Buffer | undefined;
    if (clip && existsSync(clip.path)) {
      try {
        snapshot = await grabSnapshot(this.opts.ffmpegPath, clip.path, Math.min(Math.max(0, motionAt - clip.startMs), Math.max(0, clip.durationMs - 200)), { signal });
      } catch (err) {
        if (signal.aborted) return;
        this.log.warn({ clipId: clip.clipId, reason: (err as Error).message }, 'email alert: no picture could be taken from the clip; sending without one');
      }
    } else if (!clip) {
      this.log.warn({ waitedMs: this.opts.clipWaitMs }, 'email alert: the event clip did not close in time; sending without a picture');
    }
    if (signal.aborted || !this.opts.journal.isOpen) return;
    const result: EmailAlertResult = { camera: this.camera, motionAt, clipId: clip?.clipId ?? null, snapshot: snapshot !== undefined, code: 'OK' };
    try {
      // read again: `email disable` may have run while the clip was recorded
      const creds = loadEmailCredentials(this.opts.journal, this.opts.dataDir);
      if (!creds) {
        this.log.info('email alert dropped: email alerts were disabled meanwhile');
        return;
      }
      const mail = alertMessage({ serial: this.opts.serial, motionAt, clipId: result.clipId, snapshot: result.snapshot });
      const sent = await sendAlertMail(creds, { ...mail, snapshot }, { caFile: this.opts.caFile, signal, ...this.opts.send });
      result.responseCode = sent.responseCode;
      this.opts.journal.recordEmailResult(this.camera, this.clock.now(), 'OK');
      this.opts.journal.addStats({ email_alerts_sent: 1 });
      this.log.info(
        { clipId: result.clipId, smtpCode: sent.responseCode, accepted: sent.accepted, rejected: sent.rejected, snapshot: result.snapshot },
        'email alert sent',
      );
    } catch (err) {
      if (signal.aborted) return;
      const e = err instanceof EmailSendError ? err : (err as Error).name === 'EmailKeyError' || (err as Error).name === 'EmailCryptoError' || (err as Error).name === 'EmailSettingsError' ? undefined : toSendError(err);
      result.code = e ? e.summary : 'ESETTINGS';
      if (e?.responseCode !== undefined) result.responseCode = e.responseCode;
      if (this.opts.journal.isOpen) {
        this.opts.journal.recordEmailResult(this.camera, this.clock.now(), result.code);
        this.opts.journal.addStats({ email_alerts_failed: 1 });
      }
      if (e) this.log.warn({ clipId: result.clipId, code: e.code, smtpCode: e.responseCode, command: e.command }, 'email alert failed');
      // key and settings errors are the agent's own one-line messages: paths and advice, no values
      else this.log.warn({ clipId: result.clipId, reason: (err as Error).message }, 'email alert failed');
    }
    for (const fn of this.listeners) fn(result);
  }
}
