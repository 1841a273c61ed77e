import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { Serial } from '../shared/contracts/common.js';
import { BindCode, Model } from '../shared/contracts/devices.js';
import { resolveFfmpegPath } from '../shared/ffmpeg.js';
import { DEFAULT_PART_BYTES, MIN_PART_BYTES } from '../shared/multipart.js';

/**
 * The agent's configuration: a JSON file, overridden by environment variables,
 * overridden by explicit overrides (tests, the demo), validated once at
 * start-up. A wrong value stops the agent with one line naming the field.
 */
const AgentConfigSchema = z
  .object({
    serial: Serial,
    model: Model.default('camvault-sim'),
    cloudUrl: z
      .string()
      .url('must be a URL')
      .refine((u) => /^https?:$/.test(new URL(u).protocol), 'must be an http(s) URL')
      .transform((u) => u.replace(/\/+$/, '')),
    /** any ffmpeg input URL: rtsp://, tcp://, a file */
    input: z.string().min(1, 'must not be empty'),
    /** the camera's motion events, NDJSON over TCP */
    eventsUrl: z
      .string()
      .regex(/^tcp:\/\/[^\s/:]+:\d{1,5}$/, 'must look like tcp://host:port')
      .optional(),
    channel: z
      .string()
      .regex(/^[a-z0-9][a-z0-9_-]{0,31}$/, 'must be 1-32 characters a-z 0-9 _ -')
      .default('main'),
    dataDir: z.string().min(1).default('.data/agent'),
    segmentSeconds: z.number().int('must be a whole number').min(1).max(600).default(10),
    ffmpegPath: z.string().min(1).optional(),
    /** used only for the first claim */
    bindCode: BindCode.optional(),
    /** false: the agent refuses a plain http: cloudUrl (P10) */
    development: z.boolean().default(false),
    /**
     * A PEM file of CA certificates the agent trusts for the cloud (a private
     * CA), in addition to Node's bundled public roots: presigned upload URLs
     * may point at a public S3 endpoint. Checked when the config loads.
     */
    caFile: z.string().min(1, 'must name a PEM file').optional(),
    uploadConcurrency: z.number().int().min(1).max(16).default(2),
    /**
     * Clips above 5 MiB are hashed in parts of this size too, so the cloud can
     * take them as a multipart upload (it decides, from its own threshold).
     * S3's smallest part is 5 MiB; upload memory does not grow with it.
     */
    multipartPartBytes: z
      .number()
      .int('must be a whole number')
      .min(MIN_PART_BYTES, 'must be at least 5 MiB (5242880), S3\'s smallest part')
      .max(1024 ** 3, 'must be at most 1 GiB')
      .default(DEFAULT_PART_BYTES),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    /** what happens to the camera's audio: copy (AAC), aac (transcode G.711), drop */
    audio: z.enum(['copy', 'aac', 'drop']).default('copy'),
    /**
     * The ring buffer (issue 4): the segments' quota in bytes (absent: 80% of
     * their file system) and the free space the disk must keep. When either
     * breaks, uploaded clips go first, then unuploaded continuous footage,
     * then events, oldest first; footage lost that way is counted.
     */
    storage: z
      .object({
        maxBytes: z.number().int('must be a whole number').positive('must be more than 0').optional(),
        minFreeBytes: z
          .number()
          .int('must be a whole number')
          .min(0, 'must be 0 or more')
          .default(256 * 1024 * 1024),
      })
      .strict()
      .default({}),
    /** the upload bandwidth cap in bytes a second, all uploads together (a token bucket); 0: none */
    uploadBytesPerSec: z
      .number()
      .int('must be a whole number')
      .min(0, 'must be 0 (no cap) or more')
      .refine((v) => v === 0 || v >= 1024, 'must be 0 (no cap) or at least 1024')
      .default(0),
    /** what the cap lets through at once after a quiet spell; default one second's worth, at least 64 KiB */
    uploadBurstBytes: z.number().int('must be a whole number').min(1024, 'must be at least 1024').optional(),
    /**
     * The MQTT broker (issue 7), overriding the URL the cloud gives at claim
     * and in GET /v1/device/config: mqtts://host:port, or mqtt:// with
     * development only. Absent: the cloud's.
     */
    mqttUrl: z
      .string()
      .url('must be a URL')
      .refine((u) => /^mqtts?:$/.test(new URL(u).protocol), 'must be an mqtt:// or mqtts:// URL')
      .optional(),
    /** alerts kept while the broker is unreachable; beyond, the oldest are dropped and counted */
    alertOutboxMax: z.number().int('must be a whole number').min(1, 'must be at least 1').max(100_000, 'must be at most 100000').default(1000),
    /**
     * How long an alert may wait for its motion's clip to be journaled, so it
     * carries the clip id. 0 (default): published at once, with the clip id
     * only when the alert had to wait for the broker anyway.
     */
    alertClipWaitSec: z.number().int('must be a whole number').min(0, 'must be 0 or more').max(600, 'must be at most 600').default(0),
    /**
     * The simulator's clock-skew fault (issue 8), development only: the agent
     * runs on a clock this many ms off the real one, as a camera that booted
     * without NTP. Every time it stamps (segments, motion, the journal) moves
     * with it. Refused without development: true.
     */
    clockSkewMs: z
      .number()
      .int('must be a whole number')
      .min(-365 * 86_400_000, 'must be at most a year either way')
      .max(365 * 86_400_000, 'must be at most a year either way')
      .default(0),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (!c.development && new URL(c.cloudUrl).protocol !== 'https:') {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['cloudUrl'],
        message: 'must be https:// (plain http is allowed only with development: true)',
      });
    }
    if (!c.development && c.mqttUrl !== undefined && new URL(c.mqttUrl).protocol !== 'mqtts:') {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['mqttUrl'],
        message: 'must be mqtts:// (plain mqtt is allowed only with development: true)',
      });
    }
    if (!c.development && c.clockSkewMs !== 0) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['clockSkewMs'], message: 'is a simulator fault: allowed only with development: true' });
    }
  });

export type AgentConfigInput = z.input<typeof AgentConfigSchema>;
export type AgentConfig = Omit<z.output<typeof AgentConfigSchema>, 'ffmpegPath'> & { ffmpegPath: string };

/** Environment variable → field. FFMPEG_PATH is shared with every program. */
export const AGENT_ENV: Record<string, keyof AgentConfigInput> = {
  CAMVAULT_AGENT_SERIAL: 'serial',
  CAMVAULT_AGENT_MODEL: 'model',
  CAMVAULT_AGENT_CLOUD_URL: 'cloudUrl',
  CAMVAULT_AGENT_INPUT: 'input',
  CAMVAULT_AGENT_EVENTS_URL: 'eventsUrl',
  CAMVAULT_AGENT_CHANNEL: 'channel',
  CAMVAULT_AGENT_DATA_DIR: 'dataDir',
  CAMVAULT_AGENT_SEGMENT_SECONDS: 'segmentSeconds',
  CAMVAULT_AGENT_BIND_CODE: 'bindCode',
  CAMVAULT_AGENT_DEVELOPMENT: 'development',
  CAMVAULT_AGENT_CA_FILE: 'caFile',
  CAMVAULT_AGENT_UPLOAD_CONCURRENCY: 'uploadConcurrency',
  CAMVAULT_AGENT_MULTIPART_PART_BYTES: 'multipartPartBytes',
  CAMVAULT_AGENT_LOG_LEVEL: 'logLevel',
  CAMVAULT_AGENT_AUDIO: 'audio',
  CAMVAULT_AGENT_UPLOAD_BYTES_PER_SEC: 'uploadBytesPerSec',
  CAMVAULT_AGENT_UPLOAD_BURST_BYTES: 'uploadBurstBytes',
  CAMVAULT_AGENT_MQTT_URL: 'mqttUrl',
  CAMVAULT_AGENT_ALERT_OUTBOX_MAX: 'alertOutboxMax',
  CAMVAULT_AGENT_ALERT_CLIP_WAIT_SEC: 'alertClipWaitSec',
  CAMVAULT_AGENT_CLOCK_SKEW_MS: 'clockSkewMs',
  FFMPEG_PATH: 'ffmpegPath',
};

/** the ring buffer's settings (the nested `storage` object), from the environment */
const STORAGE_ENV: Record<string, 'maxBytes' | 'minFreeBytes'> = {
  CAMVAULT_AGENT_STORAGE_MAX_BYTES: 'maxBytes',
  CAMVAULT_AGENT_STORAGE_MIN_FREE_BYTES: 'minFreeBytes',
};

const NUMERIC: ReadonlySet<string> = new Set([
  'segmentSeconds',
  'uploadConcurrency',
  'multipartPartBytes',
  'uploadBytesPerSec',
  'uploadBurstBytes',
  'alertOutboxMax',
  'alertClipWaitSec',
  'clockSkewMs',
]);
const BOOLEAN: ReadonlySet<string> = new Set(['development']);

/** A configuration problem: its message is the one line the CLI prints. */
export class AgentConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AgentConfigError';
  }
}

export interface LoadAgentConfigOptions {
  file?: string;
  env?: NodeJS.ProcessEnv;
  overrides?: Partial<AgentConfigInput>;
}

function fromEnv(env: NodeJS.ProcessEnv): { values: Record<string, unknown>; sources: Record<string, string> } {
  const values: Record<string, unknown> = {};
  const sources: Record<string, string> = {};
  for (const [name, field] of Object.entries(AGENT_ENV)) {
    const raw = env[name];
    if (raw === undefined || raw === '') continue;
    let value: unknown = raw;
    if (NUMERIC.has(field)) value = /^\s*-?\d+(\.\d+)?\s*$/.test(raw) ? Number(raw) : raw;
    else if (BOOLEAN.has(field)) value = /^(1|true|yes|on)$/i.test(raw) ? true : /^(0|false|no|off)$/i.test(raw) ? false : raw;
    values[field] = value;
    sources[field] = name;
  }
  return { values, sources };
}

export function loadAgentConfig(opts: LoadAgentConfigOptions = {}): AgentConfig {
  const env = opts.env ?? process.env;
  let fileValues: Record<string, unknown> = {};
  if (opts.file) {
    let text: string;
    try {
      text = readFileSync(opts.file, 'utf8');
    } catch (err) {
      throw new AgentConfigError(`cannot read config file ${opts.file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
    try {
      const parsed: unknown = JSON.parse(text);
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
      fileValues = parsed as Record<string, unknown>;
    } catch (err) {
      throw new AgentConfigError(`config file ${opts.file} is not a JSON object: ${(err as Error).message}`);
    }
  }
  const { values: envValues, sources } = fromEnv(env);
  const merged: Record<string, unknown> = { ...fileValues, ...envValues };
  for (const [name, key] of Object.entries(STORAGE_ENV)) {
    const raw = env[name];
    if (raw === undefined || raw === '') continue;
    const base = merged.storage;
    merged.storage = { ...(typeof base === 'object' && base !== null && !Array.isArray(base) ? base : {}), [key]: /^\s*-?\d+(\.\d+)?\s*$/.test(raw) ? Number(raw) : raw };
    sources.storage = name;
  }
  for (const [k, v] of Object.entries(opts.overrides ?? {})) {
    if (v !== undefined) {
      merged[k] = v;
      sources[k] = 'overrides';
    }
  }
  const result = AgentConfigSchema.safeParse(merged);
  if (!result.success) {
    const issue = result.error.issues[0];
    const field = issue?.path.join('.') || '(root)';
    const from = sources[String(issue?.path[0])] ?? (opts.file ? opts.file : undefined);
    if (issue?.code === z.ZodIssueCode.unrecognized_keys) {
      throw new AgentConfigError(`invalid agent config: unknown field ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}${opts.file ? ` (in ${opts.file})` : ''}`);
    }
    if (issue?.code === z.ZodIssueCode.invalid_type && issue.received === 'undefined') {
      const envName = Object.entries(AGENT_ENV).find(([, f]) => f === issue.path[0])?.[0];
      throw new AgentConfigError(`invalid agent config: ${field}: is required (set "${field}" in the config file${envName ? ` or ${envName}` : ''})`);
    }
    throw new AgentConfigError(`invalid agent config: ${field}: ${issue?.message ?? 'invalid'}${from ? ` (from ${from})` : ''}`);
  }
  const c = result.data;
  const caFile = c.caFile !== undefined ? checkCaFile(resolve(c.caFile), sources.caFile ?? opts.file) : undefined;
  let ffmpegPath = c.ffmpegPath;
  if (!ffmpegPath) {
    try {
      ffmpegPath = resolveFfmpegPath({});
    } catch (err) {
      throw new AgentConfigError(`invalid agent config: ffmpegPath: ${(err as Error).message}`);
    }
  }
  return { ...c, dataDir: resolve(c.dataDir), ffmpegPath, ...(caFile !== undefined ? { caFile } : {}) };
}

/**
 * The CA file must hold at least one certificate that parses: a typo or an
 * empty file would otherwise show up later as every upload refused.
 */
function checkCaFile(file: string, from: string | undefined): string {
  const where = from ? ` (from ${from})` : '';
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (err) {
    throw new AgentConfigError(`invalid agent config: caFile: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'unknown error'}${where}`);
  }
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new AgentConfigError(`invalid agent config: caFile: ${file} holds no PEM certificate${where}`);
  for (const block of blocks) {
    try {
      new X509Certificate(block);
    } catch {
      throw new AgentConfigError(`invalid agent config: caFile: ${file} holds a certificate that does not parse${where}`);
    }
  }
  return file;
}
