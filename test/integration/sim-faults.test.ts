/**
 * Faults driven through the simulator's fault modules (firmware-sim/faults/),
 * each against the real agent as the simulator runs it (firmware-sim/agents.ts:
 * `node agent/main.ts run` in its own process, its real ffmpeg recording a
 * SimCamera, 320x180 at 10 fps in 2 s segments), uploading to a real cloud on
 * port 0 through a FaultProxy, and what the agent does about each:
 *
 *   - ffmpeg crash: restarted, the segment it left open salvaged, journaled
 *     and uploaded, the crash counted;
 *   - cloud 5xx: retried with backoff (bounded), reported, and every segment
 *     in the cloud exactly once once it answers again;
 *   - slow answers, later than the agent waits: the same, including a clip
 *     whose completion the cloud took while the agent had given up on it;
 *   - clock skew: uploads held without hammering the cloud, every clip kept
 *     queued, `agent status` says why; after the clock is set right, new
 *     clips upload and those stamped ahead wait until the cloud can take them.
 *
 * Outage, power cut, full disk and stall have their own suites, which assert
 * the agent's side with the same parts: outage.test.ts (outage, small quota),
 * test/e2e/power-cut.test.ts, disk-full.test.ts, recorder-stall.test.ts. The
 * simulator's command line is sim-cli.test.ts.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { segmentName } from '../../agent/recorder/segment-clock.js';
import { formatDeviceStatus } from '../../agent/status.js';
import { SimAgent, type AgentLogLine, type SimAgentOptions } from '../../firmware-sim/agents.js';
import { SimCamera } from '../../firmware-sim/camera.js';
import type { FaultProxy, ProxiedRequest } from '../../firmware-sim/faults/fault-proxy.js';
import { recorderFfmpegs } from '../../firmware-sim/faults/ffmpeg-crash.js';
import { processArgv } from '../../firmware-sim/faults/power-cut.js';
import { hashFile } from '../../shared/hash.js';
import { createLogger } from '../../shared/log.js';
import { agentStatusCli, listedSegments, readJournalClips, segmentFiles } from '../helpers/agent-process.js';
import { api, createBindCode, registerAndLogin, setPlan, startTestCloud, type TestAccount, type TestCloud } from '../helpers/cloud.js';
import { decode, mp4Boxes, waitFor } from '../helpers/media.js';

const SEGMENT_SECONDS = 2;
/** the agent's defaults (agent/uploader/retry-policy.ts): the sim runs agents as devices do, unshortened */
const CONCURRENCY = 2;
const MAX_ATTEMPTS = 6;

const logger = createLogger({ level: 'silent' });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
let root: string;
let cloud: TestCloud;
let account: TestAccount;
const rigs: Rig[] = [];

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'camvault-sim-faults-'));
  cloud = await startTestCloud();
  account = await registerAndLogin(cloud.url);
  await setPlan(cloud.url, account.token, 'premium');
});

afterAll(async () => {
  await Promise.allSettled(rigs.map((r) => r.agent.stop()));
  await Promise.allSettled(rigs.map((r) => r.camera.stop()));
  await cloud?.close();
  if (root) rmSync(root, { recursive: true, force: true });
});

interface Rig {
  serial: string;
  camera: SimCamera;
  agent: SimAgent;
  proxy: FaultProxy;
  segDir: string;
  /** every line the agent logged */
  logs: AgentLogLine[];
  /** every request that crossed the proxy, when it ended */
  requests: ProxiedRequest[];
  uploaded(): string[];
}

async function startRig(serial: string, opts: Partial<SimAgentOptions> = {}): Promise<Rig> {
  const camera = await SimCamera.start({ serial, width: 320, height: 180, fps: 10, gopSeconds: 1, motionEverySec: 0, fontFile: null, logger });
  let agent: SimAgent;
  try {
    agent = await SimAgent.start({
      serial,
      camera,
      cloudUrl: cloud.url,
      dataDir: join(root, serial),
      bindCode: await createBindCode(cloud.url, account.token),
      segmentSeconds: SEGMENT_SECONDS,
      ...opts,
    });
  } catch (err) {
    await camera.stop();
    throw err;
  }
  const logs: AgentLogLine[] = [];
  const requests: ProxiedRequest[] = [];
  agent.on('log', (l: AgentLogLine) => logs.push(l));
  if (!agent.proxy) throw new Error('the test cloud is http: the agent must have a fault proxy');
  agent.proxy.on('request', (r: ProxiedRequest) => requests.push(r));
  const rig: Rig = {
    serial,
    camera,
    agent,
    proxy: agent.proxy,
    segDir: join(agent.dataDir, 'segments', 'main'),
    logs,
    requests,
    uploaded: () => logs.filter((l) => l.msg === 'clip uploaded').map((l) => String(l.clipId)),
  };
  rigs.push(rig);
  return rig;
}

async function cloudClips(serial: string): Promise<{ id: string; sha256: string; size: number; start: string }[]> {
  const out: { id: string; sha256: string; size: number; start: string }[] = [];
  let cursor: string | null = null;
  do {
    const q: string = `/v1/clips?serial=${serial}&limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const page = await api(cloud.url, 'GET', q, { token: account.token });
    expect(page.status).toBe(200);
    out.push(...(page.body.clips as typeof out));
    cursor = page.body.nextCursor as string | null;
  } while (cursor);
  return out;
}

/**
 * After a clean stop: every segment ffmpeg listed, and every segment file on
 * the device, is journaled; nothing failed or was lost; only what closed on
 * the way out may still wait; and the cloud holds each uploaded clip once,
 * with the SHA-256 of the file on the device.
 */
async function expectEverySegmentOnce(rig: Rig): Promise<void> {
  const rows = readJournalClips(rig.agent.dataDir);
  const journaled = new Set(rows.map((r) => basename(r.path)));
  for (const s of listedSegments(rig.segDir)) expect(journaled.has(s.name), `listed ${s.name} journaled`).toBe(true);
  for (const f of segmentFiles(rig.segDir)) expect(journaled.has(f), `file ${f} journaled`).toBe(true);
  expect(rows.filter((r) => r.state === 'failed' || r.state === 'lost')).toEqual([]);
  expect(rows.filter((r) => r.state !== 'uploaded').length).toBeLessThanOrEqual(CONCURRENCY);
  const uploaded = rows.filter((r) => r.state === 'uploaded');
  const inCloud = await cloudClips(rig.serial);
  expect(inCloud.map((c) => c.id).sort()).toEqual(uploaded.map((r) => r.id).sort());
  expect(new Set(inCloud.map((c) => c.sha256)).size).toBe(inCloud.length);
  for (const r of uploaded) {
    expect(inCloud.find((c) => c.id === r.id)?.sha256).toBe(r.sha256);
    expect((await hashFile(r.path)).sha256).toBe(r.sha256);
  }
}

/** Complete fragments (a moof, then an mdat that ends inside the file) of an MP4 being written. */
function completeFragments(path: string): number {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch {
    return 0;
  }
  let off = 0;
  let n = 0;
  let afterMoof = false;
  for (const b of mp4Boxes(buf)) {
    const fits = off + b.size <= buf.length;
    if (b.type === 'mdat' && afterMoof && fits) n += 1;
    afterMoof = b.type === 'moof' && fits;
    off += b.size;
  }
  return n;
}

/**
 * The recording ffmpeg and the segment it is writing, once that segment holds
 * one or two complete fragments: with 4 s segments and a fragment a second,
 * a signal sent now finds that segment still open.
 */
async function segmentBeingWritten(rig: Rig, timeoutMs: number): Promise<{ pid: number; path: string }> {
  let found: { pid: number; path: string } | undefined;
  await waitFor(
    () => {
      const agentPid = rig.agent.pid;
      const ffmpeg = agentPid === undefined ? undefined : recorderFfmpegs(agentPid)[0];
      const argv = ffmpeg === undefined ? undefined : processArgv(ffmpeg);
      const list = argv?.[argv.indexOf('-segment_list') + 1];
      if (ffmpeg === undefined || !list) return false;
      const lines = existsSync(list) ? readFileSync(list, 'utf8').split('\n') : [''];
      lines.pop();
      const path = join(rig.segDir, segmentName(basename(list, '.csv'), lines.length));
      const fragments = completeFragments(path);
      if (fragments < 1 || fragments > 2) return false;
      found = { pid: ffmpeg, path };
      return true;
    },
    timeoutMs,
    'a segment being written with a complete fragment',
  );
  return found as { pid: number; path: string };
}

describe('faults from the simulator, and what the agent does about them', () => {
  it('an ffmpeg that crashes mid-segment (SIGKILL, SIGSEGV, SIGABRT) is started again after a backoff; the segment it left open is salvaged, playable, journaled and uploaded; every crash is counted', async () => {
    const rig = await startRig('SIMFFCRASH01', { segmentSeconds: 4 });
    await waitFor(() => rig.uploaded().length >= 2, 40_000, 'two uploads');
    const crashes: { signal: string; pid: number; segment: string }[] = [];
    for (const signal of ['SIGKILL', 'SIGSEGV', 'SIGABRT'] as const) {
      const target = await segmentBeingWritten(rig, 20_000);
      const pid = rig.agent.crashFfmpeg(signal);
      expect(pid).toBe(target.pid);
      const segment = basename(target.path);
      crashes.push({ signal, pid: target.pid, segment });
      await waitFor(() => rig.logs.some((l) => l.msg === 'salvaged the segment ffmpeg left open' && l.segment === segment), 15_000, `${segment} salvaged`);
      await waitFor(() => recorderFfmpegs(rig.agent.pid ?? 0).some((p) => p !== target.pid), 15_000, 'ffmpeg started again');
    }
    const salvaged = (): boolean => crashes.every((c) => readJournalClips(rig.agent.dataDir).some((r) => basename(r.path) === c.segment && r.state === 'uploaded'));
    await waitFor(salvaged, 30_000, 'the salvaged clips uploaded');
    const uploadsAfter = rig.uploaded().length;
    await waitFor(() => rig.uploaded().length >= uploadsAfter + 2, 20_000, 'recording and uploading go on');
    await rig.agent.stop();

    // each crash: ffmpeg exited of that signal, not of anything the recorder did, and was started again after a delay
    const exits = rig.logs.filter((l) => l.msg === 'ffmpeg exited; restarting' && l.signal !== null && !l.endReason);
    expect(exits.map((l) => l.signal)).toEqual(['SIGKILL', 'SIGSEGV', 'SIGABRT']);
    for (const e of exits) expect(e.restartInMs).toBeGreaterThan(0);
    const st = await rig.agent.status();
    expect(st.recording.ffmpegCrashes).toBe(3);
    expect(formatDeviceStatus(st)).toContain('3 ffmpeg crashes (restarted, open segment salvaged)');
    const listed = new Set(listedSegments(rig.segDir).map((s) => s.name));
    const rows = readJournalClips(rig.agent.dataDir);
    for (const c of crashes) {
      // ffmpeg never closed it: the salvage, not the segment list, put it in the journal
      expect(listed.has(c.segment), c.segment).toBe(false);
      const row = rows.find((r) => basename(r.path) === c.segment);
      expect(row?.state, c.segment).toBe('uploaded');
      const d = await decode(row?.path as string);
      expect(d.code).toBe(0);
      expect(d.errors).toEqual([]);
      expect(d.frames).toBeGreaterThan(0);
    }
    await expectEverySegmentOnce(rig);
  }, 150_000);

  it('a cloud answering 503: the agent retries with backoff, never in a hot loop, reports the error, keeps the footage, and once the cloud answers every closed segment arrives exactly once', async () => {
    const rig = await startRig('SIMCLOUD5XX1');
    await waitFor(() => rig.uploaded().length >= 2, 40_000, 'two uploads');
    rig.proxy.setMode('http5xx', { status: 503 });
    await sleep(12_000);
    rig.proxy.setMode('forward');
    const during = rig.requests.filter((r) => r.mode === 'http5xx');
    const st = await rig.agent.status();

    // every attempt met the 503 at its first request; one task makes at most
    // MAX_ATTEMPTS of them, and with the default backoff (1+2+4+8 s, jittered)
    // no task has used them all in 12 s, so at most CONCURRENCY tasks ran
    expect(during.every((r) => r.status === 503)).toBe(true);
    const presigns = during.filter((r) => r.kind === 'presign');
    expect(presigns.length).toBeGreaterThan(0);
    expect(presigns.length).toBeLessThanOrEqual(CONCURRENCY * MAX_ATTEMPTS);
    expect(st.lastError).toMatchObject({ code: 'SHUTTING_DOWN', status: 503 });
    expect(st.queue.depth).toBeGreaterThanOrEqual(3);
    expect(st.counts.failed).toBe(0);

    const mustArrive = readJournalClips(rig.agent.dataDir).map((r) => r.id);
    await waitFor(() => mustArrive.every((id) => rig.uploaded().includes(id)), 45_000, 'the backlog uploaded');
    await rig.agent.stop();
    await expectEverySegmentOnce(rig);
  }, 150_000);

  it('answers later than the agent waits: it times out and retries without a hot loop, and every closed segment arrives exactly once, the one whose completion the cloud took while the agent had given up included', async () => {
    const rig = await startRig('SIMSLOWLINK1');
    await waitFor(() => rig.uploaded().length >= 2, 40_000, 'two uploads');
    // The link turns slow the moment a presign is answered, so that clip's PUT
    // and complete cross it: 9 s each way against the agent's 15 s per call.
    // The PUT (30 s idle limit) gets through in 18 s; the complete reaches the
    // cloud 9 s later, and its answer would come 9 s after that, 3 s after the
    // agent stopped waiting.
    await new Promise<void>((resolve) => {
      const onRequest = (r: ProxiedRequest): void => {
        if (r.kind !== 'presign' || r.status !== 200) return;
        rig.proxy.off('request', onRequest);
        rig.proxy.setMode('slow', { latencyMs: 18_000 });
        resolve();
      };
      rig.proxy.on('request', onRequest);
    });
    await sleep(31_000);
    rig.proxy.setMode('forward');
    const mustArrive = readJournalClips(rig.agent.dataDir).map((r) => r.id);
    await waitFor(() => mustArrive.every((id) => rig.uploaded().includes(id)), 45_000, 'the backlog uploaded');
    const st = await rig.agent.status();
    await rig.agent.stop();

    const slow = rig.requests.filter((r) => r.mode === 'slow');
    const lostAnswer = slow.find((r) => r.kind === 'complete' && r.status === null);
    expect(lostAnswer, JSON.stringify(slow)).toBeDefined();
    const clipId = lostAnswer?.path.split('/')[4] as string;
    expect((await cloudClips(rig.serial)).filter((c) => c.id === clipId)).toHaveLength(1);
    expect(readJournalClips(rig.agent.dataDir).find((r) => r.id === clipId)?.state).toBe('uploaded');
    // a presign answered late is a timeout to the agent, retried with backoff
    expect(slow.filter((r) => r.kind === 'presign').length).toBeLessThanOrEqual(CONCURRENCY * MAX_ATTEMPTS);
    expect(st.lastError?.code).toBe('TIMEOUT');
    await expectEverySegmentOnce(rig);
  }, 150_000);

  it('a device clock 2 h ahead: the cloud refuses its clip times; the agent holds uploads without hammering the cloud, keeps every clip queued and says why in agent status; once the clock is right, new clips upload and those stamped ahead wait until the cloud can take them', async () => {
    const skewMs = 2 * 3_600_000;
    const rig = await startRig('SIMCLOCKSKW1', { clockSkewMs: skewMs });
    const refusal = "the cloud refuses the start time of a clip this device's clock calls fresh";
    await waitFor(() => rig.logs.some((l) => l.msg.startsWith(refusal)), 40_000, 'the refusal reported');
    const rowsAtRefusal = readJournalClips(rig.agent.dataDir).length;
    await waitFor(() => readJournalClips(rig.agent.dataDir).length >= rowsAtRefusal + 4, 30_000, 'four more clips recorded');

    // `npm run agent -- status`, as an operator runs it next to the agent
    const cli = agentStatusCli(rig.agent.configFile) as { clock: { state: string; refusals: number } | null; counts: Record<string, number>; queue: { depth: number }; lastError: { code: string } | null };
    expect(cli.clock).toMatchObject({ state: 'wrong' });
    expect(cli.clock?.refusals).toBeGreaterThanOrEqual(1);
    expect(cli.counts.failed).toBe(0);
    expect(cli.counts.uploaded).toBe(0);
    expect(cli.queue.depth).toBeGreaterThanOrEqual(5);
    expect(cli.lastError?.code).toBe('CLIP_START_OUT_OF_RANGE');
    expect(formatDeviceStatus(await rig.agent.status())).toMatch(/clock: +WRONG since .*: the cloud refuses clip start times this device calls fresh/);
    // one presign per upload slot, then the slots wait: no hot loop
    const presigns = rig.requests.filter((r) => r.kind === 'presign');
    expect(presigns.length).toBeGreaterThanOrEqual(1);
    expect(presigns.length).toBeLessThanOrEqual(CONCURRENCY);
    expect(presigns.every((r) => r.status === 400)).toBe(true);
    // loud once, not once per clip
    expect(rig.logs.filter((l) => l.msg.startsWith(refusal) && l.level === 50)).toHaveLength(1);
    expect(await cloudClips(rig.serial)).toEqual([]);
    const stampedAhead = readJournalClips(rig.agent.dataDir).map((r) => r.id);

    // NTP sets the clock: the agent starts again on the right time
    await rig.agent.restart({ clockSkewMs: 0 });
    const db = (): { id: string; start_ms: number; state: string; last_error_code: string | null; not_before_ms: number | null }[] => {
      const d = new Database(join(rig.agent.dataDir, 'agent.db'), { readonly: true, fileMustExist: true });
      try {
        return d.prepare('SELECT id, start_ms, state, last_error_code, not_before_ms FROM clips').all() as ReturnType<typeof db>;
      } finally {
        d.close();
      }
    };
    const deferred = (): boolean => stampedAhead.every((id) => db().some((r) => r.id === id && r.state === 'queued' && r.not_before_ms !== null));
    await waitFor(() => rig.uploaded().length >= 2 && deferred(), 40_000, 'new clips uploaded and the ones stamped ahead deferred');
    await rig.agent.stop();

    const rows = db();
    const now = Date.now();
    for (const id of stampedAhead) {
      const r = rows.find((x) => x.id === id);
      // stamped about 2 h ahead, waiting until 4 minutes before its start (the cloud takes up to 5 ahead)
      expect(r?.start_ms).toBeGreaterThan(now + skewMs - 10 * 60_000);
      expect(r).toMatchObject({ state: 'queued', last_error_code: 'CLIP_START_OUT_OF_RANGE', not_before_ms: (r?.start_ms ?? 0) - 4 * 60_000 });
    }
    expect(rows.filter((r) => r.state === 'failed' || r.state === 'lost')).toEqual([]);
    const st = await rig.agent.status();
    expect(st.clock).toMatchObject({ state: 'ok' });
    expect(formatDeviceStatus(st)).toMatch(/clock: +the cloud takes clip times again since/);
    const inCloud = await cloudClips(rig.serial);
    const uploaded = rows.filter((r) => r.state === 'uploaded');
    expect(uploaded.length).toBeGreaterThanOrEqual(2);
    expect(inCloud.map((c) => c.id).sort()).toEqual(uploaded.map((r) => r.id).sort());
    for (const c of inCloud) expect(Date.parse(c.start)).toBeLessThan(now);
  }, 150_000);
});
