/**
 * `npm run bench -- upload`: the agent's uploads against curl's, and the
 * agent's memory whatever the clip size (issue 4, "Benchmark bench/upload").
 *
 * A real cloud on loopback (SQLite; the s3 driver when CAMVAULT_S3_* are set,
 * else the local driver, named in the JSON as "driver"), one account on the
 * premium plan and one claimed device. Files of random bytes (video does not
 * compress either) in a temp folder.
 *
 * - Throughput and CPU. The same UPLOAD_BENCH_FILES files of
 *   UPLOAD_BENCH_FILE_MB MB (64 by default, kept under the cloud's multipart
 *   threshold so both sides send one PUT per file) are uploaded in each round
 *   by both sides, each clip under a fresh clip id:
 *     curl: per file, a presign from this process, then `curl -T file` with
 *       exactly the presigned headers, then complete; two files at a time (the
 *       agent's default concurrency). Wall time runs from the first presign to
 *       the last complete; CPU is curl's own (bash's `times` for its children),
 *       the presign and complete calls cost curl nothing;
 *     agent: bench/_upload-agent.ts in a process of its own: the agent's
 *       Journal, CloudClient and Uploader, with its default concurrency, part
 *       size and log level; wall and CPU (all threads) of the upload phase,
 *       start-up excluded. Each agent process first uploads one 1 MB clip,
 *       unmeasured, as a device that has been running has: a fresh process
 *       otherwise pays its JIT and lazy module loading (~0.1 s of CPU) inside
 *       the figure, which no device in the field does per clip.
 *   UPLOAD_BENCH_ROUNDS rounds (5), alternating which side goes first, with the
 *   clips deleted between sets; each figure is the median of the per-round
 *   ratios, so a busy moment of a shared machine falls on both. The cloud's own
 *   CPU counts for neither.
 * - Memory. The agent side alone, once with a 5 MB clip (one PUT) and once with
 *   a 500 MB clip (a multipart upload, since it is above the cloud's 64 MiB
 *   threshold), one after the other in one agent process: the peak resident
 *   set of each upload phase (VmHWM, reset just before it, after a full GC).
 *   Separate processes differed by up to 30 MiB from start-up alone. The
 *   agent side runs under
 *   tsx, which alone holds ~33 MiB more than plain node: the absolute peaks
 *   are that much above what `npm run build` output would show; the delta,
 *   the figure with a target, is not affected.
 *
 * Prints one JSON line per figure; exits 1 when a figure misses its target or
 * an upload fails.
 */
import { spawn } from 'node:child_process';
import { randomBytes, randomFillSync } from 'node:crypto';
import { closeSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { loadAgentConfig } from '../agent/config.js';
import { hashClip, type ClipDigest } from '../agent/uploader/multipart.js';
import { loadCloudConfig } from '../cloud/config.js';
import type { DevOutbox } from '../cloud/mail/index.js';
import { startServer } from '../cloud/server.js';
import { newClipId } from '../shared/ids.js';
import { createLogger } from '../shared/log.js';
import type { AgentUploadJob, AgentUploadOutput, AgentUploadResult } from './_upload-agent.js';
import { figurePrinter, round } from './_figures.js';

const here = dirname(fileURLToPath(import.meta.url));
const FILES = Number(process.env.UPLOAD_BENCH_FILES ?? 4);
const FILE_MB = Number(process.env.UPLOAD_BENCH_FILE_MB ?? 64);
const ROUNDS = Number(process.env.UPLOAD_BENCH_ROUNDS ?? 5);
const SMALL_CLIP_BYTES = 5_000_000;
const WARMUP_CLIP_BYTES = 1_000_000;
const LARGE_CLIP_BYTES = 500_000_000;
const TARGETS = { throughputRatio: 0.9, cpuRatio: 1.5, rssDeltaMb: 10 };
const MiB = 1024 * 1024;

const print = figurePrinter('upload');

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** Random bytes, written in 1 MiB slices so a 500 MB file costs no memory to make. */
function writeRandomFile(path: string, size: number): void {
  const fd = openSync(path, 'w');
  const buf = Buffer.allocUnsafe(MiB);
  try {
    for (let left = size; left > 0; ) {
      const n = Math.min(left, buf.length);
      randomFillSync(buf, 0, n);
      writeSync(fd, buf, 0, n);
      left -= n;
    }
  } finally {
    closeSync(fd);
  }
}

// ---------------------------------------------------------------- the cloud

interface BenchCloud {
  url: string;
  driver: string;
  multipartThresholdBytes: number;
  serial: string;
  deviceToken: string;
  deviceAuth: string;
  sessionAuth: string;
  close: () => Promise<void>;
}

async function startCloud(dataDir: string): Promise<BenchCloud> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (k.startsWith('CAMVAULT_S3_')) env[k] = v;
  const config = loadCloudConfig({ env, overrides: { host: '127.0.0.1', port: 0, dataDir, logLevel: 'info' } });
  const logger = createLogger({ name: 'cloud', level: 'info' }, pino.destination({ dest: '/dev/null', sync: false }));
  const server = await startServer(config, { logger });
  const call = async (method: string, path: string, body: unknown, auth?: string): Promise<Record<string, unknown>> => {
    const res = await fetch(server.url + path, {
      method,
      headers: { 'content-type': 'application/json', ...(auth ? { authorization: auth } : {}) },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status} ${text}`);
    return text ? (JSON.parse(text) as Record<string, unknown>) : {};
  };
  const email = `bench-${randomBytes(4).toString('hex')}@example.com`;
  const password = 'correct horse battery staple';
  const outbox = server.mailer as DevOutbox;
  const since = outbox.cursor;
  await call('POST', '/v1/accounts', { email, password });
  await call('POST', '/v1/accounts/verify', { email, code: await outbox.waitForCode(email, since) });
  const { token } = await call('POST', '/v1/sessions', { email, password });
  const sessionAuth = `Bearer ${token as string}`;
  await call('PUT', '/v1/account/plan', { plan: 'premium' }, sessionAuth);
  const { code } = await call('POST', '/v1/devices/bind-codes', {}, sessionAuth);
  const serial = 'BENCHUPLOAD00001';
  const claim = await call('POST', '/v1/device/claim', { serial, model: 'SIM-1', bindCode: code });
  const deviceToken = claim.deviceToken as string;
  return {
    url: server.url,
    driver: server.objects.driver,
    multipartThresholdBytes: config.multipartThresholdBytes,
    serial,
    deviceToken,
    deviceAuth: `Device ${serial}:${deviceToken}`,
    sessionAuth,
    close: () => server.close(),
  };
}

async function deleteClips(cloud: BenchCloud, ids: string[]): Promise<void> {
  const res = await fetch(`${cloud.url}/v1/clips/delete`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: cloud.sessionAuth },
    body: JSON.stringify({ ids }),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`deleting the bench clips: HTTP ${res.status} ${text}`);
}

// ---------------------------------------------------------------- the two sides

interface SetResult {
  bytes: number;
  wallMs: number;
  cpuUserMs: number;
  cpuSystemMs: number;
  clipIds: string[];
}

interface BenchFile {
  path: string;
  digest: ClipDigest;
}

/** bash's `times`, second line: the user and system time of the shell's children */
function childrenCpuMs(stderr: string): { user: number; system: number } {
  const lines = stderr.trim().split('\n');
  const m = /^(\d+)m([\d.]+)s (\d+)m([\d.]+)s$/.exec((lines[lines.length - 1] ?? '').trim());
  if (!m) throw new Error(`no CPU times from curl's shell: ${stderr.slice(-300)}`);
  return { user: (Number(m[1]) * 60 + Number(m[2])) * 1000, system: (Number(m[3]) * 60 + Number(m[4])) * 1000 };
}

function curlPut(file: string, url: string, headers: Record<string, string>): Promise<{ status: number; cpu: { user: number; system: number } }> {
  const args = ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-X', 'PUT', '-T', file];
  for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
  args.push(url);
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', 'curl "$@"; s=$?; times >&2; exit $s', 'bash', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    // 'close', not 'exit': the output streams may still hold the last lines at 'exit'
    child.on('close', (code) => {
      if (code !== 0) {
        reject(new Error(`curl exited ${code}: ${stderr.split('\n')[0]}`));
        return;
      }
      try {
        resolve({ status: Number(stdout.trim()), cpu: childrenCpuMs(stderr) });
      } catch (err) {
        reject(err as Error);
      }
    });
  });
}

async function curlSet(cloud: BenchCloud, files: BenchFile[], concurrency: number): Promise<SetResult> {
  const device = { 'content-type': 'application/json', authorization: cloud.deviceAuth };
  const clipIds: string[] = [];
  let cpuUserMs = 0;
  let cpuSystemMs = 0;
  let next = 0;
  const now = Date.now();
  const worker = async (): Promise<void> => {
    while (next < files.length) {
      const i = next++;
      const f = files[i] as BenchFile;
      const startMs = now - 60_000 + i * 10;
      const clipId = newClipId(startMs);
      clipIds.push(clipId);
      // the same request the agent sends, part MD5s included: the cloud does the same work for both
      const presignBody = {
        clipId,
        start: new Date(startMs).toISOString(),
        durationMs: 10_000,
        size: f.digest.size,
        md5: f.digest.md5,
        sha256: f.digest.sha256,
        kind: 'continuous',
        ...(f.digest.parts ? { multipart: { partBytes: f.digest.parts.partBytes, parts: f.digest.parts.md5s.map((md5) => ({ md5 })) } } : {}),
      };
      const pres = await fetch(`${cloud.url}/v1/device/uploads`, { method: 'POST', headers: device, body: JSON.stringify(presignBody) });
      const presigned = (await pres.json()) as { mode?: string; url: string; headers: Record<string, string> };
      if (!pres.ok) throw new Error(`presign: HTTP ${pres.status} ${JSON.stringify(presigned)}`);
      if (presigned.mode === 'multipart') throw new Error('the cloud wants parts for a throughput file; lower UPLOAD_BENCH_FILE_MB');
      const put = await curlPut(f.path, presigned.url, presigned.headers);
      if (put.status < 200 || put.status >= 300) throw new Error(`curl PUT: HTTP ${put.status}`);
      cpuUserMs += put.cpu.user;
      cpuSystemMs += put.cpu.system;
      const done = await fetch(`${cloud.url}/v1/device/uploads/${clipId}/complete`, { method: 'POST', headers: device, body: '{}' });
      const text = await done.text();
      if (!done.ok) throw new Error(`complete: HTTP ${done.status} ${text}`);
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: Math.min(concurrency, files.length) }, () => worker()));
  const wallMs = performance.now() - t0;
  return { bytes: files.reduce((s, f) => s + f.digest.size, 0), wallMs, cpuUserMs, cpuSystemMs, clipIds };
}

/** one agent process: uploads each set in turn, measured on its own */
function agentRun(cloud: BenchCloud, sets: BenchFile[][], dataDir: string, warmup: BenchFile): Promise<AgentUploadOutput> {
  mkdirSync(dataDir, { recursive: true });
  const job: AgentUploadJob = { cloudUrl: cloud.url, serial: cloud.serial, deviceToken: cloud.deviceToken, dataDir, sets, warmup };
  const jobFile = join(dataDir, 'job.json');
  writeFileSync(jobFile, JSON.stringify(job));
  return new Promise((resolve, reject) => {
    // UPLOAD_BENCH_AGENT_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof", to profile the agent side
    const extra = (process.env.UPLOAD_BENCH_AGENT_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
    const child = spawn(process.execPath, ['--expose-gc', ...extra, '--import', 'tsx', join(here, '_upload-agent.ts'), jobFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      // UPLOAD_BENCH_MEM_TRACE=1: the agent side's memory every 250 ms, on this stderr
      if (process.env.UPLOAD_BENCH_MEM_TRACE) process.stderr.write(d);
    });
    child.on('error', reject);
    // 'close', not 'exit': the output streams may still hold the last lines at 'exit'
    child.on('close', (code) => {
      if (code !== 0) {
        reject(new Error(`the agent side exited ${code}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`));
        return;
      }
      const line = stdout.trim().split('\n').pop() ?? '';
      try {
        resolve(JSON.parse(line) as AgentUploadOutput);
      } catch {
        reject(new Error(`the agent side printed no result: ${stdout.slice(-300)} ${stderr.slice(-300)}`));
      }
    });
  });
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const configured = Boolean(process.env.CAMVAULT_S3_ENDPOINT);
  const dir = await mkdtemp(join(tmpdir(), 'camvault-bench-upload-'));
  let ok = true;
  try {
    const cloud = await startCloud(join(dir, 'cloud'));
    if (cloud.driver !== (configured ? 's3' : 'local')) throw new Error(`expected the ${configured ? 's3' : 'local'} driver, got ${cloud.driver}`);
    try {
      // the agent's defaults, as a device runs it
      const agentDefaults = loadAgentConfig({ env: {}, overrides: { serial: cloud.serial, cloudUrl: cloud.url, input: 'bench', dataDir: dir, development: true } });
      const partBytes = agentDefaults.multipartPartBytes;
      const concurrency = agentDefaults.uploadConcurrency;

      const fileBytes = Math.min(Math.round(FILE_MB * 1_000_000), cloud.multipartThresholdBytes);
      const files: BenchFile[] = [];
      for (let i = 0; i < FILES; i++) {
        const path = join(dir, `clip-${i}.bin`);
        writeRandomFile(path, fileBytes);
        files.push({ path, digest: await hashClip(path, partBytes) });
      }

      // the agent side's own warm-up clip, uploaded unmeasured by each agent process
      const warmPath = join(dir, 'warmup.bin');
      writeRandomFile(warmPath, WARMUP_CLIP_BYTES);
      const warmup: BenchFile = { path: warmPath, digest: await hashClip(warmPath, partBytes) };

      // warm-up: one small set each, so neither pays for a cold start of the cloud's paths
      const warm = files.slice(0, 1);
      await deleteClips(cloud, (await curlSet(cloud, warm, concurrency)).clipIds);
      await deleteClips(cloud, (await agentRun(cloud, [warm], join(dir, 'agent-warm'), warmup)).clipIds);

      const tputRatios: number[] = [];
      const cpuRatios: number[] = [];
      const agentMbS: number[] = [];
      const curlMbS: number[] = [];
      const agentCpuSPerGb: number[] = [];
      const curlCpuSPerGb: number[] = [];
      const agentSysShare: number[] = [];
      const curlSysShare: number[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        const runCurl = async (): Promise<SetResult> => {
          const res = await curlSet(cloud, files, concurrency);
          await deleteClips(cloud, res.clipIds);
          return res;
        };
        const runAgent = async (): Promise<SetResult> => {
          const out = await agentRun(cloud, [files], join(dir, `agent-${r}`), warmup);
          await deleteClips(cloud, out.clipIds);
          return { ...(out.sets[0] as AgentUploadResult), clipIds: out.clipIds };
        };
        let c: SetResult;
        let a: SetResult;
        if (r % 2 === 0) {
          c = await runCurl();
          a = await runAgent();
        } else {
          a = await runAgent();
          c = await runCurl();
        }
        const aRate = a.bytes / 1e6 / (a.wallMs / 1000);
        const cRate = c.bytes / 1e6 / (c.wallMs / 1000);
        agentMbS.push(aRate);
        curlMbS.push(cRate);
        tputRatios.push(aRate / cRate);
        const aCpu = a.cpuUserMs + a.cpuSystemMs;
        const cCpu = c.cpuUserMs + c.cpuSystemMs;
        cpuRatios.push(aCpu / cCpu);
        agentCpuSPerGb.push(aCpu / 1000 / (a.bytes / 1e9));
        curlCpuSPerGb.push(cCpu / 1000 / (c.bytes / 1e9));
        agentSysShare.push(a.cpuSystemMs / aCpu);
        curlSysShare.push(c.cpuSystemMs / cCpu);
      }
      const common = { driver: cloud.driver, files: FILES, file_bytes: fileBytes, concurrency, rounds: ROUNDS };
      print({ figure: 'upload_mb_s_agent', value: round(median(agentMbS), 1), unit: 'MB/s', target: null, pass: null, baseline_figure: 'upload_mb_s_curl', ...common });
      print({ figure: 'upload_mb_s_curl', value: round(median(curlMbS), 1), unit: 'MB/s', target: null, pass: null, ...common });
      const tput = median(tputRatios);
      print({
        figure: 'throughput_ratio_vs_curl',
        value: round(tput, 2),
        baseline_figure: 'upload_mb_s_curl',
        unit: 'ratio',
        target: TARGETS.throughputRatio,
        pass: tput >= TARGETS.throughputRatio,
        rounds_values: tputRatios.map((x) => round(x, 2)),
        ...common,
      });
      ok &&= tput >= TARGETS.throughputRatio;
      print({ figure: 'cpu_s_per_gb_agent', value: round(median(agentCpuSPerGb), 3), unit: 's/GB', target: null, pass: null, system_share: round(median(agentSysShare), 2), baseline_figure: 'cpu_s_per_gb_curl', ...common });
      print({ figure: 'cpu_s_per_gb_curl', value: round(median(curlCpuSPerGb), 3), unit: 's/GB', target: null, pass: null, system_share: round(median(curlSysShare), 2), ...common });
      const cpu = median(cpuRatios);
      print({
        figure: 'cpu_ratio_vs_curl',
        value: round(cpu, 2),
        baseline_figure: 'cpu_s_per_gb_curl',
        unit: 'ratio',
        target: TARGETS.cpuRatio,
        pass: cpu <= TARGETS.cpuRatio,
        rounds_values: cpuRatios.map((x) => round(x, 2)),
        ...common,
      });
      ok &&= cpu <= TARGETS.cpuRatio;
      for (const f of files) await rm(f.path, { force: true });

      // memory: a 5 MB clip, then a 500 MB clip, in one agent process, each
      // phase's peak measured on its own. Two processes would differ by their
      // start-up alone (resident sets of identical processes were 30 MiB apart).
      const rssFiles: BenchFile[] = [];
      for (const [name, size] of [['5mb', SMALL_CLIP_BYTES], ['500mb', LARGE_CLIP_BYTES]] as const) {
        const path = join(dir, `rss-${name}.bin`);
        writeRandomFile(path, size);
        rssFiles.push({ path, digest: await hashClip(path, partBytes) });
      }
      const rss = await agentRun(cloud, rssFiles.map((f) => [f]), join(dir, 'agent-rss'), warmup);
      await deleteClips(cloud, rss.clipIds);
      for (const f of rssFiles) await rm(f.path, { force: true });
      const small = rss.sets[0] as AgentUploadResult;
      const large = rss.sets[1] as AgentUploadResult;
      const mode = (bytes: number): string => (bytes > cloud.multipartThresholdBytes ? 'multipart' : 'single');
      print({
        figure: 'rss_peak_mb_5mb_clip',
        value: round(small.peakRssBytes / MiB, 1),
        unit: 'MiB',
        target: null,
        pass: null,
        driver: cloud.driver,
        upload: mode(SMALL_CLIP_BYTES),
        rss_before_mib: round(small.rssBeforeBytes / MiB, 1),
        source: small.peakRssSource,
        runtime: 'node --import tsx',
      });
      print({
        figure: 'rss_peak_mb_500mb_clip',
        value: round(large.peakRssBytes / MiB, 1),
        unit: 'MiB',
        target: null,
        pass: null,
        driver: cloud.driver,
        upload: mode(LARGE_CLIP_BYTES),
        part_bytes: partBytes,
        rss_before_mib: round(large.rssBeforeBytes / MiB, 1),
        source: large.peakRssSource,
        runtime: 'node --import tsx',
      });
      // "no more than 10 MB apart": either way
      const delta = (large.peakRssBytes - small.peakRssBytes) / MiB;
      const deltaOk = Math.abs(delta) <= TARGETS.rssDeltaMb;
      print({
        figure: 'rss_delta_500mb_vs_5mb_mb',
        value: round(delta, 1),
        unit: 'MiB',
        target: TARGETS.rssDeltaMb,
        pass: deltaOk,
        driver: cloud.driver,
        same_process: true,
      });
      ok &&= deltaOk;
    } finally {
      await cloud.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  process.exit(ok ? 0 : 1);
}

main().catch((err: unknown) => {
  console.error(`upload bench: ${(err as Error).message}`);
  process.exit(1);
});
