import { randomBytes } from 'node:crypto';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { systemClock, type Clock } from '../shared/clock.js';
import { CamvaultError } from '../shared/errors.js';
import { createLogger, type Logger } from '../shared/log.js';
import type { CloudConfig } from './config.js';
import type { AppContext } from './context.js';
import { clientErrorHandler, errorHandler, frameworkErrorHandler, notFoundHandler } from './http/error-handler.js';
import { applyHardening } from './http/hardening.js';
import type { TlsMaterial } from './http/tls.js';
import { DevOutbox } from './mail/outbox.js';
import type { Mailer } from './mail/types.js';
import { deviceCommandsOver } from './mqtt/index.js';
import type { DeviceBroker, DeviceCommands } from './mqtt/types.js';
import { setUpNotifications } from './notifications/index.js';
import { LocalObjectStore, localObjectRoutes } from './objects/local.js';
import { openapiRoutes } from './openapi.js';
import type { ObjectStore } from './objects/types.js';
import { accountRightsRoutes } from './routes/account-rights.js';
import { accountRoutes } from './routes/accounts.js';
import { clipRoutes } from './routes/clips.js';
import { deviceClaimRoutes } from './routes/device-claim.js';
import { deviceConfigRoutes } from './routes/device-config.js';
import { deviceUploadRoutes } from './routes/device-uploads.js';
import { deviceRoutes } from './routes/devices.js';
import { healthRoutes } from './routes/health.js';
import { planRoutes } from './routes/plans.js';
import { shareRoutes } from './routes/shares.js';
import type { Store } from './store/types.js';

export interface BuildAppOptions {
  config: CloudConfig;
  /** closed by the app's onClose */
  store: Store;
  /** closed by the app's onClose; a LocalObjectStore also gets its /objects routes */
  objects: ObjectStore;
  clock?: Clock;
  logger?: Logger;
  /** the server's base URL, known once it listens */
  publicUrl: () => string;
  /** the cloud's own mail (server.ts makes it from config.mail); absent: a development outbox */
  mailer?: Mailer;
  /** serve HTTPS with this certificate and key (server.ts reads config.tls) */
  https?: TlsMaterial;
  /** the security log's IP key (server.ts: resolveSecurityLogKey); absent: a random key for this process only (tests) */
  securityLogKey?: Buffer;
  /** commands to devices over MQTT (issue 7); default: over `broker` */
  deviceCommands?: DeviceCommands;
  /** the MQTT broker (server.ts opens it); closed by the app's onClose. Absent: no alerts come in, and GET /v1/device/config answers 503 */
  broker?: DeviceBroker;
}

/** the context buildApp handed its routes, for what runs beside them (server.ts's jobs) */
const CONTEXTS = new WeakMap<FastifyInstance, AppContext>();

/** The AppContext of an app made by buildApp. */
export function appContext(app: FastifyInstance): AppContext {
  const ctx = CONTEXTS.get(app);
  if (!ctx) throw new Error('not an app made by buildApp');
  return ctx;
}

/** proxy-addr's meaning of a number: trust the first n hops from the socket */
function trustHops(n: number): (addr: string, hop: number) => boolean {
  return (_addr, hop) => hop < n;
}

/**
 * The cloud's HTTP API as a fastify instance. It never listens (server.ts
 * does), so tests can run it on port 0 or through inject().
 */
export function buildApp(opts: BuildAppOptions): FastifyInstance {
  const { config, store, objects } = opts;
  const logger = opts.logger ?? createLogger({ name: 'cloud', level: config.logLevel });
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    bodyLimit: config.bodyLimitBytes,
    // req.ip (rate limits, security log) from X-Forwarded-For only through the configured proxies
    // (a hop count as the function proxy-addr makes of it: fastify's types lack the number form)
    trustProxy: typeof config.trustProxy === 'number' ? trustHops(config.trustProxy) : config.trustProxy,
    // fastify's own 503 while closing answers with a body outside our catalogue;
    // the onRequest hook below gives the same 503 as SHUTTING_DOWN instead
    return503OnClosing: false,
    clientErrorHandler,
    // a malformed escape or an overlong parameter, before routing: a catalogue answer too
    frameworkErrors: frameworkErrorHandler,
    // a socket silent this long is dropped: a stalled upload then aborts and its
    // temp file goes, instead of holding a connection open forever
    connectionTimeout: 120_000,
    // object keys (up to 1024 characters) arrive as the /objects/* wildcard
    routerOptions: { maxParamLength: 1100 },
    // one access line per request (below) instead of fastify's two: on the
    // presign route logging was the largest cost after the signing itself
    logController: new LogController({ disableRequestLogging: true }),
    // fastify types an https instance as another generic; routes and hooks see the same request and reply
    ...(opts.https ? ({ https: opts.https } as object) : {}),
  });
  // before any route: helmet, CORS, and the body limit of every route (onRoute)
  applyHardening(app, config, { secure: opts.https !== undefined || config.publicUrl?.startsWith('https://') === true });

  const ctx: AppContext = {
    config,
    store,
    objects,
    clock: opts.clock ?? systemClock,
    publicUrl: opts.publicUrl,
    mailer: opts.mailer ?? new DevOutbox(),
    securityLogKey: opts.securityLogKey ?? randomBytes(32),
    deviceCommands: opts.deviceCommands ?? (opts.broker ? deviceCommandsOver(opts.broker) : undefined),
    broker: opts.broker,
  };
  CONTEXTS.set(app, ctx);

  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onRequest', async (_req, reply) => {
    if (closing) {
      reply.header('connection', 'close');
      throw new CamvaultError('SHUTTING_DOWN');
    }
  });
  // Resources close after the server has stopped taking requests, the object
  // store before the metadata store (reverse order of start-up).
  app.addHook('onClose', async () => {
    // the broker first (no more alerts), and the alerts in hand stored, while the stores are open
    await notifications.close();
    await objects.close();
    await store.close();
  });

  app.addHook('onResponse', async (req, reply) => {
    req.log.info({ req, status: reply.statusCode, ms: Math.round(reply.elapsedTime * 10) / 10 }, 'request');
  });

  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler(notFoundHandler);

  // JSON only: a text/plain body is 415, not a string that fails validation
  app.removeContentTypeParser('text/plain');
  // An empty body with a JSON content type reads as no body (clients that set
  // the header on every request, e.g. POST …/complete); the schema decides.
  const defaultJson = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    if (body === '' || body.length === 0) {
      done(null, undefined);
      return;
    }
    defaultJson(req, body as string, done);
  });

  void app.register(healthRoutes);
  void app.register(openapiRoutes, ctx);
  void app.register(accountRoutes, ctx);
  void app.register(planRoutes, ctx);
  void app.register(deviceRoutes, ctx);
  void app.register(shareRoutes, ctx);
  void app.register(deviceClaimRoutes, ctx);
  void app.register(deviceUploadRoutes, ctx);
  void app.register(clipRoutes, ctx);
  void app.register(deviceConfigRoutes, ctx);
  const notifications = setUpNotifications(app, ctx, opts.broker);
  void app.register(accountRightsRoutes, ctx);
  if (objects instanceof LocalObjectStore) void app.register(localObjectRoutes, { store: objects });

  return app;
}
