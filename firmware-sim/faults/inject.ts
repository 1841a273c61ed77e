/**
 * Applies one fault (schedule.ts) to the simulator's cameras and agents, and
 * says what it does, a line per step. Each fault's own module does the work;
 * this only picks the targets and times the end of a lasting fault.
 */
import type { SimAgent } from '../agents.js';
import type { SimCamera } from '../camera.js';
import { stallFor } from './camera-stall.js';
import { formatDuration } from './durations.js';
import { crashSignal, describeFault, faultStatus, type FaultSpec } from './schedule.js';

export interface SimUnit {
  /** 1-based, as #CAMERA counts */
  index: number;
  camera: SimCamera;
  agent?: SimAgent;
}

/** serial undefined: a line about the simulator itself */
export type Say = (serial: string | undefined, text: string) => void;

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/** Runs one occurrence of `f` on its cameras; resolves when it is over (or `signal` aborts the wait). */
export async function injectFault(f: FaultSpec, units: readonly SimUnit[], say: Say, signal: AbortSignal): Promise<void> {
  const targets = f.camera === undefined ? units : units.filter((u) => u.index === f.camera);
  if (targets.length === 0) {
    say(undefined, `fault ${f.text}: there is no camera ${f.camera} (cameras 1 to ${units.length})`);
    return;
  }
  say(f.camera === undefined ? undefined : targets[0]?.camera.serial, `fault: ${describeFault(f)}`);
  await Promise.all(targets.map((u) => injectOne(f, u, say, signal).catch((err: unknown) => say(u.camera.serial, `fault ${f.name} failed: ${(err as Error).message}`))));
}

async function injectOne(f: FaultSpec, u: SimUnit, say: Say, signal: AbortSignal): Promise<void> {
  const serial = u.camera.serial;
  const agent = u.agent;
  const lasts = f.forMs ?? 0;
  switch (f.name) {
    case 'stall': {
      const resume = stallFor(u.camera, lasts);
      say(serial, `camera stalled: connected, sending nothing, for ${formatDuration(lasts)}`);
      await pause(lasts, signal);
      resume();
      say(serial, 'camera sends again');
      return;
    }
    case 'outage':
    case 'blackhole':
    case 'cloud-5xx':
    case 'slow': {
      const proxy = agent?.proxy;
      if (!proxy) {
        say(serial, `${f.name}: no fault proxy in front of this agent (no --agent, or an https:// cloud)`);
        return;
      }
      if (f.name === 'outage') proxy.setMode('refuse');
      else if (f.name === 'blackhole') proxy.setMode('blackhole');
      else if (f.name === 'cloud-5xx') proxy.setMode('http5xx', { status: faultStatus(f) });
      else proxy.setMode('slow', { latencyMs: Number(f.value) });
      const what = { outage: 'every connection to the cloud is refused', blackhole: 'connections to the cloud go unanswered', 'cloud-5xx': `the cloud answers HTTP ${f.value}`, slow: `each request takes ${formatDuration(Number(f.value))} more` }[f.name];
      say(serial, `network: ${what} for ${formatDuration(lasts)}`);
      await pause(lasts, signal);
      if (signal.aborted) return;
      proxy.setMode('forward');
      say(serial, 'network: back to normal');
      return;
    }
    case 'power-cut': {
      if (!agent) return say(serial, 'power-cut: no agent for this camera (run with --agent)');
      if (agent.pid === undefined) return say(serial, 'power-cut: the agent is not running right now');
      say(serial, `power cut: SIGKILL to agent pid ${agent.pid} and its ffmpeg; power back in ${formatDuration(lasts)}`);
      const cut = await agent.powerCut(lasts);
      if (!signal.aborted) say(serial, `power back: agent started again (pid ${agent.pid ?? '?'}; ${cut.killed.length} child processes had died with it)`);
      return;
    }
    case 'ffmpeg-crash': {
      if (!agent) return say(serial, 'ffmpeg-crash: no agent for this camera (run with --agent)');
      const pid = agent.crashFfmpeg(crashSignal(f));
      say(serial, pid === undefined ? 'ffmpeg-crash: no recording ffmpeg running right now' : `ffmpeg crash: ${crashSignal(f)} to the recording ffmpeg (pid ${pid})`);
      return;
    }
    case 'skew':
    case 'full-disk': {
      if (!agent) return say(serial, `${f.name}: no agent for this camera (run with --agent)`);
      const change = f.name === 'skew' ? { clockSkewMs: Number(f.value) } : { storageMaxBytes: Number(f.value) };
      if (!f.applied) {
        await agent.restart(change);
        say(serial, f.name === 'skew' ? `agent restarted with its clock ${formatDuration(Number(f.value))} off` : `agent restarted with a ring-buffer quota of ${f.value} bytes`);
      }
      if (f.forMs === undefined) return;
      await pause(lasts, signal);
      if (signal.aborted) return;
      await agent.restart(f.name === 'skew' ? { clockSkewMs: 0 } : { storageMaxBytes: null });
      say(serial, f.name === 'skew' ? 'agent restarted with the right time (as NTP would set it)' : 'agent restarted with its own quota again');
      return;
    }
  }
}
