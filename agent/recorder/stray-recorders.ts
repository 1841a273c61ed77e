import { readdir, readFile } from 'node:fs/promises';
import { basename, sep } from 'node:path';

/**
 * Recorder ffmpegs an earlier agent process left running: an agent killed
 * without a chance to stop its child (the OOM killer, SIGKILL) leaves an
 * ffmpeg that goes on writing its segments, which start-up reconciliation
 * would take for partial files and cut, and which a new recorder would
 * record alongside. They are found by their argv in /proc (Linux; elsewhere
 * none are found): an ffmpeg whose -segment_list lies in our folder.
 */
export async function findStrayRecorders(dir: string): Promise<number[]> {
  let entries: string[];
  try {
    entries = await readdir('/proc');
  } catch {
    return [];
  }
  const prefix = dir.endsWith(sep) ? dir : dir + sep;
  const pids: number[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    let argv: string[];
    try {
      argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).split('\0');
    } catch {
      continue;
    }
    const at = argv.indexOf('-segment_list');
    const list = at >= 0 ? argv[at + 1] : undefined;
    if (list?.startsWith(prefix) && /ffmpeg/i.test(basename(argv[0] ?? ''))) pids.push(pid);
  }
  return pids;
}

/** SIGKILLs them and waits (up to waitMs) until they are gone; returns their pids. */
export async function killStrayRecorders(dir: string, waitMs = 3000): Promise<number[]> {
  const pids = await findStrayRecorders(dir);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  const until = Date.now() + waitMs;
  while (pids.some(alive) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  return pids;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
