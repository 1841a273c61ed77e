/**
 * `npm run bench -- [name …]`: runs bench/<name>.ts, or every benchmark in
 * bench/, each as a child process (each stays a plain script that runs on its
 * own). Each prints one JSON line per figure (bench/_figures.ts); those lines
 * are echoed as they come and collected, and after the last benchmark one
 * table of every figure follows (bench/_table.ts): bench, figure, value,
 * unit, baseline, ratio, target, pass/fail.
 *
 * Exit code 1 when any figure missed its target or any benchmark exited
 * non-zero; 2 for an unknown benchmark name (with the list of known ones).
 */
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { benchExitCode, formatBenchTable, parseFigureLine, tableRows, type BenchRun, type FigureLine } from './_table.js';

const here = dirname(fileURLToPath(import.meta.url));
const all = readdirSync(here)
  .filter((f) => f.endsWith('.ts') && f !== 'run.ts' && !f.startsWith('_'))
  .map((f) => f.replace(/\.ts$/, ''))
  .sort();
const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const names = wanted.length ? wanted : all;

/** one benchmark as a child: stdout echoed line by line and its figures kept; stderr passed through */
function runOne(name: string): Promise<BenchRun> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(here, `${name}.ts`)], { stdio: ['inherit', 'pipe', 'inherit'] });
    const figures: FigureLine[] = [];
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      console.log(line);
      const f = parseFigureLine(line);
      if (f) figures.push(f);
    });
    let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let drained = false;
    const done = (): void => {
      if (exited && drained) resolve({ name, figures, exitCode: exited.code, signal: exited.signal });
    };
    lines.on('close', () => {
      drained = true;
      done();
    });
    child.on('error', (err) => {
      console.error(`bench ${name}: ${err.message}`);
      exited = { code: 1, signal: null };
      drained = true;
      done();
    });
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      done();
    });
  });
}

async function main(): Promise<void> {
  if (names.length === 0) {
    console.log('no benchmarks in bench/ yet');
    process.exit(0);
  }
  const unknown = names.filter((n) => !all.includes(n));
  if (unknown.length > 0) {
    console.error(`unknown benchmark "${unknown[0]}"; known: ${all.join(', ') || 'none'}`);
    process.exit(2);
  }
  const runs: BenchRun[] = [];
  for (const name of names) runs.push(await runOne(name));
  console.log(`\n${formatBenchTable(tableRows(runs))}`);
  process.exit(benchExitCode(runs));
}

void main();
