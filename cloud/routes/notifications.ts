/**
 * Push to subscribers (DESIGN.md, "API sketch": GET /v1/notifications):
 *
 *   GET    /v1/notifications   Accept: text/event-stream → server-sent events:
 *                              each notification as `event: alert`, `id:` its id,
 *                              `data:` its JSON; a comment every heartbeatSec;
 *                              Last-Event-ID resumes after that notification.
 *                              Any other Accept → JSON: the newest notifications.
 *   PUT    /v1/account/webhook {url, secret}: POST every notification there too
 *   DELETE /v1/account/webhook
 *
 * A subscriber gets the notifications of its own cameras and of the cameras
 * shared with it, from the moment of the alert (a share revoked later does
 * not take back what was sent). The stream checks the session at every
 * heartbeat: a logout or an expired session ends it within one.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { WebhookRequest, type Notification, type NotificationsResponse, type WebhookResponse } from '../../shared/contracts/alerts.js';
import { CamvaultError } from '../../shared/errors.js';
import type { AppContext } from '../context.js';
import { requireSubscriber } from '../http/auth.js';
import { parseInput } from '../http/validate.js';
import type { NotificationHub } from '../notifications/hub.js';
import { NOTIFICATION_ID_RE } from '../notifications/notification-id.js';
import { notificationJson } from '../notifications/notifier.js';
import { webhookUrlProblem } from '../notifications/webhook-url.js';

/** the JSON answer's length, and how many missed notifications a resumed stream replays */
const RECENT_LIMIT = 100;
const REPLAY_PAGE = 500;
const REPLAY_MAX = 5000;
/** a client this far behind on its stream is cut off; it resumes with Last-Event-ID */
const MAX_BUFFERED_BYTES = 1024 * 1024;
const DAY_MS = 24 * 3600 * 1000;

export interface NotificationRoutesOptions {
  ctx: AppContext;
  hub: NotificationHub;
}

function wantsStream(req: FastifyRequest): boolean {
  return /(^|,)\s*text\/event-stream\s*(;|,|$)/i.test(req.headers.accept ?? '');
}

/** one SSE event */
function eventOf(n: Notification): string {
  return `id: ${n.id}\nevent: alert\ndata: ${JSON.stringify(n)}\n\n`;
}

export async function notificationRoutes(app: FastifyInstance, opts: NotificationRoutesOptions): Promise<void> {
  const { ctx, hub } = opts;
  const settings = ctx.config.notifications;

  app.get('/v1/notifications', async (req, reply) => {
    const auth = await requireSubscriber(ctx, req);
    const since = ctx.clock.now() - settings.retentionDays * DAY_MS;
    if (!wantsStream(req)) {
      const rows = await ctx.store.listRecentNotifications(auth.accountId, since, RECENT_LIMIT);
      reply.header('vary', 'accept');
      const res: NotificationsResponse = { notifications: rows.map(notificationJson) };
      return res;
    }
    const lastEventId = req.headers['last-event-id'];
    if (lastEventId !== undefined && (typeof lastEventId !== 'string' || !NOTIFICATION_ID_RE.test(lastEventId))) {
      throw new CamvaultError('VALIDATION_FAILED', undefined, [{ path: 'headers.last-event-id', message: 'Last-Event-ID must be a notification id' }]);
    }
    if (hub.count(auth.accountId) >= settings.maxStreamsPerAccount) throw new CamvaultError('TOO_MANY_STREAMS');
    const headers = {
      ...(reply.getHeaders() as Record<string, string>),
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      vary: 'accept',
      // nginx and the like: do not buffer a stream
      'x-accel-buffering': 'no',
    };
    if (req.method === 'HEAD') {
      for (const [k, v] of Object.entries(headers)) reply.header(k, v);
      return reply.send();
    }

    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, headers);
    res.write('retry: 3000\n\n');
    const log = req.log.child({ accountId: auth.accountId });

    let open = true;
    let replaying = true;
    const early: Notification[] = [];
    const sent = new Set<string>();
    const write = (chunk: string): void => {
      if (!open) return;
      res.write(chunk);
      // a reader that stopped reading: cut it off rather than buffer without bound
      if (res.writableLength > MAX_BUFFERED_BYTES) end('the client is not reading');
    };
    const push = (n: Notification): void => {
      if (replaying) {
        early.push(n);
        return;
      }
      if (sent.has(n.id)) return;
      write(eventOf(n));
    };
    const remove = hub.add(auth.accountId, { push, close: () => end('the server is closing') });
    const heartbeat = setInterval(() => {
      write(': keepalive\n\n');
      // a logout (or an expired session) ends the stream within one heartbeat
      void ctx.store.getSession(auth.tokenHash, ctx.clock.now()).then(
        (s) => (s ? undefined : end('the session ended')),
        () => undefined,
      );
    }, settings.heartbeatSec * 1000);
    function end(why: string, gone = false): void {
      if (!open) return;
      open = false;
      clearInterval(heartbeat);
      remove();
      log.debug({ why }, 'notification stream closed');
      // a client that went away leaves a response that never finishes: its socket is destroyed, or
      // the server would count it as a request in flight and wait for it at close
      if (gone) res.destroy();
      else res.end();
    }
    // the response's close: the socket went (a client that stopped, a network cut)
    res.on('close', () => end('the client went away', true));
    res.on('error', () => end('write error', true));

    try {
      // missed notifications first: those after Last-Event-ID, oldest first
      const from = lastEventId ? await ctx.store.getNotification(auth.accountId, lastEventId) : null;
      if (from) {
        let cursor = { receivedAt: from.receivedAt, id: from.id };
        for (let n = 0; open && n < REPLAY_MAX; ) {
          const page = await ctx.store.listNotificationsAfter(auth.accountId, cursor, REPLAY_PAGE);
          for (const row of page) {
            const json = notificationJson(row);
            sent.add(json.id);
            write(eventOf(json));
          }
          n += page.length;
          if (page.length < REPLAY_PAGE) break;
          const last = page[page.length - 1]!;
          cursor = { receivedAt: last.receivedAt, id: last.id };
        }
      }
    } catch (err) {
      log.error({ err }, 'notification replay failed');
      end('replay failed');
      return;
    }
    replaying = false;
    for (const n of early) push(n);
    early.length = 0;
    sent.clear();
    log.debug('notification stream open');
  });

  app.put('/v1/account/webhook', async (req) => {
    const auth = await requireSubscriber(ctx, req);
    const body = parseInput(WebhookRequest, req.body, 'body');
    const problem = webhookUrlProblem(body.url, settings.webhook.allowInsecure);
    if (problem) throw new CamvaultError('WEBHOOK_URL_INVALID', undefined, [{ path: 'body.url', message: problem }]);
    const createdAt = ctx.clock.now();
    if (!(await ctx.store.putWebhook({ accountId: auth.accountId, url: body.url, secret: body.secret, createdAt }))) {
      throw new CamvaultError('UNAUTHENTICATED');
    }
    req.log.info({ accountId: auth.accountId, host: new URL(body.url).host }, 'webhook set');
    const res: WebhookResponse = { webhook: { url: body.url, createdAt: new Date(createdAt).toISOString() } };
    return res;
  });

  app.delete('/v1/account/webhook', async (req, reply) => {
    const auth = await requireSubscriber(ctx, req);
    if (await ctx.store.deleteWebhook(auth.accountId)) req.log.info({ accountId: auth.accountId }, 'webhook removed');
    return reply.code(204).send();
  });
}
