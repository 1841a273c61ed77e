import { spawn } from 'node:child_process';
import { join } from 'node:path';

const TSX = join(process.cwd(), 'node_modules', '.bin', 'tsx');

export interface CloudRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `npm run cloud`'s command (tsx cloud/server.ts) as a child process with
 * only PATH, HOME and `env`; resolves with the exit code and output. `onStdout`
 * sees the output so far and may signal the child; it is SIGKILLed after 20 s.
 */
export function runCloud(
  args: string[],
  env: Record<string, string>,
  onStdout?: (text: string, kill: (s: NodeJS.Signals) => void) => void,
): Promise<CloudRun> {
  return new Promise((resolve) => {
    const child = spawn(TSX, ['cloud/server.ts', ...args], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      onStdout?.(stdout, (s) => child.kill(s));
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
