/**
 * The one output format of every benchmark (DESIGN.md, "Benchmarks"): one JSON
 * line per figure, `{"bench","figure","value","unit","target","pass",…}`.
 */
export interface Figure {
  figure: string;
  value: number;
  unit: string;
  target: number | null;
  pass: boolean | null;
  [extra: string]: unknown;
}

export function figurePrinter(bench: string): (f: Figure) => void {
  return (f) => console.log(JSON.stringify({ bench, ...f }));
}

export const round = (v: number, digits: number): number => Number(v.toFixed(digits));
