/**
 * `npm run bench -- presign`: how fast the cloud hands out upload URLs.
 *
 * - presign_per_s_endpoint: POST /v1/device/uploads (device auth, database
 *   lookups and the upload row, signing) on a real cloud on loopback: SQLite, and
 *   the s3 driver when CAMVAULT_S3_* are set (presigning is offline: no request
 *   reaches the S3; the start-up check does), else the local driver. Logs at
 *   info, written to /dev/null. Each request presigns a fresh clip id and is never completed, so every one
 *   leaves a pending upload row behind, as an abandoned upload does: work that
 *   grows with an account's pending uploads shows up here.
 * - presign_per_s_bare_route: the same load against a bare fastify route that
 *   returns a constant of the same shape. endpoint / bare is the figure with a
 *   target: the share of raw HTTP throughput the presign path keeps.
 * - signer rates: the signer the s3 driver uses (SignatureV4.presign) against the
 *   SDK's getSignedUrl, for the same PutObject with Content-MD5 and
 *   Content-Length signed in (DESIGN.md, "Object store contract").
 *
 * The load comes from a second process (this file run with --load-client), so
 * the client's own work does not run on the server's event loop: in one process
 * every request would cost the client's JSON and socket work on the same thread,
 * which lowers both rates and pulls their ratio towards 1. On a 2-core machine the
 * client gets one core and the server the other. 32 requests in flight over
 * keep-alive connections (http.Agent); 1 s of warm-up on each target, then 5 s
 * measured on each (PRESIGN_BENCH_SECONDS), in alternating 1 s slices so that a
 * busy moment of a shared machine falls on both targets alike.
 *
 * Prints one JSON line per figure; exits 1 when a figure misses its target or a
 * request fails.
 */
import { fork } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import Fastify from 'fastify';
import { pino } from 'pino';
import { ulid } from 'ulid';
import { figurePrinter, round } from './_figures.js';

const CONCURRENCY = 32;
const WARMUP_MS = 1000;
const MEASURE_MS = Math.round(Number(process.env.PRESIGN_BENCH_SECONDS ?? 5) * 1000);
/** each signer's measured time, in SIGNER_ROUNDS alternating rounds */
const SIGNER_MS = 3000;
const SIGNER_ROUNDS = 6;
/** the measured time of each target, in alternating slices */
const SLICES = 5;
const CLIP_BYTES = 2_000_000;

const print = figurePrinter('presign');

// ---------------------------------------------------------------- load client (child process)

interface LoadTarget {
  url: string;
  headers: Record<string, string>;
}

interface LoadJob {
  targets: LoadTarget[];
  warmupMs: number;
  measureMs: number;
  slices: number;
}

interface TargetResult {
  completed: number;
  seconds: number;
  failures: number;
  firstFailure: string | null;
}

/** the body of one presign request: a fresh clip id each time, as a camera sends */
function presignBody(): string {
  return JSON.stringify({
    clipId: ulid(),
    start: new Date().toISOString(),
    durationMs: 10_000,
    size: CLIP_BYTES,
    md5: randomBytes(16).toString('base64'),
    sha256: randomBytes(32).toString('hex'),
    kind: 'event',
  });
}

/** CONCURRENCY requests in flight against one target for `ms`; what completed in that time */
async function drive(target: LoadTarget, agent: Agent, ms: number, result: TargetResult): Promise<void> {
  const url = new URL(target.url);
  let stop = false;
  let completed = 0;
  const once = (): Promise<void> =>
    new Promise((resolve) => {
      const body = presignBody();
      const req = request(
        {
          agent,
          host: url.hostname,
          port: url.port,
          path: url.pathname,
          method: 'POST',
          headers: { ...target.headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            if (res.statusCode === undefined || res.statusCode >= 300) {
              result.failures++;
              result.firstFailure ??= `HTTP ${res.statusCode}: ${Buffer.concat(chunks).toString().slice(0, 300)}`;
            } else if (!stop) {
              completed++;
            }
            resolve();
          });
        },
      );
      req.on('error', (err) => {
        result.failures++;
        result.firstFailure ??= err.message;
        resolve();
      });
      req.end(body);
    });
  const loops = Array.from({ length: CONCURRENCY }, async () => {
    while (!stop && result.failures === 0) await once();
  });
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, ms));
  stop = true;
  const seconds = (performance.now() - t0) / 1000;
  await Promise.all(loops);
  result.completed += completed;
  result.seconds += seconds;
}

/**
 * Warms every target up, then measures them in alternating slices (A B A B …):
 * a shared machine's busy moment then falls on both, not on one of them.
 */
async function runLoad(job: LoadJob): Promise<TargetResult[]> {
  const agents = job.targets.map(() => new Agent({ keepAlive: true, maxSockets: CONCURRENCY }));
  const results = job.targets.map(() => ({ completed: 0, seconds: 0, failures: 0, firstFailure: null }) as TargetResult);
  const warm = results.map(() => ({ completed: 0, seconds: 0, failures: 0, firstFailure: null }) as TargetResult);
  for (const [i, t] of job.targets.entries()) await drive(t, agents[i] as Agent, job.warmupMs, warm[i] as TargetResult);
  for (const [i, w] of warm.entries()) {
    (results[i] as TargetResult).failures = w.failures;
    (results[i] as TargetResult).firstFailure = w.firstFailure;
  }
  for (let s = 0; s < job.slices; s++) {
    for (const [i, t] of job.targets.entries()) {
      await drive(t, agents[i] as Agent, job.measureMs / job.slices, results[i] as TargetResult);
    }
  }
  for (const a of agents) a.destroy();
  return results;
}

function loadFromChild(job: LoadJob): Promise<TargetResult[]> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), ['--load-client'], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let result: TargetResult[] | undefined;
    child.on('message', (m: TargetResult[]) => {
      result = m;
      child.disconnect();
    });
    child.on('error', reject);
    child.on('exit', (code) => (result ? resolve(result) : reject(new Error(`load client exited ${code} without a result`))));
    child.send(job);
  });
}

// ---------------------------------------------------------------- the two servers

interface S3Env {
  endpoint?: string;
  region: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  forcePathStyle: boolean;
}

/** CAMVAULT_S3_* when set; otherwise made-up settings (signing never calls out) */
function s3Settings(): { configured: boolean; s3: S3Env } {
  const e = process.env;
  if (e.CAMVAULT_S3_ENDPOINT) {
    return {
      configured: true,
      s3: {
        endpoint: e.CAMVAULT_S3_ENDPOINT,
        region: e.CAMVAULT_S3_REGION ?? 'us-east-1',
        bucket: e.CAMVAULT_S3_BUCKET ?? 'camvault-test',
        accessKeyId: e.CAMVAULT_S3_ACCESS_KEY ?? '',
        secretAccessKey: e.CAMVAULT_S3_SECRET_KEY ?? '',
        forcePathStyle: e.CAMVAULT_S3_FORCE_PATH_STYLE === 'true',
      },
    };
  }
  return {
    configured: false,
    s3: {
      endpoint: 'http://127.0.0.1:9000',
      region: 'us-east-1',
      bucket: 'camvault-bench',
      accessKeyId: 'AKIABENCHBENCHBENCH0',
      secretAccessKey: 'bench-secret-bench-secret-bench-secret00',
      forcePathStyle: true,
    },
  };
}

/** A real cloud on loopback with one account on the premium plan and one claimed camera. */
async function startCloud(dataDir: string): Promise<{
  url: string;
  driver: string;
  deviceAuth: string;
  close: () => Promise<void>;
}> {
  // imported here so the load client does not load the cloud
  const { loadCloudConfig } = await import('../cloud/config.js');
  const { startServer } = await import('../cloud/server.js');
  const { createLogger } = await import('../shared/log.js');
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (k.startsWith('CAMVAULT_S3_')) env[k] = v;
  const config = loadCloudConfig({ env, overrides: { host: '127.0.0.1', port: 0, dataDir, logLevel: 'info' } });
  // production's log level, written where it costs what it costs but shows nowhere
  const logger = createLogger({ name: 'cloud', level: 'info' }, pino.destination({ dest: '/dev/null', sync: false }));
  const server = await startServer(config, { logger });

  const call = async (path: string, body: unknown, auth?: string): Promise<Record<string, unknown>> => {
    const res = await fetch(server.url + path, {
      method: path === '/v1/account/plan' ? 'PUT' : 'POST',
      headers: { 'content-type': 'application/json', ...(auth ? { authorization: auth } : {}) },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${path}: HTTP ${res.status} ${text}`);
    return text ? (JSON.parse(text) as Record<string, unknown>) : {};
  };
  const email = `bench-${randomBytes(4).toString('hex')}@example.com`;
  const password = 'correct horse battery staple';
  const outbox = server.mailer as import('../cloud/mail/index.js').DevOutbox;
  const since = outbox.cursor;
  await call('/v1/accounts', { email, password });
  await call('/v1/accounts/verify', { email, code: await outbox.waitForCode(email, since) });
  const { token } = await call('/v1/sessions', { email, password });
  await call('/v1/account/plan', { plan: 'premium' }, `Bearer ${token as string}`);
  const { code } = await call('/v1/devices/bind-codes', {}, `Bearer ${token as string}`);
  const serial = 'BENCH0000001';
  const claim = await call('/v1/device/claim', { serial, model: 'SIM-1', bindCode: code });
  return {
    url: server.url,
    driver: server.objects.driver,
    deviceAuth: `Device ${serial}:${claim.deviceToken as string}`,
    close: () => server.close(),
  };
}

/** a constant of the presign answer's shape and size, so both routes serialize alike */
const BARE_ANSWER = {
  clipId: '01KBENCHBENCHBENCHBENCHBEN',
  method: 'PUT',
  url: `http://127.0.0.1:7480/camvault-test/accounts/01KBENCHBENCHBENCHBENCHBEN/devices/BENCH0000001/2026/01/01/01KBENCHBENCHBENCHBENCHBEN.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Content-Sha256=UNSIGNED-PAYLOAD&X-Amz-Credential=${'A'.repeat(60)}&X-Amz-Date=20260101T000000Z&X-Amz-Expires=900&X-Amz-Signature=${'0'.repeat(64)}&X-Amz-SignedHeaders=content-length%3Bcontent-md5%3Bcontent-type%3Bhost`,
  headers: { 'content-length': String(CLIP_BYTES), 'content-md5': 'AAAAAAAAAAAAAAAAAAAAAA==', 'content-type': 'video/mp4' },
  expiresAt: '2026-01-01T00:15:00.000Z',
};

async function startBareRoute(): Promise<{ url: string; close: () => Promise<void> }> {
  const app = Fastify();
  app.post('/bare', async () => BARE_ANSWER);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/bare`, close: () => app.close() };
}

// ---------------------------------------------------------------- signers

async function signerRates(s3: S3Env): Promise<{ sigv4: number; getSignedUrl: number; ratio: number }> {
  const credentials = { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey };
  const endpoint = new URL(s3.endpoint ?? `https://s3.${s3.region}.amazonaws.com`);
  const body = randomBytes(64);
  const md5 = createHash('md5').update(body).digest('base64');
  const key = () => `accounts/01KBENCHBENCHBENCHBENCHBEN/devices/BENCH0000001/2026/01/01/${ulid()}.mp4`;

  // as cloud/objects/s3.ts signs a PUT
  const signer = new SignatureV4({
    credentials,
    region: s3.region,
    service: 's3',
    sha256: Hash.bind(null, 'sha256'),
    uriEscapePath: false,
    applyChecksum: false,
  });
  const payloadHashOnly = new Set(['x-amz-content-sha256']);
  const sigv4Once = async (): Promise<string> => {
    const signed = await signer.presign(
      new HttpRequest({
        method: 'PUT',
        protocol: endpoint.protocol,
        hostname: endpoint.hostname,
        port: endpoint.port ? Number(endpoint.port) : undefined,
        path: `/${s3.bucket}/${key()}`,
        query: {},
        headers: {
          host: endpoint.host,
          'content-length': String(body.length),
          'content-md5': md5,
          'content-type': 'video/mp4',
          'x-amz-content-sha256': 'UNSIGNED-PAYLOAD',
        },
      }),
      { expiresIn: 900, unsignableHeaders: payloadHashOnly, unhoistableHeaders: payloadHashOnly },
    );
    return signed.path;
  };

  const client = new S3Client({
    region: s3.region,
    endpoint: s3.endpoint,
    forcePathStyle: s3.forcePathStyle,
    credentials,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  const getSignedUrlOnce = (): Promise<string> =>
    getSignedUrl(
      client,
      new PutObjectCommand({ Bucket: s3.bucket, Key: key(), ContentLength: body.length, ContentMD5: md5, ContentType: 'video/mp4' }),
      // Content-Length and Content-MD5 must be signed in, as our driver does
      { expiresIn: 900, signableHeaders: new Set(['content-length', 'content-md5', 'content-type']) },
    );

  // both really sign what the store enforces
  const sample = new URL(await getSignedUrlOnce(), endpoint);
  const signedHeaders = sample.searchParams.get('X-Amz-SignedHeaders') ?? '';
  if (!/content-length/.test(signedHeaders) || !/content-md5/.test(signedHeaders)) {
    throw new Error(`getSignedUrl did not sign Content-Length and Content-MD5: ${signedHeaders}`);
  }

  const rate = async (fn: () => Promise<unknown>, ms: number): Promise<number> => {
    const t0 = performance.now();
    let n = 0;
    while (performance.now() - t0 < ms) {
      for (let i = 0; i < 50; i++) await fn();
      n += 50;
    }
    return n / ((performance.now() - t0) / 1000);
  };
  // warm both up, then alternate short rounds and take medians: each round's two
  // rates are measured side by side, so a shared machine's busy moment moves both
  await rate(sigv4Once, 300);
  await rate(getSignedUrlOnce, 300);
  const a: number[] = [];
  const b: number[] = [];
  const ratios: number[] = [];
  for (let round = 0; round < SIGNER_ROUNDS; round++) {
    a.push(await rate(sigv4Once, SIGNER_MS / SIGNER_ROUNDS));
    b.push(await rate(getSignedUrlOnce, SIGNER_MS / SIGNER_ROUNDS));
    ratios.push((a.at(-1) as number) / (b.at(-1) as number));
  }
  client.destroy();
  const median = (xs: number[]): number => {
    const sorted = [...xs].sort((x, y) => x - y);
    const mid = Math.floor(sorted.length / 2);
    return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
  };
  return { sigv4: median(a), getSignedUrl: median(b), ratio: median(ratios) };
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  // see cloud/server.ts: the SDK's Node 22 notice is not for this run
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const { configured, s3 } = s3Settings();
  const dataDir = await mkdtemp(join(tmpdir(), 'camvault-bench-presign-'));
  let ok = true;
  try {
    const bare = await startBareRoute();
    const cloud = await startCloud(dataDir);
    if (cloud.driver !== (configured ? 's3' : 'local')) throw new Error(`expected the ${configured ? 's3' : 'local'} driver, got ${cloud.driver}`);
    try {
      const headers = { authorization: cloud.deviceAuth };
      const [bareRun, endpointRun] = (await loadFromChild({
        targets: [
          { url: bare.url, headers },
          { url: `${cloud.url}/v1/device/uploads`, headers },
        ],
        warmupMs: WARMUP_MS,
        measureMs: MEASURE_MS,
        slices: SLICES,
      })) as [TargetResult, TargetResult];
      for (const [name, run] of [['bare route', bareRun], ['endpoint', endpointRun]] as const) {
        if (run.failures > 0) throw new Error(`${name}: ${run.failures} requests failed; first: ${run.firstFailure}`);
      }
      const endpointRate = endpointRun.completed / endpointRun.seconds;
      const bareRate = bareRun.completed / bareRun.seconds;
      const ratio = endpointRate / bareRate;
      print({ figure: 'presign_per_s_endpoint', value: Math.round(endpointRate), unit: 'req/s', target: null, pass: null, driver: cloud.driver, baseline_figure: 'presign_per_s_bare_route' });
      print({ figure: 'presign_per_s_bare_route', value: Math.round(bareRate), unit: 'req/s', target: null, pass: null });
      print({ figure: 'endpoint_ratio_vs_bare_route', value: round(ratio, 2), unit: 'ratio', target: 0.5, pass: ratio >= 0.5, driver: cloud.driver, baseline_figure: 'presign_per_s_bare_route' });
      ok &&= ratio >= 0.5;
    } finally {
      await cloud.close();
      await bare.close();
    }

    const signers = await signerRates(s3);
    const signerRatio = signers.ratio;
    print({ figure: 'signer_per_s_signaturev4', value: Math.round(signers.sigv4), unit: 'url/s', target: null, pass: null, baseline_figure: 'signer_per_s_getsignedurl' });
    print({ figure: 'signer_per_s_getsignedurl', value: Math.round(signers.getSignedUrl), unit: 'url/s', target: null, pass: null });
    print({ figure: 'signer_ratio_signaturev4_vs_getsignedurl', value: round(signerRatio, 1), unit: 'ratio', target: 5, pass: signerRatio >= 5, baseline_figure: 'signer_per_s_getsignedurl' });
    ok &&= signerRatio >= 5;
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
  process.exit(ok ? 0 : 1);
}

if (process.argv[2] === '--load-client') {
  process.once('message', (job: LoadJob) => {
    runLoad(job).then(
      (result) => process.send?.(result),
      (err: unknown) => {
        console.error(`presign bench load client: ${(err as Error).message}`);
        process.exit(1);
      },
    );
  });
} else {
  main().catch((err: unknown) => {
    console.error(`presign bench: ${(err as Error).message}`);
    process.exit(1);
  });
}
