import { rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { BindCode } from '../shared/contracts/devices.js';
import { SERIAL_RE } from '../shared/ids.js';
import { createLogger } from '../shared/log.js';
import { AccountSession, SimAgent, describeAgentLog } from './agents.js';
import { SimCamera, type SimAudio, type SimVideoCodec } from './camera.js';
import { formatBytes } from '../agent/status.js';
import { parseQuota } from './faults/full-disk.js';
import { injectFault, type SimUnit } from './faults/inject.js';
import { FaultScheduler, FaultSyntaxError, faultHelp, parseCommand, parseFaultSpec, type FaultSpec } from './faults/schedule.js';

/**
 * npm run sim -- --serial SIM00000001 [--cameras N] [--width 640 --height 360 --fps 15 --motion-every 20] [--codec h265 --audio pcm_alaw]
 * npm run sim -- --cameras 4 --agent --cloud http://127.0.0.1:8080 --email … --password … [--fault outage@30s+20s …]
 *
 * --cameras N starts N full cameras with consecutive serials. --agent adds
 * the real agent for each camera (firmware-sim/agents.ts), claimed with the
 * given bind codes, or with codes the simulator makes through the account's
 * session. Faults come on a schedule (--fault, firmware-sim/faults/schedule.ts)
 * or as commands on stdin. Lightweight fleets: `npm run sim -- fleet …`.
 */
const USAGE = `usage: npm run sim -- [--serial SIM00000001] [--cameras N] [--width W] [--height H] [--fps F] [--gop SECONDS]
         [--motion-every SECONDS] [--codec h264|h265] [--audio none|aac|pcm_alaw|pcm_mulaw] [--port P] [--events-port P]
       with agents, one per camera:
         --agent --cloud URL (--email EMAIL --password PASSWORD [--plan basic|standard|premium] | --bind-code CODE …)
         [--segment-seconds 10] [--data-dir .data/sim] [--fresh] [--quota BYTES] [--ca-file PEM]
         [--fault NAME[#CAMERA][=VALUE][@WHEN] …]
       the password may come from CAMVAULT_SIM_PASSWORD instead (out of \`ps\`); --bind-code once per camera, or comma-separated
       WHEN is AT[+FOR] or everyPERIOD[+FOR] (500ms, 30s, 2m, 1h); without @WHEN a fault starts at once.
       faults:
${faultHelp('         ')}
       on stdin, one a line: NAME[#CAMERA][=VALUE] [FOR] (now: \`outage 20\`, \`power-cut 2\`, \`stall#2 5\`),
         NAME…@WHEN (from now), status, help, stop
       e.g. --fault outage@30s+20s --fault power-cut#2@60s --fault ffmpeg-crash@every90s --fault skew=+2h --quota 300k
       lightweight fleets: npm run sim -- fleet --help`;

const CODECS: readonly SimVideoCodec[] = ['h264', 'h265'];
const AUDIOS: readonly SimAudio[] = ['none', 'aac', 'pcm_alaw', 'pcm_mulaw'];

class UsageError extends Error {}

function choice<T extends string>(name: string, value: string | undefined, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(value)) throw new UsageError(`--${name} must be one of ${allowed.join(', ')}, got ${JSON.stringify(value)}`);
  return value as T;
}

function intOption(name: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
  return n;
}

/** SIM00000001 + 2 → SIM00000003, keeping the width of the trailing number. */
function nthSerial(base: string, n: number): string {
  if (n === 0) return base;
  const m = /^(.*?)(\d+)$/.exec(base);
  if (!m) return `${base}${n}`;
  const digits = m[2] ?? '';
  return `${m[1] ?? ''}${String(Number(digits) + n).padStart(digits.length, '0')}`;
}

interface AgentSettings {
  cloudUrl: string;
  claim: { kind: 'codes'; codes: string[] } | { kind: 'account'; email: string; password: string; plan?: string } | { kind: 'none' };
  segmentSeconds: number;
  dataDir: string;
  fresh: boolean;
  quotaBytes?: number;
  caFile?: string;
}

function agentSettings(values: Record<string, string | boolean | string[] | undefined>, cameras: number): AgentSettings {
  const str = (k: string): string | undefined => (typeof values[k] === 'string' ? (values[k] as string) : undefined);
  const cloud = str('cloud');
  if (!cloud) throw new UsageError('--agent needs --cloud URL');
  let cloudUrl: string;
  try {
    const u = new URL(cloud);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http(s)');
    cloudUrl = cloud.replace(/\/+$/, '');
  } catch {
    throw new UsageError(`--cloud must be an http:// or https:// URL, got ${JSON.stringify(cloud)}`);
  }
  const codes = ((values['bind-code'] as string[] | undefined) ?? []).flatMap((c) => c.split(',')).map((c) => c.trim()).filter(Boolean);
  const email = str('email');
  const password = str('password') ?? process.env.CAMVAULT_SIM_PASSWORD;
  let claim: AgentSettings['claim'] = { kind: 'none' };
  if (codes.length > 0 && email) throw new UsageError('give --bind-code or --email, not both');
  if (codes.length > 0) {
    if (codes.length !== cameras) throw new UsageError(`--bind-code: ${codes.length} codes for ${cameras} cameras (one per camera)`);
    for (const c of codes) if (!BindCode.safeParse(c).success) throw new UsageError('--bind-code: one of the codes is not a bind code');
    claim = { kind: 'codes', codes };
  } else if (email) {
    if (!password) throw new UsageError('--email needs --password (or CAMVAULT_SIM_PASSWORD)');
    claim = { kind: 'account', email, password, ...(str('plan') ? { plan: str('plan') } : {}) };
  } else if (str('plan')) {
    throw new UsageError('--plan needs --email');
  }
  let quotaBytes: number | undefined;
  if (str('quota') !== undefined) {
    const q = parseQuota(str('quota') as string);
    if (q === null) throw new UsageError(`--quota must be a byte count of at least 10000 (300000, 300k, 2M), got ${JSON.stringify(str('quota'))}`);
    quotaBytes = q;
  }
  return {
    cloudUrl,
    claim,
    segmentSeconds: intOption('segment-seconds', str('segment-seconds'), 10, 1, 600),
    dataDir: resolve(str('data-dir') ?? '.data/sim'),
    fresh: values.fresh === true,
    ...(quotaBytes !== undefined ? { quotaBytes } : {}),
    ...(str('ca-file') ? { caFile: resolve(str('ca-file') as string) } : {}),
  };
}

async function main(): Promise<void> {
  // `npm run sim -- fleet …`: lightweight devices without video (firmware-sim/fleet-cli.ts)
  if (process.argv[2] === 'fleet') {
    const { fleetMain } = await import('./fleet-cli.js');
    process.exit(await fleetMain(process.argv.slice(3)));
  }
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        serial: { type: 'string', default: 'SIM00000001' },
        cameras: { type: 'string' },
        width: { type: 'string' },
        height: { type: 'string' },
        fps: { type: 'string' },
        gop: { type: 'string' },
        'motion-every': { type: 'string' },
        codec: { type: 'string' },
        audio: { type: 'string' },
        port: { type: 'string' },
        'events-port': { type: 'string' },
        agent: { type: 'boolean' },
        cloud: { type: 'string' },
        email: { type: 'string' },
        password: { type: 'string' },
        plan: { type: 'string' },
        'bind-code': { type: 'string', multiple: true },
        'segment-seconds': { type: 'string' },
        'data-dir': { type: 'string' },
        fresh: { type: 'boolean' },
        quota: { type: 'string' },
        'ca-file': { type: 'string' },
        fault: { type: 'string', multiple: true },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (err) {
    console.error(`sim: ${(err as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  if (values.help) {
    console.log(USAGE);
    return;
  }

  let settings;
  try {
    const serial = values.serial ?? 'SIM00000001';
    if (!SERIAL_RE.test(serial)) throw new UsageError(`--serial must be 8-32 characters A-Z 0-9, got ${JSON.stringify(serial)}`);
    const cameras = intOption('cameras', values.cameras, 1, 1, 16);
    const port = intOption('port', values.port, 0, 0, 65_535);
    const eventsPort = intOption('events-port', values['events-port'], 0, 0, 65_535);
    if (cameras > 1 && (port !== 0 || eventsPort !== 0)) throw new UsageError('--port and --events-port work with one camera only');
    const serials = Array.from({ length: cameras }, (_, i) => nthSerial(serial, i));
    const bad = serials.find((s) => !SERIAL_RE.test(s));
    if (bad) throw new UsageError(`serial ${bad}, derived for camera ${serials.indexOf(bad) + 1}, is not valid`);
    const faults: FaultSpec[] = (values.fault ?? []).map((t) => parseFaultSpec(t));
    for (const f of faults) if (f.camera !== undefined && f.camera > cameras) throw new UsageError(`--fault ${f.text}: there is no camera ${f.camera} (cameras 1 to ${cameras})`);
    const agentOptionGiven = ['cloud', 'email', 'password', 'plan', 'bind-code', 'segment-seconds', 'data-dir', 'fresh', 'quota', 'ca-file'].find((k) => values[k as keyof typeof values] !== undefined);
    if (!values.agent && agentOptionGiven) throw new UsageError(`--${agentOptionGiven} works with --agent only`);
    settings = {
      serials,
      width: intOption('width', values.width, 640, 16, 3840),
      height: intOption('height', values.height, 360, 16, 2160),
      fps: intOption('fps', values.fps, 15, 1, 60),
      gopSeconds: intOption('gop', values.gop, 2, 1, 20),
      motionEverySec: intOption('motion-every', values['motion-every'], 20, 0, 86_400),
      videoCodec: choice('codec', values.codec, CODECS, 'h264'),
      audio: choice('audio', values.audio, AUDIOS, 'none'),
      port,
      eventsPort,
      faults,
      agents: values.agent ? agentSettings(values, cameras) : undefined,
    };
  } catch (err) {
    if (err instanceof UsageError || err instanceof FaultSyntaxError) {
      console.error(`sim: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
  await run(settings);
}

/**
 * skew and full-disk from the start (no @WHEN) go into each agent's first
 * config rather than restarting it at once; marked applied, they still run
 * to restore the agent after their FOR.
 */
function initialChange(faults: FaultSpec[], index: number): { clockSkewMs?: number; storageMaxBytes?: number } {
  const out: { clockSkewMs?: number; storageMaxBytes?: number } = {};
  for (const f of faults) {
    if (f.atMs !== 0 || f.everyMs !== undefined || (f.camera !== undefined && f.camera !== index)) continue;
    if (f.name === 'skew') out.clockSkewMs = Number(f.value);
    if (f.name === 'full-disk') out.storageMaxBytes = Number(f.value);
  }
  return out;
}

type Settings = {
  serials: string[];
  width: number;
  height: number;
  fps: number;
  gopSeconds: number;
  motionEverySec: number;
  videoCodec: SimVideoCodec;
  audio: SimAudio;
  port: number;
  eventsPort: number;
  faults: FaultSpec[];
  agents: AgentSettings | undefined;
};

async function run(s: Settings): Promise<void> {
  const t0 = Date.now();
  const width = Math.max(...s.serials.map((x) => x.length));
  /** one line per event: time since start, the camera (or blanks), what happened */
  const say = (serial: string | undefined, text: string): void => {
    console.log(`+${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s ${(serial ?? '').padEnd(width)} ${text}`);
  };
  // the cameras' own log (JSON) only for errors: the lines below say what happens
  const logger = createLogger({ name: 'firmware-sim', level: process.env.CAMVAULT_LOG_LEVEL ?? 'error' });
  const units: SimUnit[] = [];
  const faultsDone = new AbortController();
  const scheduler = new FaultScheduler(
    (f) => injectFault(f, units, say, faultsDone.signal),
    (f, why) => say(undefined, `fault ${f.text} skipped: ${why}`),
  );
  let session: AccountSession | undefined;
  let stopping = false;
  const stopAll = async (code: number): Promise<void> => {
    if (stopping) return;
    stopping = true;
    scheduler.stop();
    faultsDone.abort();
    const agents = units.flatMap((u) => (u.agent ? [u.agent] : []));
    if (agents.length > 0) say(undefined, `stopping ${agents.length} agent${agents.length === 1 ? '' : 's'} (each closes its segment and journal)…`);
    await Promise.allSettled(agents.map((a) => a.stop()));
    await session?.logout();
    await Promise.allSettled(units.map((u) => u.camera.stop()));
    say(undefined, 'stopped: no agent, ffmpeg or camera left running');
    process.exit(code);
  };
  let firstSignalAt = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (stopping) {
      // npm and tsx pass on the terminal's Ctrl-C too: only a later one is someone pressing again
      if (Date.now() - firstSignalAt > 2000) say(undefined, `${sig} again: still stopping (agents get 20 s each to close cleanly, then SIGKILL)`);
      return;
    }
    firstSignalAt = Date.now();
    say(undefined, `${sig}: stopping everything`);
    void stopAll(0);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    for (const [i, serial] of s.serials.entries()) {
      const cam = await SimCamera.start({
        serial,
        width: s.width,
        height: s.height,
        fps: s.fps,
        gopSeconds: s.gopSeconds,
        motionEverySec: s.motionEverySec,
        videoCodec: s.videoCodec,
        audio: s.audio,
        logger,
        port: s.port,
        eventsPort: s.eventsPort,
      });
      units.push({ index: i + 1, camera: cam });
      cam.on('motion', (e: { at: string }) => {
        if (!stopping) say(serial, `motion at ${e.at}`);
      });
      say(serial, `camera streaming on ${cam.streamUrl}, events on ${cam.eventsUrl} (${s.videoCodec}, audio ${s.audio})`);
      if (stopping) return;
    }
    if (s.agents) await startAgents(s.agents, units, s.faults, say, (x) => (session = x), () => stopping);
  } catch (err) {
    say(undefined, `sim: ${(err as Error).message}`);
    await stopAll(1);
    return;
  }
  if (stopping) return;
  for (const f of s.faults) scheduler.add(s.agents && (f.name === 'skew' || f.name === 'full-disk') && f.atMs === 0 && f.everyMs === undefined ? { ...f, applied: true } : f);
  if (s.faults.length > 0) say(undefined, `${s.faults.length} fault${s.faults.length === 1 ? '' : 's'} scheduled`);
  say(undefined, 'Ctrl-C stops everything; commands on stdin (help)');
  readCommands(units, scheduler, say, () => void stopAll(0));
}

async function startAgents(
  a: AgentSettings,
  units: SimUnit[],
  faults: FaultSpec[],
  say: (serial: string | undefined, text: string) => void,
  keepSession: (s: AccountSession) => void,
  stopping: () => boolean,
): Promise<void> {
  let codes: (string | undefined)[] = units.map(() => undefined);
  if (a.claim.kind === 'codes') codes = a.claim.codes;
  if (a.claim.kind === 'account') {
    const session = await AccountSession.login(a.cloudUrl, a.claim.email, a.claim.password);
    keepSession(session);
    if (a.claim.plan) {
      await session.choosePlan(a.claim.plan);
      say(undefined, `account on plan ${a.claim.plan}`);
    }
    codes = [];
    for (let i = 0; i < units.length; i++) codes.push(await session.bindCode());
    say(undefined, `logged in; ${codes.length} bind code${codes.length === 1 ? '' : 's'} made (one per camera)`);
  }
  await Promise.all(
    units.map(async (u, i) => {
      const serial = u.camera.serial;
      const dataDir = join(a.dataDir, serial);
      if (a.fresh) rmSync(dataDir, { recursive: true, force: true });
      const first = initialChange(faults, u.index);
      const agent = await SimAgent.start({
        serial,
        camera: u.camera,
        cloudUrl: a.cloudUrl,
        dataDir,
        segmentSeconds: a.segmentSeconds,
        ...(codes[i] ? { bindCode: codes[i] } : {}),
        ...(a.quotaBytes !== undefined ? { storageMaxBytes: a.quotaBytes } : {}),
        ...(a.caFile ? { caFile: a.caFile } : {}),
        ...first,
      });
      u.agent = agent;
      agent.on('log', (line) => {
        const d = describeAgentLog(line);
        if (d) say(serial, d);
      });
      agent.on('exit', (e: { code: number | null; signal: string | null; expected: boolean }) => {
        if (!e.expected && !stopping()) say(serial, `the agent exited on its own (code ${e.code}, signal ${e.signal}); see ${agent.logFile}`);
      });
      say(serial, `agent pid ${agent.pid ?? '?'} in ${dataDir}${agent.proxy ? `, talking to the cloud through ${agent.proxy.url}` : ' (no fault proxy: an https cloud)'}`);
    }),
  );
}

/** stdin, a command a line (schedule.ts parseCommand). */
function readCommands(units: SimUnit[], scheduler: FaultScheduler, say: (serial: string | undefined, text: string) => void, stop: () => void): void {
  if (process.stdin.destroyed) return;
  const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
  rl.on('line', (line) => {
    let cmd;
    try {
      cmd = parseCommand(line);
    } catch (err) {
      say(undefined, (err as Error).message);
      return;
    }
    if (cmd.kind === 'empty') return;
    if (cmd.kind === 'help') {
      console.log(faultHelp());
      return;
    }
    if (cmd.kind === 'stop') {
      stop();
      return;
    }
    if (cmd.kind === 'status') {
      for (const u of units) void printStatus(u, say);
      return;
    }
    if (cmd.fault.camera !== undefined && cmd.fault.camera > units.length) {
      say(undefined, `there is no camera ${cmd.fault.camera} (cameras 1 to ${units.length})`);
      return;
    }
    scheduler.add(cmd.fault);
  });
  // stdin closed (a pipe that ended, </dev/null): keep running until a signal
  rl.on('close', () => undefined);
}

async function printStatus(u: SimUnit, say: (serial: string | undefined, text: string) => void): Promise<void> {
  const serial = u.camera.serial;
  if (!u.agent) {
    say(serial, `camera ${u.camera.stalled ? 'STALLED' : 'streaming'}, ${u.camera.viewerCount} viewer(s)`);
    return;
  }
  try {
    const st = await u.agent.status();
    say(
      serial,
      `agent ${u.agent.pid ? `pid ${u.agent.pid}` : 'not running'}; queue ${st.queue.depth}, uploaded ${st.counts.uploaded}, failed ${st.counts.failed}, lost ${st.lost.clips} (${formatBytes(st.lost.bytes)}); ` +
        `ffmpeg crashes ${st.recording.ffmpegCrashes}, stalls ${st.recording.stalls}; clock ${st.clock?.state ?? 'not refused'}; last error ${st.lastError?.code ?? 'none'}` +
        `${u.agent.proxy ? `; network ${u.agent.proxy.mode}` : ''}`,
    );
  } catch (err) {
    say(serial, `status: ${(err as Error).message}`);
  }
}

void main();
