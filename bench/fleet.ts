/**
 * `npm run bench -- fleet`: one cloud process under a fleet (issue 8, "Load
 * target"): FLEET_BENCH_DEVICES (1000) devices of fleet mode
 * (firmware-sim/fleet.ts), each uploading a FLEET_BENCH_CLIP_BYTES (1 MB)
 * clip every FLEET_BENCH_EVERY_S (10) seconds for FLEET_BENCH_SECONDS (60),
 * and an alert every FLEET_BENCH_ALERTS_EVERY_S (30) when the cloud names an
 * MQTT broker in its claim answer. Target: no errors, and p95 of presign
 * under 50 ms.
 *
 * The cloud is a separate process, started the way `npm run cloud` starts it
 * (`node --import tsx cloud/server.ts --config FILE`), logging at info to a
 * file, with its background jobs on. Its store is SQLite and its objects the
 * local driver in a temp folder by default; PostgreSQL when
 * CAMVAULT_DATABASE_URL is set (in a fresh schema, dropped afterwards), the
 * s3 driver when CAMVAULT_S3_* are set (the objects the run stored are
 * deleted afterwards). The figures' `db` and `objects` fields say which.
 *
 * Its configuration differs from the defaults in one respect: every
 * per-address rate limit is raised (rateLimits.*PerIp, and the per-email ones
 * of sign-up), because the whole fleet and its accounts come from 127.0.0.1,
 * and the default of 100 claims per address in 15 minutes would refuse all
 * but the first 100 devices. Its mail goes to an SMTP server in this process,
 * which is how the bench reads the verification codes of its accounts: one
 * account per FLEET_BENCH_CAMERAS_PER_ACCOUNT (10, the premium plan's cameras)
 * devices, made through the API.
 *
 * Every device claims (and connects to MQTT) first; then FLEET_BENCH_SETTLE_S
 * (5) seconds pass before the measured run, so that what 1,000 claims and
 * connects set off in the cloud (their "online" statuses, security-log rows,
 * a growing PostgreSQL pool) is not counted as upload latency: the target is
 * the steady state of a fleet. The claims have their own figure.
 *
 * This process is the fleet, on its own core. Figures: fleet_presign_p95_ms
 * (target 50) and fleet_errors (target 0); for the record, presign p50 and
 * p99, PUT and complete p95, uploads a second against the offered rate
 * (devices / interval) as its baseline, late uploads, the cloud's CPU (cores
 * used over the run, from /proc) and peak RSS, the fleet's own CPU, and for
 * both processes the share of the run their event loop spent ready to run
 * but waiting for a core (/proc/<pid>/schedstat): on a shared machine that,
 * not the cloud's code, can be what a latency is made of. Each line carries
 * the load average before and after the run.
 *
 * FLEET_BENCH_PROFILE=1 runs the cloud with --cpu-prof and prints, after the
 * figures, where its CPU went (self time by package and by function) on
 * stderr, and keeps the .cpuprofile. Exits 1 when a figure misses its target.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { openSync, closeSync, readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { SMTPServer } from 'smtp-server';
import { extractCode } from '../cloud/mail/messages.js';
import { S3ObjectStore } from '../cloud/objects/s3.js';
import { FleetHttp } from '../firmware-sim/fleet-http.js';
import { fleetSerials } from '../firmware-sim/fleet-cli.js';
import { formatFleetTable, type FleetSummary } from '../firmware-sim/fleet-stats.js';
import { runFleet, type FleetDeviceSpec } from '../firmware-sim/fleet.js';
import { accountPrefix } from '../shared/keys.js';
import { figurePrinter, round } from './_figures.js';

const num = (name: string, fallback: number): number => {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got ${JSON.stringify(raw)}`);
  return n;
};

const DEVICES = Math.round(num('FLEET_BENCH_DEVICES', 1000));
const SECONDS = num('FLEET_BENCH_SECONDS', 60);
const CLIP_BYTES = Math.round(num('FLEET_BENCH_CLIP_BYTES', 1_000_000));
const EVERY_S = num('FLEET_BENCH_EVERY_S', 10);
const ALERTS_EVERY_S = num('FLEET_BENCH_ALERTS_EVERY_S', 30);
const PER_ACCOUNT = Math.round(num('FLEET_BENCH_CAMERAS_PER_ACCOUNT', 10));
/** a pause between the claims and the measured run (see the doc comment) */
const SETTLE_S = process.env.FLEET_BENCH_SETTLE_S === '0' ? 0 : num('FLEET_BENCH_SETTLE_S', 5);
const PROFILE = process.env.FLEET_BENCH_PROFILE === '1';
const TARGET_PRESIGN_P95_MS = 50;
const PASSWORD = 'correct horse battery staple';
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

const print = figurePrinter('fleet');
const say = (line: string): void => console.error(`bench fleet: ${line}`);

/** a port nobody listens on right now */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** The cloud's SMTP relay: keeps the code of each verification mail, by recipient. */
async function startMailbox(): Promise<{ port: number; code: (to: string) => Promise<string>; close: () => Promise<void> }> {
  const codes = new Map<string, string>();
  const waiters = new Map<string, (code: string) => void>();
  const server = new SMTPServer({
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const code = extractCode(Buffer.concat(chunks).toString('utf8').replace(/\r\n/g, '\n'));
        if (code) {
          for (const r of session.envelope.rcptTo) {
            const to = r.address.toLowerCase();
            const waiter = waiters.get(to);
            if (waiter) {
              waiters.delete(to);
              waiter(code);
            } else {
              codes.set(to, code);
            }
          }
        }
        cb();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.server.address() as AddressInfo;
  return {
    port,
    code: (to) => {
      const key = to.toLowerCase();
      const have = codes.get(key);
      if (have) return Promise.resolve(have);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no verification mail within 30 s')), 30_000);
        waiters.set(key, (c) => {
          clearTimeout(timer);
          resolve(c);
        });
      });
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A fresh schema in CAMVAULT_DATABASE_URL's database (as bench/api.ts), and the URL pointed at it. */
async function freshSchema(base: string): Promise<{ url: string; drop: () => Promise<void> }> {
  const schema = `bench_fleet_${randomBytes(4).toString('hex')}`;
  const admin = async (sql: string): Promise<void> => {
    const c = new pg.Client({ connectionString: base });
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  };
  await admin(`CREATE SCHEMA ${schema}`);
  const u = new URL(base);
  u.searchParams.set('options', `-c search_path=${schema}`);
  return { url: u.toString(), drop: () => admin(`DROP SCHEMA IF EXISTS ${schema} CASCADE`) };
}

interface CloudProcess {
  url: string;
  child: ChildProcess;
  pid: number;
  logFile: string;
  /** SIGTERM, then SIGKILL after 30 s; resolves when it has exited */
  stop(): Promise<void>;
}

async function startCloudProcess(dir: string, env: NodeJS.ProcessEnv, mailPort: number): Promise<CloudProcess> {
  const port = await freePort();
  const raised = { max: 1_000_000, windowSec: 60 };
  const config = {
    host: '127.0.0.1',
    port,
    dataDir: join(dir, 'cloud'),
    logLevel: 'info',
    mail: { smtpUrl: `smtp://127.0.0.1:${mailPort}` },
    // the fleet and its accounts all come from 127.0.0.1 (see the doc comment)
    rateLimits: { loginPerIp: raised, mailPerIp: raised, codePerIp: raised, claimPerIp: raised, mailPerEmail: raised },
    // aedes on a port of its own: 1883 may be another cloud's
    mqtt: { port: await freePort() },
  };
  const configFile = join(dir, 'cloud.json');
  await writeFile(configFile, JSON.stringify(config, null, 2));
  const logFile = join(dir, 'cloud.log');
  const log = openSync(logFile, 'a');
  const args = [
    ...(PROFILE ? ['--cpu-prof', '--cpu-prof-dir', join(dir, 'profile')] : []),
    '--import',
    'tsx',
    join(ROOT, 'cloud', 'server.ts'),
    '--config',
    configFile,
  ];
  const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', log, log] });
  closeSync(log);
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      resolve();
    }),
  );
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited) throw new Error(`the cloud exited at start-up: ${readFileSync(logFile, 'utf8').trim().split('\n').slice(-3).join(' | ')}`);
    try {
      const res = await fetch(`${url}/healthz`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error('the cloud did not answer /healthz within 60 s');
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    url,
    child,
    pid: child.pid as number,
    logFile,
    stop: async () => {
      if (exited) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exit;
      clearTimeout(timer);
    },
  };
}

/** user + system CPU seconds of a process so far, from /proc/<pid>/stat (in clock ticks of 1/100 s on Linux) */
function cpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state): utime and stime are fields 14 and 15
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}

/**
 * The main thread's time on a CPU and waiting for one (/proc/<pid>/schedstat,
 * ns). For a Node process the main thread is the event loop: its wait is the
 * time it was ready to answer a request and other processes held both cores.
 */
function schedstat(pid: number | 'self'): { runNs: number; waitNs: number } | null {
  try {
    const [run, wait] = readFileSync(`/proc/${pid}/schedstat`, 'utf8').trim().split(' ').map(Number);
    return run === undefined || wait === undefined ? null : { runNs: run, waitNs: wait };
  } catch {
    return null;
  }
}

/**
 * Samples the state of a process's main thread (its event loop) every 10 ms:
 * R (on a core, or waiting for one), S (asleep: idle, waiting in epoll) or D
 * (blocked in the kernel on I/O: an fsync on the event loop, say). The share
 * of D samples is the time no request could be answered because of the disk.
 */
function sampleThreadState(pid: number): { stop: () => { samples: number; blockedShare: number; runnableShare: number } } {
  const counts = { R: 0, S: 0, D: 0, other: 0 };
  const timer = setInterval(() => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const state = stat.charAt(stat.lastIndexOf(')') + 2);
      if (state === 'R' || state === 'S' || state === 'D') counts[state]++;
      else counts.other++;
    } catch {
      counts.other++;
    }
  }, 10);
  return {
    stop: () => {
      clearInterval(timer);
      const n = counts.R + counts.S + counts.D + counts.other;
      return { samples: n, blockedShare: n ? counts.D / n : 0, runnableShare: n ? counts.R / n : 0 };
    },
  };
}

/** the peak resident set of a process so far (VmHWM), MiB */
function peakRssMib(pid: number): number | null {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/** what the meters read as the run starts */
interface RunStart {
  loadBefore: number;
  cpu: number | null;
  sched: { runNs: number; waitNs: number } | null;
  selfSched: { runNs: number; waitNs: number } | null;
  selfCpu: NodeJS.CpuUsage;
  states: ReturnType<typeof sampleThreadState>;
  t0: number;
}

interface Account {
  accountId: string;
  codes: string[];
}

/** One account on the premium plan with `cameras` bind codes: sign-up, the mailed code, login, plan, codes. */
async function makeAccount(http: FleetHttp, url: string, mailbox: { code: (to: string) => Promise<string> }, cameras: number): Promise<Account> {
  const email = `fleet-${randomBytes(6).toString('hex')}@example.com`;
  const must = async (method: string, path: string, body: unknown, auth?: string): Promise<Record<string, unknown>> => {
    const r = await http.json(method, url + path, body, auth);
    if (!r.ok) throw new Error(`${method} ${path}: ${r.code}`);
    return (r.body ?? {}) as Record<string, unknown>;
  };
  await must('POST', '/v1/accounts', { email, password: PASSWORD });
  await must('POST', '/v1/accounts/verify', { email, code: await mailbox.code(email) });
  const session = await must('POST', '/v1/sessions', { email, password: PASSWORD });
  const auth = `Bearer ${session.token as string}`;
  await must('PUT', '/v1/account/plan', { plan: 'premium' }, auth);
  const codes: string[] = [];
  for (let i = 0; i < cameras; i++) codes.push((await must('POST', '/v1/devices/bind-codes', {}, auth)).code as string);
  return { accountId: session.accountId as string, codes };
}

/** Where the cloud's CPU went: self time by package and by function, from a .cpuprofile. */
function profileReport(file: string, top = 15): string {
  interface Node {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    hitCount?: number;
  }
  const profile = JSON.parse(readFileSync(file, 'utf8')) as { nodes: Node[]; samples: number[] };
  const total = profile.samples.length || 1;
  const byFunction = new Map<string, number>();
  const byPackage = new Map<string, number>();
  for (const n of profile.nodes) {
    const hits = n.hitCount ?? 0;
    if (hits === 0) continue;
    const { functionName, url, lineNumber } = n.callFrame;
    const where = url.replace(/^file:\/\//, '').replace(`${ROOT}/`, '');
    const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(where)?.[1] ?? (where === '' ? functionName || '(native)' : where.startsWith('node:') ? 'node internals' : where.split('/').slice(0, 2).join('/'));
    byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + hits);
    const fn = `${functionName || '(anonymous)'} ${where ? `${where}:${lineNumber + 1}` : ''}`.trim();
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + hits);
  }
  const rows = (m: Map<string, number>): string[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, v]) => `  ${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`);
  return ['the cloud\'s CPU (self time, share of samples), by package:', ...rows(byPackage), 'by function:', ...rows(byFunction)].join('\n');
}

async function deleteObjects(accountIds: string[]): Promise<void> {
  const e = process.env;
  const objects = new S3ObjectStore({
    endpoint: e.CAMVAULT_S3_ENDPOINT,
    region: e.CAMVAULT_S3_REGION ?? 'us-east-1',
    bucket: e.CAMVAULT_S3_BUCKET as string,
    accessKeyId: e.CAMVAULT_S3_ACCESS_KEY as string,
    secretAccessKey: e.CAMVAULT_S3_SECRET_KEY as string,
    forcePathStyle: ['true', '1'].includes((e.CAMVAULT_S3_FORCE_PATH_STYLE ?? '').toLowerCase()),
  });
  try {
    for (const id of accountIds) {
      let cursor: string | null = null;
      do {
        const page = await objects.list(accountPrefix(id), cursor);
        if (page.objects.length > 0) await objects.deleteMany(page.objects.map((o) => o.key));
        cursor = page.nextCursor;
      } while (cursor !== null);
    }
  } finally {
    await objects.close();
  }
}

async function main(): Promise<void> {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const db = process.env.CAMVAULT_DATABASE_URL ? 'postgres' : 'sqlite';
  const objects = process.env.CAMVAULT_S3_BUCKET ? 's3' : 'local';
  const dir = await mkdtemp(join(tmpdir(), 'camvault-bench-fleet-'));
  const schema = db === 'postgres' ? await freshSchema(process.env.CAMVAULT_DATABASE_URL as string) : undefined;
  const mailbox = await startMailbox();
  const accountIds: string[] = [];
  let cloud: CloudProcess | undefined;
  let ok = true;
  try {
    // only what the cloud needs: its S3 settings, and the schema's URL
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' };
    for (const [k, v] of Object.entries(process.env)) if (k.startsWith('CAMVAULT_S3_')) env[k] = v;
    // libuv's thread pool (4 threads by default) carries the local driver's writes and fsyncs: a knob worth trying
    if (process.env.UV_THREADPOOL_SIZE) env.UV_THREADPOOL_SIZE = process.env.UV_THREADPOOL_SIZE;
    if (schema) env.CAMVAULT_DATABASE_URL = schema.url;
    if (process.env.CAMVAULT_DATABASE_POOL_SIZE) env.CAMVAULT_DATABASE_POOL_SIZE = process.env.CAMVAULT_DATABASE_POOL_SIZE;
    cloud = await startCloudProcess(dir, env, mailbox.port);
    const cloudUrl = cloud.url;
    say(`cloud pid ${cloud.pid} at ${cloud.url} (${db}, ${objects}); log ${cloud.logFile}`);

    // the accounts and their bind codes, a few at a time
    const setup = new FleetHttp({ maxSockets: 8, timeoutMs: 30_000 });
    const accounts: Account[] = [];
    const need = Math.ceil(DEVICES / PER_ACCOUNT);
    try {
      let next = 0;
      await Promise.all(
        Array.from({ length: Math.min(4, need) }, async () => {
          while (next < need) {
            const i = next++;
            accounts.push(await makeAccount(setup, cloudUrl, mailbox, Math.min(PER_ACCOUNT, DEVICES - i * PER_ACCOUNT)));
          }
        }),
      );
    } finally {
      setup.close();
    }
    accountIds.push(...accounts.map((a) => a.accountId));
    const codes = accounts.flatMap((a) => a.codes);
    const serials = fleetSerials(`FB${randomBytes(3).toString('hex').toUpperCase()}`, DEVICES);
    const devices: FleetDeviceSpec[] = serials.map((serial, i) => ({ serial, bindCode: codes[i] as string }));
    say(`${accounts.length} accounts, ${DEVICES} devices; a ${CLIP_BYTES}-byte clip every ${EVERY_S} s each for ${SECONDS} s`);

    // the meters start with the run, after the claims and the settle pause
    const pid = cloud.pid;
    const meters: { start?: RunStart } = {};
    const onRunStart = (): void => {
      meters.start = {
        loadBefore: round(loadavg()[0] as number, 2),
        cpu: cpuSeconds(pid),
        sched: schedstat(pid),
        selfSched: schedstat('self'),
        selfCpu: process.cpuUsage(),
        states: sampleThreadState(pid),
        t0: performance.now(),
      };
    };
    const { summary } = await runFleet({
      cloudUrl: cloud.url,
      devices,
      clipBytes: CLIP_BYTES,
      everyMs: EVERY_S * 1000,
      alertsEveryMs: ALERTS_EVERY_S * 1000,
      durationMs: SECONDS * 1000,
      settleMs: SETTLE_S * 1000,
      onRunStart,
      onProgress: say,
      onNotice: say,
    });
    const start = meters.start;
    if (!start) throw new Error('the fleet never started its run');
    const { loadBefore, cpu: cpu0, sched: sched0, selfSched: selfSched0, selfCpu: selfCpu0 } = start;
    const wallS = (performance.now() - start.t0) / 1000;
    const loopStates = start.states.stop();
    const cpu1 = cpuSeconds(cloud.pid);
    const sched1 = schedstat(cloud.pid);
    const selfSched1 = schedstat('self');
    const selfCpu = process.cpuUsage(selfCpu0);
    const rss = peakRssMib(cloud.pid);
    const loadAfter = round(loadavg()[0] as number, 2);
    console.error(formatFleetTable(summary));

    const route = (name: string): FleetSummary['routes'][number] | undefined => summary.routes.find((r) => r.route === name);
    const p = (name: string, q: 'p50Ms' | 'p95Ms' | 'p99Ms'): number => round(route(name)?.[q] ?? NaN, 2);
    const common = { devices: DEVICES, seconds: SECONDS, clip_bytes: CLIP_BYTES, every_s: EVERY_S, db, objects, load_avg_before: loadBefore, load_avg_after: loadAfter };
    const presignP95 = p('presign', 'p95Ms');
    const presignPass = presignP95 < TARGET_PRESIGN_P95_MS;
    print({ figure: 'fleet_presign_p95_ms', value: presignP95, unit: 'ms', target: TARGET_PRESIGN_P95_MS, pass: presignPass, ...common });
    print({ figure: 'fleet_errors', value: summary.errors, unit: 'count', target: 0, pass: summary.errors === 0, ...common });
    ok &&= presignPass && summary.errors === 0;
    print({ figure: 'fleet_presign_p50_ms', value: p('presign', 'p50Ms'), unit: 'ms', target: null, pass: null, ...common });
    print({ figure: 'fleet_presign_p99_ms', value: p('presign', 'p99Ms'), unit: 'ms', target: null, pass: null, ...common });
    print({ figure: 'fleet_put_p95_ms', value: p('PUT', 'p95Ms'), unit: 'ms', target: null, pass: null, ...common });
    print({ figure: 'fleet_complete_p95_ms', value: p('complete', 'p95Ms'), unit: 'ms', target: null, pass: null, ...common });
    print({ figure: 'fleet_claim_p95_ms', value: p('claim', 'p95Ms'), unit: 'ms', target: null, pass: null, ...common });
    if (route('alert publish')) print({ figure: 'fleet_alert_p95_ms', value: p('alert publish', 'p95Ms'), unit: 'ms', target: null, pass: null, ...common });
    // the offered load is the baseline: devices / interval
    print({
      figure: 'fleet_uploads_per_s',
      value: round(summary.uploadsPerSecond, 1),
      unit: 'uploads/s',
      target: null,
      pass: null,
      baseline: round(DEVICES / EVERY_S, 1),
      baseline_unit: 'uploads/s offered',
      uploads: summary.uploads,
      ...common,
    });
    print({ figure: 'fleet_late_uploads', value: summary.lateUploads, unit: 'count', target: null, pass: null, ...common });
    if (cpu0 !== null && cpu1 !== null) {
      print({ figure: 'fleet_cloud_cpu_cores', value: round((cpu1 - cpu0) / wallS, 2), unit: 'cores', target: null, pass: null, ...common });
    }
    if (sched0 && sched1) {
      print({ figure: 'fleet_cloud_loop_cpu_wait_share', value: round((sched1.waitNs - sched0.waitNs) / 1e9 / wallS, 3), unit: 'share', target: null, pass: null, ...common });
    }
    print({ figure: 'fleet_cloud_loop_io_blocked_share', value: round(loopStates.blockedShare, 3), unit: 'share', target: null, pass: null, samples: loopStates.samples, ...common });
    print({ figure: 'fleet_client_cpu_cores', value: round((selfCpu.user + selfCpu.system) / 1e6 / wallS, 2), unit: 'cores', target: null, pass: null, ...common });
    if (selfSched0 && selfSched1) {
      print({ figure: 'fleet_client_loop_cpu_wait_share', value: round((selfSched1.waitNs - selfSched0.waitNs) / 1e9 / wallS, 3), unit: 'share', target: null, pass: null, ...common });
    }
    if (rss !== null) print({ figure: 'fleet_cloud_rss_peak_mib', value: round(rss, 1), unit: 'MiB', target: null, pass: null, ...common });
  } catch (err) {
    ok = false;
    throw err;
  } finally {
    await cloud?.stop();
    if (!ok && cloud) {
      const kept = join(tmpdir(), `camvault-fleet-cloud-${Date.now()}.log`);
      await writeFile(kept, readFileSync(cloud.logFile)).then(
        () => say(`the cloud's log is kept: ${kept}`),
        () => undefined,
      );
    }
    if (PROFILE) {
      const profDir = join(dir, 'profile');
      try {
        const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
        if (file) {
          const kept = join(tmpdir(), `camvault-fleet-cloud-${Date.now()}.cpuprofile`);
          await writeFile(kept, readFileSync(join(profDir, file)));
          console.error(profileReport(kept));
          say(`profile kept: ${kept}`);
        } else {
          say('no .cpuprofile was written');
        }
      } catch (err) {
        say(`profile unreadable: ${(err as Error).message}`);
      }
    }
    if (objects === 's3' && accountIds.length > 0) await deleteObjects(accountIds).catch((err: unknown) => say(`cleanup of the S3 objects failed: ${(err as Error).message}`));
    await mailbox.close();
    await schema?.drop();
    await rm(dir, { recursive: true, force: true });
  }
  process.exit(ok ? 0 : 1);
}

main().catch((err: unknown) => {
  console.error(`bench fleet: ${(err as Error).message}`);
  process.exit(1);
});
