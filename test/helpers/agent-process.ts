/**
 * The agent as a device runs it: `node --import tsx agent/main.ts run --config
 * FILE` in its own process, with its ffmpeg as its child. Plus what a test
 * needs around it: a power cut (SIGKILL to the agent and everything it
 * started, at once), and read-only looks at what it left on disk (the
 * journal, the segment lists, the segment files).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';

/** the repository root: agent/main.ts is resolved from here */
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface AgentProcess {
  child: ChildProcess;
  pid: number;
  /** resolves with the exit code (null after a signal) and the signal */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** stdout and stderr, JSON log lines, appended to this file */
  logFile: string;
}

/** Writes the agent's config file; returns its path. */
export function writeAgentConfig(file: string, config: Record<string, unknown>): string {
  writeFileSync(file, JSON.stringify(config, null, 2));
  return file;
}

/**
 * Starts `agent/main.ts <command>` with node and tsx. The agent leads its own
 * process group (detached), so a power cut can take it and its ffmpeg in one
 * kill(2), as losing power does.
 */
export function spawnAgent(args: string[], logFile: string, env: NodeJS.ProcessEnv = process.env): AgentProcess {
  const fd = openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'agent', 'main.ts'), ...args], {
      cwd: ROOT,
      env,
      detached: true,
      stdio: ['ignore', fd, fd],
    });
  } finally {
    closeSync(fd);
  }
  if (child.pid === undefined) throw new Error('the agent process could not be started');
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  return { child, pid: child.pid, exited, logFile };
}

/** `agent status --json` through the CLI, as an operator runs it. */
export function agentStatusCli(configFile: string): Record<string, unknown> {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'agent', 'main.ts'), 'status', '--config', configFile, '--json'], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 30_000,
  });
  if (r.status !== 0) throw new Error(`agent status exited ${r.status}: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

/**
 * The process tree and the power cut live with the simulator's faults
 * (firmware-sim/faults/power-cut.ts), so `npm run sim` and the tests cut the
 * power the same way.
 */
export { descendants, powerCut, processName, processRunning, waitGone, type PowerCut } from '../../firmware-sim/faults/power-cut.js';

export interface JournalClip {
  id: string;
  path: string;
  size: number;
  sha256: string;
  state: string;
  lastErrorCode: string | null;
  attempts: number;
}

/**
 * The journal's clips, read-only (the agent may be running, or dead with its
 * WAL not checkpointed: both are readable). [] when there is no journal yet.
 */
export function readJournalClips(dataDir: string): JournalClip[] {
  const file = join(dataDir, 'agent.db');
  if (!existsSync(file)) return [];
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    db.pragma('busy_timeout = 2000');
    const hasClips = db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'clips'`).get();
    if (!hasClips) return [];
    const rows = db
      .prepare(`SELECT id, path, size, sha256, state, last_error_code AS lastErrorCode, attempts FROM clips ORDER BY start_ms, id`)
      .all() as JournalClip[];
    return rows;
  } finally {
    db.close();
  }
}

export interface ListedSegment {
  /** the segment file's name */
  name: string;
  /** the segment list (one per ffmpeg run) that names it */
  list: string;
}

/**
 * Every segment ffmpeg listed as closed, from every run's segment list in
 * `dir`. Only complete lines count: a line being written when the power went
 * does not close a segment.
 */
export function listedSegments(dir: string): ListedSegment[] {
  if (!existsSync(dir)) return [];
  const out: ListedSegment[] = [];
  for (const list of readdirSync(dir).filter((n) => n.endsWith('.csv')).sort()) {
    let text: string;
    try {
      text = readFileSync(join(dir, list), 'utf8');
    } catch {
      continue;
    }
    const lines = text.split('\n');
    lines.pop();
    for (const line of lines) {
      // ffmpeg's csv list: filename,start,end (our names never need quoting)
      const name = line.split(',')[0]?.trim();
      if (name) out.push({ name: name.replace(/^.*\//, ''), list });
    }
  }
  return out;
}

/** The .mp4 files in a segments folder. */
export function segmentFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((n) => n.endsWith('.mp4'))
    .sort();
}

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
