/**
 * The power-cut fault: SIGKILL to an agent process and everything it
 * started (its ffmpeg), at once, as losing power does. Nothing gets to run a
 * handler, flush or close a file. Linux: the process tree is read from /proc.
 *
 * Shared by the simulator (`--fault power-cut…`) and the tests
 * (test/helpers/agent-process.ts re-exports it).
 */
import { readdirSync, readFileSync } from 'node:fs';

/** The pids of a process's children, grandchildren and so on (Linux /proc). */
export function descendants(pid: number): number[] {
  const out: number[] = [];
  const walk = (p: number): void => {
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${p}/task`);
    } catch {
      return;
    }
    for (const t of tasks) {
      let text: string;
      try {
        text = readFileSync(`/proc/${p}/task/${t}/children`, 'utf8');
      } catch {
        continue;
      }
      for (const c of text.split(/\s+/).filter(Boolean).map(Number)) {
        if (!out.includes(c)) {
          out.push(c);
          walk(c);
        }
      }
    }
  };
  walk(pid);
  return out;
}

/** The command name of a process (its /proc comm), or undefined once it is gone. */
export function processName(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** A process's argv (its /proc cmdline), or undefined once it is gone. */
export function processArgv(pid: number): string[] | undefined {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    // each argument ends with a NUL, the last one too
    if (argv[argv.length - 1] === '') argv.pop();
    return argv;
  } catch {
    return undefined;
  }
}

/** Alive and not a zombie. */
export function processRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the state follows the parenthesised command name
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

export interface PowerCut {
  /** the agent's descendants when the power went (its ffmpeg among them, if one was running) */
  killed: { pid: number; name: string | undefined }[];
}

/**
 * SIGKILL to the agent's process group (the simulator and the tests start
 * agents detached, each leading its own group) and, in case something left
 * the group, to each of its descendants found just before.
 */
export function powerCut(agent: { pid: number }): PowerCut {
  const kids = descendants(agent.pid).map((pid) => ({ pid, name: processName(pid) }));
  try {
    process.kill(-agent.pid, 'SIGKILL');
  } catch {
    // not a group leader, or the group is gone already
  }
  for (const k of [{ pid: agent.pid }, ...kids]) {
    try {
      process.kill(k.pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  return { killed: kids };
}

/** Resolves once none of these pids runs any more (or rejects after timeoutMs). */
export async function waitGone(pids: number[], timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (pids.some(processRunning)) {
    if (Date.now() > until) throw new Error(`still running after ${timeoutMs} ms: ${pids.filter(processRunning).join(', ')}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
