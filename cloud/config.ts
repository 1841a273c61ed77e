import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import cron from 'node-cron';
import { z } from 'zod';
import { PlanName } from '../shared/contracts/index.js';
import { KEY32_RULE, parseKey32 } from './ip-crypto.js';
import { keptSecret } from './secret-file.js';

/**
 * A configuration value is wrong. The message is one line that names the
 * setting and what is wrong with it; the program prints it and exits 1.
 */
export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

const GB = 1000 ** 3;

const PlanLimits = z
  .object({
    retentionDays: z.number().int().positive(),
    cameras: z.number().int().positive(),
    storageBytes: z.number().int().positive(),
  })
  .strict();
export type PlanLimits = z.infer<typeof PlanLimits>;

/** The plan table of DESIGN.md, "API sketch". Plans live in configuration. */
export const DEFAULT_PLANS: Record<string, PlanLimits> = {
  basic: { retentionDays: 7, cameras: 1, storageBytes: 30 * GB },
  standard: { retentionDays: 30, cameras: 5, storageBytes: 200 * GB },
  premium: { retentionDays: 60, cameras: 10, storageBytes: 800 * GB },
};

const S3Settings = z
  .object({
    /** e.g. http://127.0.0.1:7480 for Ceph RGW; absent means AWS */
    endpoint: z.string().url().optional(),
    region: z.string().min(1).default('us-east-1'),
    bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be a valid bucket name'),
    accessKeyId: z.string().min(1),
    secretAccessKey: z.string().min(1),
    forcePathStyle: z.boolean().default(false),
  })
  .strict();
export type S3Settings = z.output<typeof S3Settings>;

const LogLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

/**
 * The cloud's own mail (verification and reset codes). With no smtpUrl it goes
 * to the in-memory development outbox (cloud/mail/outbox.ts), which the demo
 * prints and nobody else reads. The URL holds the relay's password: a config
 * error names the field, never the value.
 */
const MailSettings = z
  .object({
    /** smtp://user:pass@host:587 (STARTTLS when offered) or smtps://…:465 */
    smtpUrl: z
      .string()
      .refine((u) => /^smtps?:\/\/[^\s/]+/i.test(u), 'must be an smtp:// or smtps:// URL')
      .optional(),
    from: z.string().min(3).max(254).default('camvault <no-reply@camvault.local>'),
  })
  .strict();
export type MailSettings = z.output<typeof MailSettings>;

/** At most `max` requests per fixed window of `windowSec` seconds. */
const RateLimit = z
  .object({
    max: z.number().int().min(1),
    windowSec: z.number().int().min(1).max(7 * 24 * 3600),
  })
  .strict();
export type RateLimit = z.output<typeof RateLimit>;

/**
 * Counters live in the metadata store (cloud/http/rate-limit.ts), so every
 * node sees the same ones. Per-IP limits are generous: many people can sit
 * behind one address.
 */
const RateLimits = z
  .object({
    /** POST /v1/sessions and PATCH /v1/account, per account email (known or not) */
    loginPerAccount: RateLimit.default({ max: 10, windowSec: 900 }),
    loginPerIp: RateLimit.default({ max: 100, windowSec: 900 }),
    /** POST /v1/accounts and /v1/accounts/password-reset: each may send a mail */
    mailPerEmail: RateLimit.default({ max: 5, windowSec: 3600 }),
    mailPerIp: RateLimit.default({ max: 100, windowSec: 3600 }),
    /** POST /v1/accounts/verify and …/password-reset/confirm (each code also allows only a few attempts) */
    codePerIp: RateLimit.default({ max: 100, windowSec: 900 }),
    /** POST /v1/device/claim */
    claimPerSerial: RateLimit.default({ max: 10, windowSec: 900 }),
    claimPerIp: RateLimit.default({ max: 100, windowSec: 900 }),
  })
  .strict();
export type RateLimits = z.output<typeof RateLimits>;

/**
 * A postgres:// or postgresql:// URL (libpq's form; `?options=-c search_path=…`
 * picks a schema). The messages never repeat the value: it may hold a password.
 */
const DATABASE_URL_RULE = 'must be a postgres:// or postgresql:// URL, or unset for SQLite';
const DatabaseUrl = z.string().refine((u) => {
  if (!/^postgres(ql)?:\/\//.test(u)) return false;
  try {
    // libpq's `postgres://user@/db?host=/run/postgresql` (a socket, no host) is no WHATWG URL
    new URL(u.replace('@/', '@localhost/'));
    return true;
  } catch {
    return false;
  }
}, DATABASE_URL_RULE);

/** HTTPS: PEM files; both or neither (CAMVAULT_TLS_CERT_FILE, CAMVAULT_TLS_KEY_FILE). Read at start-up (cloud/http/tls.ts). */
const TlsSettings = z
  .object({
    /** the server certificate, followed by any intermediates */
    certFile: z.string().min(1, 'must name a PEM file'),
    keyFile: z.string().min(1, 'must name a PEM file'),
  })
  .strict();
export type TlsSettings = z.output<typeof TlsSettings>;

/** mqtt:// or mqtts:// with a host; the messages never repeat the value */
const MqttUrl = z.string().refine((u) => {
  if (!/^mqtts?:\/\//.test(u)) return false;
  try {
    return new URL(u).hostname !== '';
  } catch {
    return false;
  }
}, 'must be an mqtt:// or mqtts:// URL with a host');

/**
 * The MQTT broker (DESIGN.md, "Embedded defaults and production engines").
 * Without `url`, aedes runs inside the cloud process and listens on
 * host:port, over TLS with the cloud's own certificate when `tls` is set.
 * With `url` (CAMVAULT_MQTT_URL), the cloud connects to an external Mosquitto 2
 * with the dynamic security plugin as the admin client named here, and
 * provisions each device's client and role over $CONTROL.
 */
const MqttSettings = z
  .object({
    /** an external Mosquitto; absent: aedes inside the cloud */
    url: MqttUrl.optional(),
    /** the dynsec admin client the cloud logs in as (CAMVAULT_MQTT_ADMIN_USER / _PASSWORD) */
    adminUser: z.string().min(1).max(256).optional(),
    adminPassword: z.string().min(1).max(1024).optional(),
    /** a CA certificate (PEM) trusted for an mqtts:// url, besides Node's roots */
    caFile: z.string().min(1).optional(),
    /** where aedes listens; default: the HTTP host */
    host: z.string().min(1).optional(),
    /** aedes's port; default 1883, or a free port when the HTTP port is 0 (tests) */
    port: z.number().int().min(0).max(65535).optional(),
    /** the broker URL devices are told (claim answer, GET /v1/device/config); default: derived from the listen address or url */
    publicUrl: MqttUrl.optional(),
    /** how long a $CONTROL command, or the delivery of an unbind command, may take */
    commandTimeoutMs: z.number().int().min(100).max(120_000).default(10_000),
  })
  .strict()
  .refine((m) => m.url === undefined || (m.adminUser !== undefined && m.adminPassword !== undefined), {
    message: 'an external broker (url, CAMVAULT_MQTT_URL) needs adminUser and adminPassword (CAMVAULT_MQTT_ADMIN_USER, CAMVAULT_MQTT_ADMIN_PASSWORD)',
  });
export type MqttSettings = z.output<typeof MqttSettings>;

/** The account's webhook deliveries: bounded retries, bounded memory, never in the way of alert intake. */
const WebhookSettings = z
  .object({
    /** development only: allow http:// and loopback or private addresses (CAMVAULT_WEBHOOK_ALLOW_INSECURE) */
    allowInsecure: z.boolean().default(false),
    /** one POST may take this long */
    timeoutMs: z.number().int().min(100).max(60_000).default(5000),
    /** tries of one delivery in all (first included) */
    maxAttempts: z.number().int().min(1).max(10).default(4),
    /** the wait before the first retry; each next one waits 4 times longer, up to maxDelayMs */
    minDelayMs: z.number().int().min(1).max(600_000).default(1000),
    maxDelayMs: z.number().int().min(1).max(3_600_000).default(60_000),
    /** deliveries waiting or retrying at once, per node; beyond it a delivery is dropped and counted */
    maxQueued: z.number().int().min(1).max(1_000_000).default(10_000),
    /** POSTs in flight at once, per node */
    concurrency: z.number().int().min(1).max(256).default(16),
  })
  .strict();
export type WebhookSettings = z.output<typeof WebhookSettings>;

/** Alerts turned into notifications (SSE at GET /v1/notifications, and the account's webhook). */
const NotificationSettings = z
  .object({
    /** notifications are kept this long, so an SSE client can resume with Last-Event-ID */
    retentionDays: z.number().int().min(1).max(90).default(7),
    /** a comment line on every open stream this often, so proxies keep it open and dead clients are found */
    heartbeatSec: z.number().min(0.05).max(300).default(15),
    /** open SSE streams per account, per node */
    maxStreamsPerAccount: z.number().int().min(1).max(1000).default(10),
    /** alerts per device: a bucket of alertBurst, refilled at alertsPerMinute; the rest is dropped and counted */
    alertBurst: z.number().int().min(1).max(10_000).default(10),
    alertsPerMinute: z.number().min(0.1).max(60_000).default(12),
    webhook: WebhookSettings.default({}),
  })
  .strict();
export type NotificationSettings = z.output<typeof NotificationSettings>;

/** a node-cron expression: five fields, or six with seconds first */
const CronExpression = z.string().refine((e) => cron.validate(e), 'must be a cron expression (5 fields, or 6 with seconds first)');

/**
 * The background jobs (cloud/jobs/): retention every minute, the orphan sweep
 * hourly. Every node may run them: nodes coordinate through the database
 * (leases), never through each other.
 */
const JobSettings = z
  .object({
    /** schedule the jobs on this node (CAMVAULT_JOBS_ENABLED); off, passes run only by hand */
    enabled: z.boolean().default(true),
    /** when retention runs (CAMVAULT_RETENTION_CRON); P3 promises expired clips gone within this interval */
    retentionCron: CronExpression.default('* * * * *'),
    /** when the orphan sweep runs (CAMVAULT_SWEEP_CRON) */
    sweepCron: CronExpression.default('17 * * * *'),
    /** clips leased per claim, and keys per object-store delete call (S3 takes at most 1000) */
    retentionBatch: z.number().int().min(1).max(1000).default(1000),
    /** delete calls in flight at once, per node */
    retentionConcurrency: z.number().int().min(1).max(32).default(4),
    /**
     * how long a claim on a batch holds; a node that dies holding one delays
     * those clips by this much. A claim that outlives its lease is harmless:
     * deletes are idempotent, so two nodes at worst delete the same keys.
     */
    retentionLeaseSec: z.number().int().min(10).max(3600).default(120),
    /** objects without a clip, uploads never completed and multipart uploads never finished go after this */
    orphanAgeHours: z.number().int().min(1).max(24 * 30).default(24),
    /** job receipts (job_runs) are kept this long */
    receiptDays: z.number().int().min(1).max(3650).default(90),
  })
  .strict();
export type JobSettings = z.output<typeof JobSettings>;

/**
 * A browser origin allowed to call the API cross-origin: scheme, host and
 * port, nothing else. A '*' is refused: the API answers with account data.
 */
const CorsOrigin = z
  .string()
  .refine((o) => o !== '*', "'*' is not allowed; list each origin (https://app.example.com) that may call the API")
  .refine((o) => o === '*' || /^https?:\/\/[A-Za-z0-9.-]+(:\d{1,5})?$/.test(o), 'each origin must be scheme://host[:port], without a path');

const CloudConfigSchema = z
  .object({
    host: z.string().min(1).default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(8080),
    dataDir: z.string().min(1).default('.data/cloud'),
    /** the base URL clients reach this server at; set from the listen address when absent */
    publicUrl: z
      .string()
      .url()
      .refine((u) => /^https?:\/\//.test(u), 'must be an http:// or https:// URL')
      .transform((u) => u.replace(/\/+$/, ''))
      .optional(),
    /**
     * AES-256-GCM key of the IP addresses in the security log (CAMVAULT_SECURITY_LOG_KEY):
     * 32 bytes as hex or base64; made once and kept in dataDir when absent
     * (cloud/ip-crypto.ts). Several nodes on one database need the same one.
     */
    securityLogKey: z.string().refine((k) => parseKey32(k) !== null, KEY32_RULE).optional(),
    /** HMAC key of the local object store's signed URLs; persisted in dataDir when absent */
    urlSigningSecret: z.string().min(16, 'must be at least 16 characters').optional(),
    plans: z
      .record(PlanName, PlanLimits)
      .refine((p) => Object.keys(p).length > 0, 'at least one plan is required')
      .default(DEFAULT_PLANS),
    sessionTtlHours: z.number().positive().default(720),
    uploadUrlTtlSec: z.number().int().min(1).max(7 * 24 * 3600).default(900),
    viewUrlTtlSec: z.number().int().min(1).max(24 * 3600).default(300),
    bodyLimitBytes: z.number().int().min(1024).default(64 * 1024),
    /** clips above this size upload in parts, each MD5-checked by the store */
    multipartThresholdBytes: z.number().int().min(5 * 1024 * 1024).default(64 * 1024 * 1024),
    /** the s3 driver; absent means the local driver */
    s3: S3Settings.optional(),
    /** PostgreSQL (CAMVAULT_DATABASE_URL); absent means the SQLite file in dataDir */
    databaseUrl: DatabaseUrl.optional(),
    /** connections each node keeps to PostgreSQL (CAMVAULT_DATABASE_POOL_SIZE) */
    databasePoolSize: z.number().int().min(1).max(1000).default(10),
    /** serve HTTPS with this certificate and key; absent: plain HTTP (development, or behind a TLS terminator) */
    tls: TlsSettings.optional(),
    /** browser origins allowed cross-origin (CORS); empty: none */
    corsOrigins: z.array(CorsOrigin).default([]),
    /**
     * Behind a load balancer or reverse proxy, which X-Forwarded-For hops to
     * believe (fastify's trustProxy): false (default: the socket's address is
     * the client's), true (every hop), a number of hops, or the proxies'
     * addresses/CIDRs. Rate limits and the security log key on the client's
     * address, so behind a proxy this must be set, and only to the proxies.
     */
    trustProxy: z.union([z.boolean(), z.number().int().min(1).max(10), z.array(z.string().min(1)).min(1)]).default(false),
    logLevel: LogLevel.default('info'),
    /** the cloud's own mail; absent: the development outbox */
    mail: MailSettings.default({}),
    /** how long a mailed verification or reset code is valid */
    emailCodeTtlMinutes: z.number().int().min(1).max(24 * 60).default(30),
    /** wrong tries a mailed code survives; then it is dead and a new one must be asked for */
    emailCodeMaxAttempts: z.number().int().min(1).max(20).default(5),
    /** after a plan lapses, its clips are kept this long at most, then retention runs out */
    planGraceDays: z.number().int().min(0).max(365).default(30),
    rateLimits: RateLimits.default({}),
    /** background jobs: retention, the orphan sweep (CAMVAULT_JOBS_ENABLED, CAMVAULT_RETENTION_CRON, CAMVAULT_SWEEP_CRON) */
    jobs: JobSettings.default({}),
    /** the MQTT broker: aedes inside the cloud, or an external Mosquitto (CAMVAULT_MQTT_URL) */
    mqtt: MqttSettings.default({}),
    notifications: NotificationSettings.default({}),
  })
  .strict();

export type CloudConfig = z.output<typeof CloudConfigSchema>;
export type CloudConfigInput = z.input<typeof CloudConfigSchema>;

export interface LoadCloudConfigOptions {
  /** a JSON file; its values are overridden by the environment */
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** values that win over both (tests) */
  overrides?: CloudConfigInput;
}

function intFromEnv(name: string, raw: string): number {
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(`invalid config: ${name} must be an integer, got a non-numeric value`);
  return Number(raw.trim());
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unknown error';
    throw new ConfigError(`cannot read config file ${file}: ${code}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${file} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError(`config file ${file} must hold a JSON object`);
  }
  return parsed as Record<string, unknown>;
}

/**
 * CAMVAULT_S3_* select the s3 driver (DESIGN.md, "Configuration"). The bucket is
 * what turns it on; the other names fill in or override the file's `s3` object.
 */
function s3SettingsFromEnv(env: NodeJS.ProcessEnv): Record<string, unknown> | undefined {
  const out: Record<string, unknown> = {};
  if (env.CAMVAULT_S3_ENDPOINT) out.endpoint = env.CAMVAULT_S3_ENDPOINT;
  if (env.CAMVAULT_S3_REGION) out.region = env.CAMVAULT_S3_REGION;
  if (env.CAMVAULT_S3_BUCKET) out.bucket = env.CAMVAULT_S3_BUCKET;
  if (env.CAMVAULT_S3_ACCESS_KEY) out.accessKeyId = env.CAMVAULT_S3_ACCESS_KEY;
  if (env.CAMVAULT_S3_SECRET_KEY) out.secretAccessKey = env.CAMVAULT_S3_SECRET_KEY;
  if (env.CAMVAULT_S3_FORCE_PATH_STYLE) {
    const v = env.CAMVAULT_S3_FORCE_PATH_STYLE.trim().toLowerCase();
    if (!['true', 'false', '1', '0'].includes(v)) throw new ConfigError('invalid config: CAMVAULT_S3_FORCE_PATH_STYLE must be true or false');
    out.forcePathStyle = v === 'true' || v === '1';
  }
  return Object.keys(out).length ? out : undefined;
}

/**
 * CAMVAULT_MQTT_URL selects an external broker (DESIGN.md, "Configuration");
 * the other names fill in or override the file's `mqtt` object.
 */
function mqttSettingsFromEnv(env: NodeJS.ProcessEnv): Record<string, unknown> | undefined {
  const out: Record<string, unknown> = {};
  if (env.CAMVAULT_MQTT_URL) out.url = env.CAMVAULT_MQTT_URL;
  if (env.CAMVAULT_MQTT_ADMIN_USER) out.adminUser = env.CAMVAULT_MQTT_ADMIN_USER;
  if (env.CAMVAULT_MQTT_ADMIN_PASSWORD) out.adminPassword = env.CAMVAULT_MQTT_ADMIN_PASSWORD;
  if (env.CAMVAULT_MQTT_CA_FILE) out.caFile = env.CAMVAULT_MQTT_CA_FILE;
  if (env.CAMVAULT_MQTT_HOST) out.host = env.CAMVAULT_MQTT_HOST;
  if (env.CAMVAULT_MQTT_PORT) out.port = intFromEnv('CAMVAULT_MQTT_PORT', env.CAMVAULT_MQTT_PORT);
  if (env.CAMVAULT_MQTT_PUBLIC_URL) out.publicUrl = env.CAMVAULT_MQTT_PUBLIC_URL;
  return Object.keys(out).length ? out : undefined;
}

/**
 * Reads the cloud configuration: defaults, then the JSON file, then the
 * environment. A wrong value throws a ConfigError with one clear line that
 * names the setting (never its value: it may be a secret).
 */
export function loadCloudConfig(opts: LoadCloudConfigOptions = {}): CloudConfig {
  const env = opts.env ?? process.env;
  const raw: Record<string, unknown> = opts.file ? readConfigFile(opts.file) : {};

  // CAMVAULT_DATABASE_URL selects PostgreSQL; checked here so the line names the variable
  const databaseUrl = env.CAMVAULT_DATABASE_URL;
  if (databaseUrl !== undefined && databaseUrl !== '') {
    if (!DatabaseUrl.safeParse(databaseUrl).success) throw new ConfigError(`invalid config: CAMVAULT_DATABASE_URL ${DATABASE_URL_RULE}`);
    raw.databaseUrl = databaseUrl;
  }
  if (env.CAMVAULT_DATABASE_POOL_SIZE) {
    raw.databasePoolSize = intFromEnv('CAMVAULT_DATABASE_POOL_SIZE', env.CAMVAULT_DATABASE_POOL_SIZE);
  }

  if (env.CAMVAULT_HOST) raw.host = env.CAMVAULT_HOST;
  if (env.CAMVAULT_PORT) raw.port = intFromEnv('CAMVAULT_PORT', env.CAMVAULT_PORT);
  if (env.CAMVAULT_DATA_DIR) raw.dataDir = env.CAMVAULT_DATA_DIR;
  if (env.CAMVAULT_PUBLIC_URL) raw.publicUrl = env.CAMVAULT_PUBLIC_URL;
  if (env.CAMVAULT_URL_SECRET) raw.urlSigningSecret = env.CAMVAULT_URL_SECRET;
  if (env.CAMVAULT_SECURITY_LOG_KEY) {
    // checked here so the line names the variable (never the value)
    if (parseKey32(env.CAMVAULT_SECURITY_LOG_KEY) === null) throw new ConfigError(`invalid config: CAMVAULT_SECURITY_LOG_KEY ${KEY32_RULE}`);
    raw.securityLogKey = env.CAMVAULT_SECURITY_LOG_KEY;
  }
  if (env.CAMVAULT_LOG_LEVEL) raw.logLevel = env.CAMVAULT_LOG_LEVEL;
  if (env.CAMVAULT_MULTIPART_THRESHOLD_BYTES) {
    raw.multipartThresholdBytes = intFromEnv('CAMVAULT_MULTIPART_THRESHOLD_BYTES', env.CAMVAULT_MULTIPART_THRESHOLD_BYTES);
  }
  if (env.CAMVAULT_TLS_CERT_FILE || env.CAMVAULT_TLS_KEY_FILE) {
    const tls: Record<string, unknown> = { ...((raw.tls as object | undefined) ?? {}) };
    if (env.CAMVAULT_TLS_CERT_FILE) tls.certFile = env.CAMVAULT_TLS_CERT_FILE;
    if (env.CAMVAULT_TLS_KEY_FILE) tls.keyFile = env.CAMVAULT_TLS_KEY_FILE;
    raw.tls = tls;
  }
  if (env.CAMVAULT_CORS_ORIGINS !== undefined && env.CAMVAULT_CORS_ORIGINS.trim() !== '') {
    raw.corsOrigins = env.CAMVAULT_CORS_ORIGINS.split(',').map((o) => o.trim()).filter((o) => o !== '');
  }
  if (env.CAMVAULT_TRUST_PROXY !== undefined && env.CAMVAULT_TRUST_PROXY.trim() !== '') {
    const v = env.CAMVAULT_TRUST_PROXY.trim();
    if (v === 'true' || v === 'false') raw.trustProxy = v === 'true';
    else if (/^\d+$/.test(v)) raw.trustProxy = Number(v);
    else raw.trustProxy = v.split(',').map((a) => a.trim()).filter((a) => a !== '');
  }
  if (env.CAMVAULT_SMTP_URL || env.CAMVAULT_MAIL_FROM) {
    const mail: Record<string, unknown> = { ...((raw.mail as object | undefined) ?? {}) };
    if (env.CAMVAULT_SMTP_URL) mail.smtpUrl = env.CAMVAULT_SMTP_URL;
    if (env.CAMVAULT_MAIL_FROM) mail.from = env.CAMVAULT_MAIL_FROM;
    raw.mail = mail;
  }
  const mqttFromEnv = mqttSettingsFromEnv(env);
  if (mqttFromEnv) raw.mqtt = { ...((raw.mqtt as object | undefined) ?? {}), ...mqttFromEnv };
  if (env.CAMVAULT_WEBHOOK_ALLOW_INSECURE) {
    const v = env.CAMVAULT_WEBHOOK_ALLOW_INSECURE.trim().toLowerCase();
    if (!['true', 'false', '1', '0'].includes(v)) throw new ConfigError('invalid config: CAMVAULT_WEBHOOK_ALLOW_INSECURE must be true or false');
    const n = { ...((raw.notifications as Record<string, unknown> | undefined) ?? {}) };
    n.webhook = { ...((n.webhook as object | undefined) ?? {}), allowInsecure: v === 'true' || v === '1' };
    raw.notifications = n;
  }
  if (env.CAMVAULT_JOBS_ENABLED || env.CAMVAULT_RETENTION_CRON || env.CAMVAULT_SWEEP_CRON) {
    const jobs: Record<string, unknown> = { ...((raw.jobs as object | undefined) ?? {}) };
    if (env.CAMVAULT_JOBS_ENABLED) {
      const v = env.CAMVAULT_JOBS_ENABLED.trim().toLowerCase();
      if (!['true', 'false', '1', '0'].includes(v)) throw new ConfigError('invalid config: CAMVAULT_JOBS_ENABLED must be true or false');
      jobs.enabled = v === 'true' || v === '1';
    }
    if (env.CAMVAULT_RETENTION_CRON) jobs.retentionCron = env.CAMVAULT_RETENTION_CRON;
    if (env.CAMVAULT_SWEEP_CRON) jobs.sweepCron = env.CAMVAULT_SWEEP_CRON;
    raw.jobs = jobs;
  }
  const s3FromEnv = s3SettingsFromEnv(env);
  if (s3FromEnv) raw.s3 = { ...((raw.s3 as object | undefined) ?? {}), ...s3FromEnv };
  Object.assign(raw, opts.overrides ?? {});
  if (raw.tls !== undefined && raw.tls !== null && typeof raw.tls === 'object') {
    const t = raw.tls as { certFile?: unknown; keyFile?: unknown };
    if ((t.certFile === undefined) !== (t.keyFile === undefined)) {
      throw new ConfigError(
        'invalid config: tls: set both the certificate and the key (CAMVAULT_TLS_CERT_FILE and CAMVAULT_TLS_KEY_FILE, or tls.certFile and tls.keyFile), or neither',
      );
    }
  }

  const result = CloudConfigSchema.safeParse(raw);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const path = issue.path.join('.') || '(root)';
      // an enum message repeats the received value: name the setting only
      const message = issue.code === 'invalid_enum_value' ? `must be one of ${issue.options.join(', ')}` : issue.message;
      return `${path}: ${message}`;
    });
    throw new ConfigError(`invalid config: ${problems.join('; ')}`);
  }
  return { ...result.data, dataDir: resolve(result.data.dataDir) };
}

/**
 * The secret the local driver signs URLs with. When none is configured, 32
 * random bytes are made once and kept in <dataDir>/url-secret (mode 0600), so a
 * restart does not invalidate URLs already handed out.
 */
export async function resolveUrlSigningSecret(config: CloudConfig): Promise<string> {
  if (config.urlSigningSecret) return config.urlSigningSecret;
  return keptSecret(join(config.dataDir, 'url-secret'), {
    make: () => randomBytes(32).toString('hex'),
    parse: (text) => (text.trim().length >= 32 ? text.trim() : undefined),
    bad: (file) => new ConfigError(`${file} is too short; delete it to make a new secret`),
  });
}
