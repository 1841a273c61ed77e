/**
 * The one table `npm run bench` prints after every benchmark ran: bench,
 * figure, value, unit, baseline, ratio, target, pass/fail. Pure: bench/run.ts
 * feeds it each benchmark's output and exit code.
 *
 * The baseline convention (bench/_figures.ts): a figure measured against a
 * baseline in the same run names it in its JSON line, with
 *   - `baseline_figure`: the name of the baseline's own figure in the same
 *     benchmark (e.g. throughput_ratio_vs_curl → "upload_mb_s_curl"), whose
 *     value and unit the table then shows, and/or
 *   - `baseline` (a number) and `baseline_unit`: the baseline's value, when the
 *     benchmark prints no figure of its own for it (or to override that one).
 * The ratio column is the figure itself when its unit is "ratio" (it already
 * is value / baseline), else value / baseline when there is a baseline, else "-".
 * A figure with `range: [low, high]` shows the range as its target.
 */
/** one JSON line of a benchmark, as DESIGN.md gives it */
export interface FigureLine {
  bench: string;
  figure: string;
  value: number;
  unit: string;
  target: number | null;
  pass: boolean | null;
  baseline?: number;
  baseline_unit?: string;
  baseline_figure?: string;
  range?: [number, number];
}

/**
 * The figure a line of output holds, or null for any other line (a log, a
 * message). A line must be one JSON object with at least bench, figure and a
 * numeric value to count.
 */
export function parseFigureLine(line: string): FigureLine | null {
  const t = line.trim();
  if (!t.startsWith('{') || !t.endsWith('}')) return null;
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(t) as Record<string, unknown>;
  } catch {
    return null;
  }
  if (typeof o.bench !== 'string' || typeof o.figure !== 'string' || typeof o.value !== 'number') return null;
  const f: FigureLine = {
    bench: o.bench,
    figure: o.figure,
    value: o.value,
    unit: typeof o.unit === 'string' ? o.unit : '',
    target: typeof o.target === 'number' ? o.target : null,
    pass: typeof o.pass === 'boolean' ? o.pass : null,
  };
  if (typeof o.baseline === 'number') f.baseline = o.baseline;
  if (typeof o.baseline_unit === 'string') f.baseline_unit = o.baseline_unit;
  if (typeof o.baseline_figure === 'string') f.baseline_figure = o.baseline_figure;
  if (Array.isArray(o.range) && o.range.length === 2 && o.range.every((x) => typeof x === 'number')) f.range = o.range as [number, number];
  return f;
}

/** what one benchmark left: its figures, and how its process ended */
export interface BenchRun {
  name: string;
  figures: FigureLine[];
  /** the exit code; null when a signal ended it */
  exitCode: number | null;
  signal?: string | null;
}

export interface TableRow {
  bench: string;
  figure: string;
  value: string;
  unit: string;
  baseline: string;
  ratio: string;
  target: string;
  result: 'pass' | 'FAIL' | '-';
}

/** up to 4 significant digits, without exponent noise for the sizes benchmarks print */
export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v)) return String(v);
  const abs = Math.abs(v);
  const digits = abs >= 100 ? 1 : abs >= 1 ? 2 : 3;
  return String(Number(v.toFixed(digits)));
}

function baselineOf(f: FigureLine, siblings: readonly FigureLine[]): { value: number; unit: string } | null {
  const named = f.baseline_figure ? siblings.find((s) => s.figure === f.baseline_figure) : undefined;
  if (f.baseline !== undefined) return { value: f.baseline, unit: f.baseline_unit ?? named?.unit ?? (f.unit === 'ratio' ? '' : f.unit) };
  if (named) return { value: named.value, unit: named.unit };
  return null;
}

export function tableRows(runs: readonly BenchRun[]): TableRow[] {
  const rows: TableRow[] = [];
  for (const run of runs) {
    for (const f of run.figures) {
      const base = baselineOf(f, run.figures);
      let ratio = '-';
      if (f.unit === 'ratio') ratio = formatNumber(f.value);
      else if (base && base.value !== 0) ratio = formatNumber(f.value / base.value);
      rows.push({
        bench: f.bench,
        figure: f.figure,
        value: formatNumber(f.value),
        unit: f.unit,
        baseline: base ? `${formatNumber(base.value)}${base.unit ? ` ${base.unit}` : ''}` : '-',
        ratio,
        target: f.range ? `${formatNumber(f.range[0])}–${formatNumber(f.range[1])}` : f.target === null ? '-' : formatNumber(f.target),
        result: f.pass === null ? '-' : f.pass ? 'pass' : 'FAIL',
      });
    }
    if (run.exitCode !== 0) {
      const how = run.exitCode === null ? `killed by ${run.signal ?? 'a signal'}` : `exited with code ${run.exitCode}`;
      rows.push({ bench: run.name, figure: `(${how})`, value: '-', unit: '', baseline: '-', ratio: '-', target: '-', result: 'FAIL' });
    }
  }
  return rows;
}

/** text columns (bench, figure, unit, result) left-aligned, numbers right-aligned */
const LEFT = new Set([0, 1, 3, 7]);

/** The table, as plain aligned text with a header. */
export function formatBenchTable(rows: readonly TableRow[]): string {
  const cells = [
    ['bench', 'figure', 'value', 'unit', 'baseline', 'ratio', 'target', 'result'],
    ...rows.map((r) => [r.bench, r.figure, r.value, r.unit, r.baseline, r.ratio, r.target, r.result]),
  ];
  const widths = (cells[0] as string[]).map((_, i) => Math.max(...cells.map((row) => (row[i] as string).length)));
  const lines = cells.map((row) =>
    row
      .map((cell, i) => (LEFT.has(i) ? cell.padEnd(widths[i] as number) : cell.padStart(widths[i] as number)))
      .join('  ')
      .trimEnd(),
  );
  lines.splice(1, 0, '-'.repeat(Math.max(...lines.map((l) => l.length))));
  return lines.join('\n');
}

/** 1 when any figure failed or any benchmark exited non-zero, else 0 */
export function benchExitCode(runs: readonly BenchRun[]): 0 | 1 {
  return runs.some((r) => r.exitCode !== 0 || r.figures.some((f) => f.pass === false)) ? 1 : 0;
}
