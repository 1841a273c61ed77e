import { EventEmitter } from 'node:events';
import { systemClock, type Clock } from '../../shared/clock.js';
import { Alert, type AlertType } from '../../shared/contracts/alerts.js';
import type { ClipKind } from '../../shared/contracts/common.js';
import type { Logger } from '../../shared/log.js';
import { alertsTopic } from '../../shared/topics.js';
import type { Journal, OutboxAlert } from '../journal/journal.js';
import { Wakeup } from '../wakeup.js';

/**
 * Alerts on their way to the broker (issue 7). A motion is written to the
 * journal's alert_outbox at once (durable, bounded: the oldest alerts are
 * dropped and counted when it is full), and the outbox is sent in order,
 * QoS 1, whenever the broker is connected; an alert leaves the journal only
 * after its PUBACK. So alerts survive a broker outage and a restart, and
 * arrive in the order of their motions (some twice, after a connection broke
 * between the broker's PUBACK and the journal's delete: QoS 1 is at least
 * once).
 *
 * Up to `window` alerts are in flight on one connection (one PUBACK per
 * round trip would take minutes for a backlog of 1000 on a slow link). A
 * connection that breaks rejects them all, and the next connection sends
 * again from the oldest alert left, so the order of first delivery holds.
 *
 * The payload is made here, from the journal's columns, through the Alert
 * schema (a strict allowlist: serial, type, at, clipId): nothing else can go.
 */

/** What the outbox needs of the MQTT connection (DeviceMqtt). */
export interface AlertPublisher {
  readonly connected: boolean;
  publish(topic: string, payload: string): Promise<void>;
}

export interface AlertOutboxOptions {
  journal: Journal;
  serial: string;
  logger: Logger;
  clock?: Clock;
  /** at most this many alerts are kept (alertOutboxMax) */
  max: number;
  /** an alert may wait this long for its motion's clip id (alertClipWaitSec); 0: sent at once */
  clipWaitMs?: number;
  /** alerts in flight at once on a connection (default 8) */
  window?: number;
  /** the queue is looked at again at least this often (default 60 s) */
  idlePollMs?: number;
}

/** Emitted as 'alert-sent' once the broker acknowledged an alert. */
export interface AlertSent {
  seq: number;
  alert: Alert;
}

/** Events: 'alert-queued' ({ seq, atMs, dropped }), 'alert-sent' (AlertSent). */
export class AlertOutbox extends EventEmitter {
  private readonly journal: Journal;
  private readonly serial: string;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly max: number;
  private readonly clipWaitMs: number;
  private readonly window: number;
  private readonly idlePollMs: number;
  private readonly wakeup = new Wakeup();
  private readonly stopping = new AbortController();
  private publisher: AlertPublisher | undefined;
  /** alerts up to this seq are in flight on the current connection */
  private cursor = 0;
  private readonly inflight = new Set<number>();
  private loopDone: Promise<void> | undefined;
  private stopPromise: Promise<void> | undefined;

  constructor(opts: AlertOutboxOptions) {
    super();
    this.journal = opts.journal;
    this.serial = opts.serial;
    this.log = opts.logger;
    this.clock = opts.clock ?? systemClock;
    this.max = opts.max;
    this.clipWaitMs = opts.clipWaitMs ?? 0;
    this.window = Math.max(1, opts.window ?? 8);
    this.idlePollMs = opts.idlePollMs ?? 60_000;
  }

  /** Starts sending through `publisher` (the outbox keeps alerts without one). */
  start(publisher: AlertPublisher): void {
    if (this.stopping.signal.aborted) throw new Error('the alert outbox is stopped');
    this.publisher = publisher;
    this.loopDone ??= this.loop();
    this.wake();
  }

  /** Idempotent. Alerts in flight stay in the journal: their PUBACK will not be waited for. */
  stop(): Promise<void> {
    this.stopPromise ??= (async () => {
      this.stopping.abort();
      this.wakeup.wake();
      await this.loopDone;
    })();
    return this.stopPromise;
  }

  /** A motion (agent clock): journaled now, sent when the broker is there. */
  motion(atMs: number, type: AlertType = 'motion'): void {
    // the wait counts from now: a motion reported late waits no longer for it
    const { seq, dropped } = this.journal.addAlert({ type, atMs, sendAfter: this.clock.now() + this.clipWaitMs }, this.max);
    if (dropped > 0) this.log.warn({ dropped, max: this.max }, 'the alert outbox is full: the oldest alerts were dropped');
    this.emit('alert-queued', { seq, atMs, dropped });
    this.wake();
  }

  /**
   * A clip was journaled: an event clip gives its id to the alerts of the
   * motions it holds (within [start − margin, end + margin], the rule that
   * made it an event clip), and those waiting for it go now.
   */
  clipJournaled(clip: { id: string; kind: ClipKind; startMs: number; durationMs: number }, marginMs: number): void {
    if (clip.kind !== 'event') return;
    if (this.journal.attachAlertClip(clip.id, clip.startMs - marginMs, clip.startMs + clip.durationMs + marginMs) > 0) this.wake();
  }

  /** The broker connection is (back) up: everything not acknowledged is sent again, oldest first. */
  connected(): void {
    this.cursor = 0;
    this.wake();
  }

  wake(): void {
    this.wakeup.wake();
  }

  get waiting(): number {
    return this.journal.alertOutboxSize();
  }

  private async loop(): Promise<void> {
    const stop = this.stopping.signal;
    while (!stop.aborted) {
      let waitMs = this.idlePollMs;
      try {
        if (this.publisher?.connected) waitMs = Math.min(waitMs, this.fill(this.publisher));
      } catch (err) {
        this.log.error({ err }, 'alert outbox turn failed');
        waitMs = Math.min(waitMs, 5000);
      }
      await this.wakeup.wait(waitMs, stop);
    }
  }

  /** Sends what the window allows, in order; returns how long until the next alert is due, if one waits. */
  private fill(publisher: AlertPublisher): number {
    const free = this.window - this.inflight.size;
    if (free <= 0) return this.idlePollMs;
    const now = this.clock.now();
    let sent = 0;
    for (const row of this.journal.alertsInOrder(free + this.inflight.size, this.cursor)) {
      if (this.inflight.has(row.seq)) continue;
      // an alert still waiting for its clip holds the ones behind it: order first
      if (row.clipId === null && row.sendAfter > now) return row.sendAfter - now;
      this.cursor = row.seq;
      this.send(publisher, row);
      if (++sent >= free) break;
    }
    return this.idlePollMs;
  }

  private send(publisher: AlertPublisher, row: OutboxAlert): void {
    const parsed = Alert.safeParse({
      serial: this.serial,
      type: row.type,
      at: new Date(row.atMs).toISOString(),
      ...(row.clipId !== null ? { clipId: row.clipId } : {}),
    });
    if (!parsed.success) {
      // a row no schema accepts (a journal edited by hand) would block the outbox for good
      this.journal.discardAlert(row.seq);
      this.log.error({ seq: row.seq }, 'an alert in the outbox does not fit the Alert schema; dropped');
      return;
    }
    const alert = parsed.data;
    this.inflight.add(row.seq);
    publisher.publish(alertsTopic(this.serial), JSON.stringify(alert)).then(
      () => {
        this.inflight.delete(row.seq);
        try {
          this.journal.alertDelivered(row.seq);
        } catch (err) {
          // the journal closed under a late PUBACK (stop), or the disk is full: sent again later
          this.log.debug({ err: { message: (err as Error).message } }, 'a delivered alert could not be removed from the outbox');
        }
        this.emit('alert-sent', { seq: row.seq, alert } satisfies AlertSent);
        this.wake();
      },
      () => {
        // the connection ended (connected() starts over from the oldest anyway), or
        // this one publish failed: it goes again, before anything not sent yet
        this.inflight.delete(row.seq);
        this.cursor = 0;
      },
    );
  }
}
