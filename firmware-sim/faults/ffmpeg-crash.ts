/**
 * The ffmpeg-crash fault: a signal to the agent's recording ffmpeg only, as
 * when ffmpeg segfaults on a malformed packet or the OOM killer picks it. The
 * agent lives on; its recorder must salvage the segment ffmpeg left open,
 * journal it, and start ffmpeg again (agent/recorder/recorder.ts), and count
 * the crash (`agent status`, recording line).
 *
 * The recorder is told apart from any other ffmpeg the agent runs (an email
 * alert's snapshot) by its argv: it writes a `-segment_list`.
 */
import { basename } from 'node:path';
import { descendants, processArgv } from './power-cut.js';

export type CrashSignal = 'SIGKILL' | 'SIGSEGV' | 'SIGABRT' | 'SIGBUS';
export const CRASH_SIGNALS: readonly CrashSignal[] = ['SIGKILL', 'SIGSEGV', 'SIGABRT', 'SIGBUS'];

/** The recording ffmpeg(s) among an agent process's descendants. */
export function recorderFfmpegs(agentPid: number): number[] {
  return descendants(agentPid).filter((pid) => {
    const argv = processArgv(pid);
    return argv !== undefined && /ffmpeg/i.test(basename(argv[0] ?? '')) && argv.includes('-segment_list');
  });
}

/**
 * Sends `signal` to the agent's recording ffmpeg. Returns the pid it hit, or
 * undefined when none was running (between a crash and the restart, say).
 */
export function crashFfmpeg(agentPid: number, signal: CrashSignal = 'SIGKILL'): number | undefined {
  for (const pid of recorderFfmpegs(agentPid)) {
    try {
      process.kill(pid, signal);
      return pid;
    } catch {
      // gone in the meantime: try the next, if any
    }
  }
  return undefined;
}
