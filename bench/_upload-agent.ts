/**
 * The agent's side of `bench/upload.ts`, in a process of its own so that its
 * CPU time and resident memory are the agent's alone. Not a benchmark by
 * itself (the leading _ keeps bench/run.ts from running it).
 *
 * It runs the agent's real upload path: a Journal in a fresh data directory
 * with one queued clip per file (journaled with the digests bench/upload.ts
 * computed with the agent's own hashClip, so no byte of a file is read before
 * the upload starts), the agent's CloudClient with the device's credentials,
 * and the Uploader with the agent's default concurrency and part size. It
 * measures from uploader.start() until every clip is uploaded (presign, PUT
 * or parts, complete), and prints one JSON line:
 *   wallMs, cpuUserMs, cpuSystemMs: the upload phase, all threads;
 *   peakRssBytes: the peak resident set of the upload phase: VmHWM after
 *     resetting it (/proc/self/clear_refs) just before the upload, or the
 *     highest 20 ms sample where the kernel does not allow the reset;
 * fetch is warmed up first (one GET /healthz), as in an agent that has run a
 * while;
 *   rssBeforeBytes: resident set when the upload started;
 *   hwmProcessBytes: the peak of the whole process (module loading included).
 *
 * Usage: node --import tsx bench/_upload-agent.ts JOB.json
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { pino } from 'pino';
import { loadAgentConfig } from '../agent/config.js';
import { CloudClient } from '../agent/cloud-client.js';
import { Journal } from '../agent/journal/journal.js';
import type { ClipDigest } from '../agent/uploader/multipart.js';
import { Uploader, type ClipUploaded, type UploadFailed } from '../agent/uploader/uploader.js';
import { newClipId } from '../shared/ids.js';
import { createLogger } from '../shared/log.js';

export interface AgentUploadJob {
  cloudUrl: string;
  serial: string;
  deviceToken: string;
  /** a fresh, empty folder for the journal */
  dataDir: string;
  /** each set is uploaded and measured on its own, one after the other, in this one process */
  sets: { path: string; digest: ClipDigest }[][];
  /** uploaded first, outside the measurement: see main() */
  warmup?: { path: string; digest: ClipDigest };
}

/** what the process prints: one result per set, and every clip it made (to delete) */
export interface AgentUploadOutput {
  sets: AgentUploadResult[];
  clipIds: string[];
}

export interface AgentUploadResult {
  clips: number;
  bytes: number;
  concurrency: number;
  partBytes: number;
  wallMs: number;
  cpuUserMs: number;
  cpuSystemMs: number;
  peakRssBytes: number;
  peakRssSource: 'VmHWM' | 'samples';
  rssBeforeBytes: number;
  hwmProcessBytes: number;
}

function vmHwmBytes(): number | undefined {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Linux: writing 5 to clear_refs resets VmHWM to the current RSS (since 4.0). */
function resetHwm(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

async function main(): Promise<void> {
  const jobFile = process.argv[2];
  if (!jobFile) throw new Error('usage: _upload-agent.ts JOB.json');
  const job = JSON.parse(readFileSync(jobFile, 'utf8')) as AgentUploadJob;
  // the agent's own defaults for concurrency and part size
  const config = loadAgentConfig({
    env: {},
    overrides: { serial: job.serial, cloudUrl: job.cloudUrl, input: 'bench', dataDir: job.dataDir, development: true },
  });
  // production's log level, written where it costs what it costs but shows nowhere
  const logger = createLogger({ name: 'agent', level: 'info' }, pino.destination({ dest: '/dev/null', sync: false }));
  const journal = Journal.open(config.dataDir);
  const client = new CloudClient({ baseUrl: config.cloudUrl });
  client.setDeviceCredentials(job.serial, job.deviceToken);
  const addClips = (files: AgentUploadJob['sets'][number], startMs: number): string[] =>
    files.map((f, i) =>
      journal.addClip({
        id: newClipId(startMs + i * 10),
        channel: config.channel,
        path: f.path,
        startMs: startMs + i * 10,
        durationMs: 10_000,
        size: f.digest.size,
        md5: f.digest.md5,
        sha256: f.digest.sha256,
        kind: 'continuous',
        parts: f.digest.parts,
      }).id,
    );
  const newUploader = (): Uploader =>
    new Uploader({
      journal,
      api: client,
      serial: job.serial,
      logger: logger.child({ serial: job.serial }),
      concurrency: config.uploadConcurrency,
      multipartPartBytes: config.multipartPartBytes,
    });
  /** resolves once every one of ids is uploaded; rejects on a refusal that is not retried */
  const uploadedAll = (uploader: Uploader, ids: string[]): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const left = new Set(ids);
      uploader.on('clip-uploaded', (e: ClipUploaded) => {
        // as the Agent logs each upload
        logger.info({ clipId: e.clipId, kind: e.kind, size: e.size, uploadMs: e.uploadMs }, 'clip uploaded');
        left.delete(e.clipId);
        if (left.size === 0) resolve();
      });
      uploader.on('upload-failed', (e: UploadFailed) => {
        if (e.next !== 'retry') reject(new Error(`clip ${e.clipId}: ${e.code} (HTTP ${e.status}), next: ${e.next}`));
      });
    });
  const now = Date.now();

  // A running agent has uploaded before: its code paths are compiled (JIT) and
  // its modules loaded, e.g. fetch (undici) is loaded lazily on first use. A
  // fresh process pays for that on its first clip (~0.1 s of CPU, a third of
  // the agent's figure for 256 MB). One small clip through the whole path
  // first, unmeasured, then the measured clips through a new Uploader.
  const warmIds: string[] = [];
  if (job.warmup) {
    warmIds.push(...addClips([job.warmup], now - 120_000));
    const warm = newUploader();
    const warmDone = uploadedAll(warm, warmIds);
    warm.start();
    await warmDone;
    await warm.stop({ graceMs: 0 });
  }
  await (await fetch(`${config.cloudUrl}/healthz`)).text();

  const clipIds: string[] = [...warmIds];
  const sets: AgentUploadResult[] = [];
  for (const [n, files] of job.sets.entries()) {
    const ids = addClips(files, now - 60_000 + n * 1000);
    clipIds.push(...ids);
    sets.push(await measuredUpload(newUploader(), uploadedAll, ids, files.reduce((s, f) => s + f.digest.size, 0), config));
  }
  journal.close();
  const output: AgentUploadOutput = { sets, clipIds };
  process.stdout.write(`${JSON.stringify(output)}\n`);
}

/**
 * Uploads ids with a fresh Uploader and measures it: wall, CPU (all threads),
 * and the peak resident set of just this phase.
 */
async function measuredUpload(
  uploader: Uploader,
  uploadedAll: (uploader: Uploader, ids: string[]) => Promise<void>,
  ids: string[],
  bytes: number,
  config: { uploadConcurrency: number; multipartPartBytes: number },
): Promise<AgentUploadResult> {
  const done = uploadedAll(uploader, ids);
  // start the measured phase from a collected heap, so the figure is what the
  // upload adds and not whatever garbage came before (the bench runs this with
  // --expose-gc). V8 sweeps and gives pages back concurrently: collect twice,
  // with a pause, or a phase can start 20 MiB above the next one.
  const gc = (globalThis as { gc?: () => void }).gc;
  for (let i = 0; gc && i < 2; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 200));
  }
  const rssBeforeBytes = process.memoryUsage.rss();
  let sampledPeak = rssBeforeBytes;
  const hwmLoading = vmHwmBytes() ?? rssBeforeBytes;
  const hwmReset = resetHwm();
  // sampling costs CPU (it shows in the figure), so only where VmHWM cannot be reset
  const sampler = hwmReset
    ? undefined
    : setInterval(() => {
        sampledPeak = Math.max(sampledPeak, process.memoryUsage.rss());
      }, 20);
  // UPLOAD_BENCH_MEM_TRACE=1: the process's memory every 250 ms on stderr, to see what grows
  const trace = process.env.UPLOAD_BENCH_MEM_TRACE
    ? setInterval(() => {
        const m = process.memoryUsage();
        const mib = (x: number): string => (x / 1048576).toFixed(1);
        process.stderr.write(`mem rss=${mib(m.rss)} heapUsed=${mib(m.heapUsed)} external=${mib(m.external)} arrayBuffers=${mib(m.arrayBuffers)}\n`);
      }, 250)
    : undefined;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  uploader.start();
  await done;
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  if (sampler) clearInterval(sampler);
  if (trace) clearInterval(trace);
  sampledPeak = Math.max(sampledPeak, process.memoryUsage.rss());
  const hwm = vmHwmBytes();
  await uploader.stop({ graceMs: 0 });
  return {
    clips: ids.length,
    bytes,
    concurrency: config.uploadConcurrency,
    partBytes: config.multipartPartBytes,
    wallMs,
    cpuUserMs: cpu.user / 1000,
    cpuSystemMs: cpu.system / 1000,
    peakRssBytes: hwmReset && hwm !== undefined ? Math.max(hwm, sampledPeak) : sampledPeak,
    peakRssSource: hwmReset && hwm !== undefined ? 'VmHWM' : 'samples',
    rssBeforeBytes,
    hwmProcessBytes: Math.max(hwmLoading, hwm ?? 0, sampledPeak),
  };
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`upload bench (agent side): ${(err as Error).message}`);
    process.exit(1);
  },
);
