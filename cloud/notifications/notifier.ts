/**
 * Alerts become notifications (issue 7): for the device's owner and everyone
 * it is shared with, kept a few days (SSE resume), pushed to this node's open
 * streams, and POSTed to each recipient's webhook by exactly one node.
 *
 * handleAlert is what the broker calls, synchronously, for every alert that
 * passed the schema. It never waits: the per-device limit is checked in
 * memory, and the rest runs in the background, at most maxInFlight alerts at
 * once (beyond that an alert is dropped and counted: a slow database must not
 * grow the node's memory without bound).
 *
 * Several nodes: each receives every alert. The notifications table keys a
 * row by (account, id) with an id derived from the alert, so every node
 * inserts the same rows and only the first insert of each lands: that node,
 * and only it, sends the webhook. SSE is per node: each node pushes to its
 * own subscribers, once per alert (a small memory of recent ids keeps a
 * redelivered alert from being pushed twice on one node).
 */
import type { Alert, Notification } from '../../shared/contracts/alerts.js';
import type { Logger } from '../../shared/log.js';
import type { NotificationSettings } from '../config.js';
import type { NotificationRow, Store } from '../store/types.js';
import { AlertLimiter } from './alert-limiter.js';
import type { NotificationHub } from './hub.js';
import { notificationId } from './notification-id.js';
import type { WebhookSender } from './webhook-sender.js';

export interface NotifierStats {
  alertsIn: number;
  /** over the device's limit */
  droppedRateLimited: number;
  /** too many alerts being written at once */
  droppedOverload: number;
  /** the serial is bound to nobody */
  droppedUnbound: number;
  /** the store failed */
  failed: number;
  /** rows this node inserted (one per recipient) */
  stored: number;
  /** pushes to open streams on this node */
  streamed: number;
  webhooksQueued: number;
}

export interface NotifierOptions {
  store: Store;
  hub: NotificationHub;
  webhooks: WebhookSender;
  settings: NotificationSettings;
  logger: Logger;
  now: () => number;
  /** alerts being stored at once, per node */
  maxInFlight?: number;
}

/** A stored row as the API shows it (P6: device alert and device information only). */
export function notificationJson(row: NotificationRow): Notification {
  return {
    id: row.id,
    serial: row.serial,
    type: row.type as Notification['type'],
    at: new Date(row.atMs).toISOString(),
    ...(row.clipId !== null ? { clipId: row.clipId } : {}),
    receivedAt: new Date(row.receivedAt).toISOString(),
  };
}

/** ids this node has pushed lately, oldest first (a Map keeps insertion order) */
class RecentIds {
  private readonly seen = new Map<string, number>();
  constructor(
    private readonly max: number,
    private readonly ttlMs: number,
  ) {}

  /** true the first time an id is seen within ttlMs */
  add(id: string, now: number): boolean {
    const at = this.seen.get(id);
    if (at !== undefined && now - at < this.ttlMs) return false;
    this.seen.delete(id);
    this.seen.set(id, now);
    while (this.seen.size > this.max) this.seen.delete(this.seen.keys().next().value as string);
    return true;
  }
}

export class Notifier {
  private readonly limiter: AlertLimiter;
  private readonly recent = new RecentIds(50_000, 10 * 60_000);
  private inFlight = 0;
  private readonly maxInFlight: number;
  private idleWaiters: (() => void)[] = [];
  private readonly counts: NotifierStats = {
    alertsIn: 0,
    droppedRateLimited: 0,
    droppedOverload: 0,
    droppedUnbound: 0,
    failed: 0,
    stored: 0,
    streamed: 0,
    webhooksQueued: 0,
  };

  constructor(private readonly opts: NotifierOptions) {
    this.limiter = new AlertLimiter({ burst: opts.settings.alertBurst, perMinute: opts.settings.alertsPerMinute });
    this.maxInFlight = opts.maxInFlight ?? 2000;
  }

  /** the broker's alert handler: returns at once */
  handleAlert(alert: Alert, receivedAt: number): void {
    this.counts.alertsIn++;
    if (!this.limiter.take(alert.serial, receivedAt)) {
      this.counts.droppedRateLimited++;
      return;
    }
    if (this.inFlight >= this.maxInFlight) {
      this.counts.droppedOverload++;
      return;
    }
    this.inFlight++;
    void this.process(alert, receivedAt)
      .catch((err: unknown) => {
        this.counts.failed++;
        this.opts.logger.error({ serial: alert.serial, err }, 'an alert could not be turned into notifications');
      })
      .finally(() => {
        this.inFlight--;
        if (this.inFlight === 0) {
          const waiters = this.idleWaiters;
          this.idleWaiters = [];
          for (const w of waiters) w();
        }
      });
  }

  private async process(alert: Alert, receivedAt: number): Promise<void> {
    const { store } = this.opts;
    const recipients = await store.notificationRecipients(alert.serial);
    if (recipients.length === 0) {
      this.counts.droppedUnbound++;
      return;
    }
    const id = notificationId(alert);
    const rows: NotificationRow[] = recipients.map((accountId) => ({
      id,
      accountId,
      serial: alert.serial,
      type: alert.type,
      atMs: Date.parse(alert.at),
      clipId: alert.clipId ?? null,
      receivedAt,
    }));
    const inserted = await store.putNotifications(rows);
    const winners = recipients.filter((_, i) => inserted[i] === true);
    this.counts.stored += winners.length;
    const notification = notificationJson(rows[0] as NotificationRow);
    if (this.recent.add(id, this.opts.now())) this.counts.streamed += this.opts.hub.publish(recipients, notification);
    if (winners.length === 0) return;
    for (const hook of await store.getWebhooks(winners)) {
      if (this.opts.webhooks.enqueue({ accountId: hook.accountId, url: hook.url, secret: hook.secret, notification })) this.counts.webhooksQueued++;
    }
  }

  stats(): NotifierStats {
    return { ...this.counts };
  }

  /** resolves when no alert is being processed (tests, shutdown) */
  idle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }
}
