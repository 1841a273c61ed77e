/**
 * Notifications in an app (buildApp calls this once): the node's stream hub,
 * the webhook sender, the notifier on the broker's alerts, and the routes.
 * Shutdown, in order: open streams end before the server closes (preClose,
 * so close() never waits on them); then the broker stops (no new alerts),
 * the alerts in hand are stored, and webhook retries stop.
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from '../../shared/log.js';
import type { AppContext } from '../context.js';
import type { DeviceBroker } from '../mqtt/types.js';
import { notificationRoutes } from '../routes/notifications.js';
import { NotificationHub } from './hub.js';
import { Notifier } from './notifier.js';
import { WebhookSender } from './webhook-sender.js';

export { eraseOldNotifications } from './erase.js';
export { NotificationHub } from './hub.js';
export { Notifier } from './notifier.js';
export { WebhookSender, verifyWebhookSignature, webhookSignature } from './webhook-sender.js';

export interface Notifications {
  hub: NotificationHub;
  notifier: Notifier;
  webhooks: WebhookSender;
  /** the broker (if any), then the work in hand; called from the app's onClose, before the stores close */
  close(): Promise<void>;
}

const NOTIFICATIONS = new WeakMap<FastifyInstance, Notifications>();

/** The notifications of an app made by buildApp (tests, bench). */
export function notificationsOf(app: FastifyInstance): Notifications {
  const n = NOTIFICATIONS.get(app);
  if (!n) throw new Error('not an app made by buildApp');
  return n;
}

export function setUpNotifications(app: FastifyInstance, ctx: AppContext, broker: DeviceBroker | undefined): Notifications {
  // the app's logger is the one createLogger made (buildApp's loggerInstance)
  const logger = app.log.child({ component: 'notifications' }) as unknown as Logger;
  const hub = new NotificationHub();
  const webhooks = new WebhookSender({ settings: ctx.config.notifications.webhook, logger, now: () => ctx.clock.now() });
  const notifier = new Notifier({ store: ctx.store, hub, webhooks, settings: ctx.config.notifications, logger, now: () => ctx.clock.now() });
  broker?.onAlert((alert) => notifier.handleAlert(alert, ctx.clock.now()));
  broker?.onStatus((serial, status) => logger.debug({ serial, status }, 'device status'));

  app.addHook('preClose', async () => {
    hub.closeAll();
  });
  void app.register(notificationRoutes, { ctx, hub });

  let closing: Promise<void> | undefined;
  const n: Notifications = {
    hub,
    notifier,
    webhooks,
    close: () =>
      (closing ??= (async () => {
        hub.closeAll();
        await broker?.close();
        await notifier.idle();
        webhooks.close();
      })()),
  };
  NOTIFICATIONS.set(app, n);
  return n;
}
