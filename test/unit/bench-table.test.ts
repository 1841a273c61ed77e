import { describe, expect, it } from 'vitest';
import { benchExitCode, formatBenchTable, formatNumber, parseFigureLine, tableRows, type BenchRun } from '../../bench/_table.js';

const line = (o: Record<string, unknown>): string => JSON.stringify(o);

function run(name: string, lines: string[], exitCode: number | null = 0): BenchRun {
  return { name, exitCode, figures: lines.map(parseFigureLine).filter((f) => f !== null) };
}

describe('bench table (bench/_table.ts)', () => {
  it('reads a figure line as DESIGN gives it, and nothing else', () => {
    const f = parseFigureLine(line({ bench: 'upload', figure: 'throughput_ratio_vs_curl', value: 0.94, unit: 'ratio', target: 0.9, pass: true, driver: 'local' }));
    expect(f).toEqual({ bench: 'upload', figure: 'throughput_ratio_vs_curl', value: 0.94, unit: 'ratio', target: 0.9, pass: true });
    expect(parseFigureLine('presign bench: 3 requests failed')).toBeNull();
    expect(parseFigureLine('{"level":30,"msg":"listening"}')).toBeNull();
    expect(parseFigureLine('{"bench":"x","figure":"y","value":"12"}')).toBeNull();
    expect(parseFigureLine('{not json}')).toBeNull();
    expect(parseFigureLine(line({ bench: 'a', figure: 'b', value: 3, unit: 'ms', target: null, pass: null, baseline: 2, baseline_unit: 'ms', baseline_figure: 'c', range: [0.8, 1.25] }))).toMatchObject({
      baseline: 2,
      baseline_unit: 'ms',
      baseline_figure: 'c',
      range: [0.8, 1.25],
    });
  });

  it("a ratio figure shows its baseline's value and unit from the figure it names, and itself as the ratio", () => {
    const rows = tableRows([
      run('upload', [
        line({ bench: 'upload', figure: 'upload_mb_s_curl', value: 105.26, unit: 'MB/s', target: null, pass: null }),
        line({ bench: 'upload', figure: 'throughput_ratio_vs_curl', value: 0.94, unit: 'ratio', target: 0.9, pass: true, baseline_figure: 'upload_mb_s_curl' }),
      ]),
    ]);
    expect(rows[0]).toEqual({ bench: 'upload', figure: 'upload_mb_s_curl', value: '105.3', unit: 'MB/s', baseline: '-', ratio: '-', target: '-', result: '-' });
    expect(rows[1]).toEqual({ bench: 'upload', figure: 'throughput_ratio_vs_curl', value: '0.94', unit: 'ratio', baseline: '105.3 MB/s', ratio: '0.94', target: '0.9', result: 'pass' });
  });

  it('an absolute figure with a baseline gets value / baseline as its ratio; a baseline in the line wins', () => {
    const rows = tableRows([
      run('x', [
        line({ bench: 'x', figure: 'a_ms', value: 30, unit: 'ms', target: 50, pass: true, baseline: 20 }),
        line({ bench: 'x', figure: 'b_ms', value: 12, unit: 'ms', target: null, pass: null }),
        line({ bench: 'x', figure: 'c_ms', value: 6, unit: 'ms', target: null, pass: null, baseline_figure: 'b_ms' }),
        line({ bench: 'x', figure: 'd', value: 6, unit: 'req/s', target: null, pass: null, baseline: 0 }),
      ]),
    ]);
    expect(rows.map((r) => [r.figure, r.baseline, r.ratio])).toEqual([
      ['a_ms', '20 ms', '1.5'],
      ['b_ms', '-', '-'],
      ['c_ms', '12 ms', '0.5'],
      // a zero baseline has no ratio
      ['d', '0 req/s', '-'],
    ]);
  });

  it('a range is shown as the target; a failed figure reads FAIL', () => {
    const [row] = tableRows([
      run('accounts', [line({ bench: 'accounts', figure: 'login_time_ratio', value: 1.4, unit: 'ratio', target: 1.25, pass: false, range: [0.8, 1.25] })]),
    ]);
    expect(row).toMatchObject({ target: '0.8–1.25', result: 'FAIL', ratio: '1.4' });
  });

  it('a benchmark that exits non-zero (or is killed) shows as a failed row, after whatever it printed', () => {
    const rows = tableRows([
      run('fleet', [line({ bench: 'fleet', figure: 'fleet_errors', value: 0, unit: 'count', target: 0, pass: true })], 1),
      { name: 'api', figures: [], exitCode: null, signal: 'SIGKILL' },
    ]);
    expect(rows.map((r) => [r.bench, r.figure, r.result])).toEqual([
      ['fleet', 'fleet_errors', 'pass'],
      ['fleet', '(exited with code 1)', 'FAIL'],
      ['api', '(killed by SIGKILL)', 'FAIL'],
    ]);
  });

  it('the run fails when any figure fails or any benchmark exits non-zero, and only then', () => {
    const ok = run('a', [line({ bench: 'a', figure: 'f', value: 1, unit: 'x', target: 1, pass: true }), line({ bench: 'a', figure: 'g', value: 1, unit: 'x', target: null, pass: null })]);
    expect(benchExitCode([ok])).toBe(0);
    expect(benchExitCode([ok, run('b', [line({ bench: 'b', figure: 'f', value: 2, unit: 'x', target: 1, pass: false })])])).toBe(1);
    expect(benchExitCode([ok, run('c', [], 1)])).toBe(1);
    expect(benchExitCode([])).toBe(0);
  });

  it('prints one aligned table: a header, a rule, one line per figure, text left and numbers right', () => {
    const text = formatBenchTable(
      tableRows([
        run('presign', [
          line({ bench: 'presign', figure: 'presign_per_s_bare_route', value: 9000, unit: 'req/s', target: null, pass: null }),
          line({ bench: 'presign', figure: 'endpoint_ratio_vs_bare_route', value: 0.61, unit: 'ratio', target: 0.5, pass: true, baseline_figure: 'presign_per_s_bare_route' }),
        ]),
      ]),
    );
    const lines = text.split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/^bench\s+figure\s+value\s+unit\s+baseline\s+ratio\s+target\s+result$/);
    expect(lines[1]).toMatch(/^-+$/);
    expect(lines[3]).toMatch(/^presign\s+endpoint_ratio_vs_bare_route\s+0\.61\s+ratio\s+9000 req\/s\s+0\.61\s+0\.5\s+pass$/);
    // the value column ends at the same place on every line
    const valueEnd = (l: string): number => l.indexOf(l.includes('0.61') ? '0.61' : '9000') + 4;
    expect(valueEnd(lines[2] as string)).toBe(valueEnd(lines[3] as string));
  });

  it('numbers keep about four significant digits', () => {
    expect(formatNumber(1234.5678)).toBe('1234.6');
    expect(formatNumber(12.3456)).toBe('12.35');
    expect(formatNumber(0.12345)).toBe('0.123');
    expect(formatNumber(42)).toBe('42');
  });
});
