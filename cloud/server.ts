import type { FastifyInstance } from 'fastify';
import { mkdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { systemClock, type Clock } from '../shared/clock.js';
import { createLogger, type Logger } from '../shared/log.js';
import { resumeCancellations } from './account-cancel.js';
import { appContext, buildApp } from './app.js';
import { ConfigError, loadCloudConfig, resolveUrlSigningSecret, type CloudConfig } from './config.js';
import { createCloudJobs, type JobScheduler } from './jobs/index.js';
import { loadTlsMaterial } from './http/tls.js';
import { resolveSecurityLogKey } from './ip-crypto.js';
import { createMailer } from './mail/index.js';
import { openBroker, type DeviceBroker } from './mqtt/index.js';
import { eraseOldNotifications } from './notifications/erase.js';
import { SmtpMailer } from './mail/smtp.js';
import type { Mailer } from './mail/types.js';
import { LocalObjectStore } from './objects/local.js';
import { S3ObjectStore } from './objects/s3.js';
import type { ObjectStore } from './objects/types.js';
import { eraseOldSecurityLog } from './security-log.js';
import { PostgresStore } from './store/postgres.js';
import { SqliteStore } from './store/sqlite.js';
import type { Store } from './store/types.js';

export interface StartServerOptions {
  clock?: Clock;
  logger?: Logger;
  /** when config.port is taken, listen on a free port instead of failing (the demo) */
  fallbackToFreePort?: boolean;
  /** how long close() lets requests in flight finish before it cuts every connection */
  closeGraceMs?: number;
  /**
   * Schedule the background jobs (cloud/jobs/). Default: config.jobs.enabled,
   * except on an injected clock (tests), where the default is false: cron
   * fires on real time, and a pass would act on whatever time the test last
   * set, at a random moment of the test. Passes still run by hand
   * (server.jobs.run('retention')).
   */
  jobs?: boolean;
}

export interface RunningServer {
  app: FastifyInstance;
  /** the base URL the server answers at (config.publicUrl, or the listen address) */
  url: string;
  config: CloudConfig;
  store: Store;
  objects: ObjectStore;
  /** the cloud's own mail: tests and the demo read a DevOutbox's messages */
  mailer: Mailer;
  /** the background jobs: scheduled when StartServerOptions.jobs (or config.jobs.enabled); run('retention') runs a pass now */
  jobs: JobScheduler;
  /** idempotent: a second call joins the first */
  close(): Promise<void>;
}

/** fastify's one start-up line, in our words */
const listenTextResolver = (address: string): string => `camvault cloud listening on ${address}`;

function urlOf(address: AddressInfo, secure: boolean): string {
  const wildcard = address.address === '0.0.0.0' || address.address === '::';
  const host = wildcard ? '127.0.0.1' : address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `${secure ? 'https' : 'http'}://${host}:${address.port}`;
}

/**
 * The object store the configuration selects: the s3 driver when `config.s3` is
 * set (CAMVAULT_S3_*), else the local driver in <dataDir>/objects. Nothing is
 * contacted yet; check() does that.
 */
async function openObjectStore(
  config: CloudConfig,
  getPublicUrl: () => string,
  clock: Clock | undefined,
): Promise<ObjectStore> {
  if (config.s3) {
    // The SDK warns once per process, on stderr and over several lines, that its
    // releases after January 2027 need Node 22. It concerns upgrading the pinned
    // SDK, not running this one; left on, it breaks the one-line start-up
    // contract (a failed check would print the notice, then the reason). An
    // operator who wants it sets the variable to anything but "true".
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    return new S3ObjectStore({ ...config.s3, multipartThresholdBytes: config.multipartThresholdBytes });
  }
  return new LocalObjectStore({
    root: join(config.dataDir, 'objects'),
    secret: await resolveUrlSigningSecret(config),
    publicUrl: getPublicUrl,
    clock,
  });
}

/**
 * The metadata store the configuration selects: PostgreSQL when
 * config.databaseUrl is set (CAMVAULT_DATABASE_URL), else the SQLite file in
 * dataDir. PostgresStore.open connects and migrates: an unreachable server,
 * a refused login or a newer schema reject with one line naming the server
 * (never the URL's password), before any port is taken.
 */
async function openMetadataStore(config: CloudConfig, logger: Logger): Promise<Store> {
  if (config.databaseUrl) {
    const store = await PostgresStore.open({
      url: config.databaseUrl,
      poolSize: config.databasePoolSize,
      onIdleError: (err) => logger.warn({ err: err.message }, 'postgresql connection lost; the pool reconnects'),
    });
    logger.info({ store: 'postgresql', target: store.target, schemaVersion: store.schemaVersion }, 'metadata store ready');
    return store;
  }
  return new SqliteStore({ path: join(config.dataDir, 'camvault.db') });
}

/**
 * Opens the stores (PostgreSQL when config.databaseUrl is set, else the SQLite
 * file in config.dataDir; the s3 driver when
 * config.s3 is set, else local objects in config.dataDir), builds the app and
 * listens on config.host:config.port (port 0 picks a free port), over HTTPS
 * when config.tls names a certificate and key. When config.publicUrl is unset,
 * signed URLs use the listen address (https:// with TLS).
 *
 * The object store is checked first: an unreachable endpoint, a missing bucket
 * or refused credentials reject with the driver's one-line error before any
 * port is taken or database opened.
 */
export async function startServer(config: CloudConfig, opts: StartServerOptions = {}): Promise<RunningServer> {
  const logger = opts.logger ?? createLogger({ name: 'cloud', level: config.logLevel });
  // first: a certificate that cannot be read or used stops start-up with one line, before anything is opened
  const https = config.tls ? loadTlsMaterial(config.tls) : undefined;
  await mkdir(config.dataDir, { recursive: true });

  let publicUrl = config.publicUrl;
  const getPublicUrl = (): string => {
    if (publicUrl === undefined) throw new Error('the public URL is known only once the server listens');
    return publicUrl;
  };

  const objects = await openObjectStore(config, getPublicUrl, opts.clock);
  try {
    await objects.check();
  } catch (err) {
    await objects.close();
    throw err;
  }
  logger.info(objects instanceof S3ObjectStore ? { objects: 's3', bucket: objects.bucket } : { objects: objects.driver }, 'object store ready');
  // after the object store's check, so a failed start-up leaves nothing behind;
  // a key file that holds no key stops start-up with one line
  let securityLogKey: Buffer;
  try {
    securityLogKey = await resolveSecurityLogKey(config);
  } catch (err) {
    await objects.close();
    throw err;
  }
  if (config.databaseUrl && config.securityLogKey === undefined) {
    logger.warn('no CAMVAULT_SECURITY_LOG_KEY: this node keeps its own key in its data directory; nodes sharing a database need the same key to read each other\'s security-log entries');
  }
  let store: Store;
  try {
    store = await openMetadataStore(config, logger);
  } catch (err) {
    await objects.close();
    throw err;
  }

  // the MQTT broker: aedes listening here, or the external Mosquitto (CAMVAULT_MQTT_URL) connected and set up
  let broker: DeviceBroker;
  try {
    broker = await openBroker(config, { store, logger, tls: https, fallbackToFreePort: opts.fallbackToFreePort, now: opts.clock ? () => opts.clock!.now() : undefined });
  } catch (err) {
    await store.close();
    await objects.close();
    throw err;
  }

  const mailer = createMailer(config.mail);
  if (mailer instanceof SmtpMailer) logger.info({ mail: 'smtp', relay: mailer.endpoint }, 'mail relay configured');
  // warn: without a relay nobody outside this process receives a code, so nobody can sign up
  else logger.warn({ mail: 'outbox' }, 'no SMTP relay configured (CAMVAULT_SMTP_URL): verification and reset codes stay in the development outbox');
  const app = buildApp({ config, store, objects, clock: opts.clock, logger, publicUrl: getPublicUrl, https, mailer, securityLogKey, broker });
  app.addHook('onClose', async () => {
    await mailer.close();
  });
  const jobs = createCloudJobs({ settings: config.jobs, store, objects, clock: opts.clock ?? systemClock, logger });
  // account rights (issue 6): unfinished cancellations another node left, and the security log's 30 days
  jobs.add('account-cancellations', '* * * * *', async (run) => {
    const c = await resumeCancellations(appContext(app), { log: logger, signal: run.signal });
    for (const [name, n] of Object.entries(c)) run.count(name, n);
  });
  jobs.add('security-log-erase', '41 * * * *', async (run) => {
    run.count('entriesErased', await eraseOldSecurityLog(store, (opts.clock ?? systemClock).now(), run.signal));
  });
  // notifications (issue 7) are kept notifications.retentionDays, for SSE resume
  jobs.add('notifications-erase', '23 * * * *', async (run) => {
    run.count('notificationsErased', await eraseOldNotifications(store, (opts.clock ?? systemClock).now(), config.notifications.retentionDays, run.signal));
  });
  // before the server and the stores close: a pass in flight ends its batch first
  app.addHook('preClose', async () => {
    await jobs.close();
  });
  try {
    try {
      await app.listen({ host: config.host, port: config.port, listenTextResolver });
    } catch (err) {
      if (!opts.fallbackToFreePort || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
      logger.warn({ port: config.port }, 'port taken; listening on a free port instead');
      await app.listen({ host: config.host, port: 0, listenTextResolver });
    }
  } catch (err) {
    await app.close(); // closes the stores too
    throw err;
  }
  const listenUrl = urlOf(app.server.address() as AddressInfo, https !== undefined);
  if (publicUrl === undefined) {
    publicUrl = listenUrl;
    if (config.host === '0.0.0.0' || config.host === '::') {
      logger.warn('listening on every interface without CAMVAULT_PUBLIC_URL: signed URLs point at 127.0.0.1');
    }
  }

  if (opts.jobs ?? (config.jobs.enabled && opts.clock === undefined)) {
    jobs.start();
    logger.info({ jobs: jobs.names, retentionCron: config.jobs.retentionCron, sweepCron: config.jobs.sweepCron }, 'background jobs scheduled');
  }

  let closing: Promise<void> | undefined;
  return {
    app,
    url: publicUrl,
    config,
    store,
    objects,
    mailer,
    jobs,
    close: () => (closing ??= closeGracefully(app, opts.closeGraceMs ?? 5000)),
  };
}

/**
 * Requests in flight get `graceMs` to finish; then every connection is cut. A
 * client that stops reading a download (or a camera that stalls mid-upload) must
 * not hold a shutdown for the two minutes of the connection timeout.
 */
async function closeGracefully(app: FastifyInstance, graceMs: number): Promise<void> {
  const timer = setTimeout(() => app.server.closeAllConnections(), graceMs);
  timer.unref();
  try {
    await app.close();
  } finally {
    clearTimeout(timer);
  }
}

function configFileFromArgv(argv: string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--config') {
      const file = argv[i + 1];
      if (!file) throw new ConfigError('--config needs a file');
      return file;
    }
    if (arg.startsWith('--config=')) return arg.slice('--config='.length);
    throw new ConfigError(`unknown argument ${arg}; usage: npm run cloud -- [--config FILE]`);
  }
  return undefined;
}

async function main(): Promise<void> {
  let config: CloudConfig;
  try {
    config = loadCloudConfig({ file: configFileFromArgv(process.argv.slice(2)) });
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`camvault cloud: ${err.message}`);
      process.exit(1);
    }
    throw err;
  }
  let server: RunningServer;
  try {
    server = await startServer(config);
  } catch (err) {
    // one line whatever the cause (the s3 driver's errors already are one line)
    console.error(`camvault cloud: cannot start: ${(err as Error).message.replace(/\s*\n\s*/g, ' ')}`);
    process.exit(1);
  }
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      // a second Ctrl-C: do not wait any longer
      process.exit(1);
    }
    stopping = true;
    server.app.log.info({ signal }, 'shutting down');
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(`camvault cloud: error while closing: ${(err as Error).message}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  void main();
}
