/**
 * Assertions every API test makes on an error answer: a code from the one
 * catalogue, with that code's status, and nothing of a stack trace.
 */
import { expect } from 'vitest';
import { errorCatalogue, isErrorCode } from '../../shared/errors.js';
import { api, type ApiOptions, type ApiResponse } from './cloud.js';

export function expectCatalogueError(res: ApiResponse, code?: string): void {
  const raw = JSON.stringify(res.body);
  expect(raw).not.toMatch(/\bat .+\.(ts|js):\d+|"stack"/);
  const got = res.body?.error?.code;
  expect(isErrorCode(got), `code ${String(got)} is in the catalogue`).toBe(true);
  expect(res.status).toBe(errorCatalogue[got as keyof typeof errorCatalogue].status);
  expect(typeof res.body.error.message).toBe('string');
  if (code !== undefined) expect(got).toBe(code);
}

/** api() that checks every 4xx/5xx answer against the catalogue */
export async function call(base: string, method: string, path: string, opts: ApiOptions = {}): Promise<ApiResponse> {
  const res = await api(base, method, path, opts);
  if (res.status >= 400) expectCatalogueError(res);
  return res;
}

/** the call must fail with this code (and its catalogue status) */
export async function expectError(code: string, base: string, method: string, path: string, opts: ApiOptions = {}): Promise<ApiResponse> {
  const res = await api(base, method, path, opts);
  expect(res.status, `${method} ${path}: ${JSON.stringify(res.body)}`).toBeGreaterThanOrEqual(400);
  expectCatalogueError(res, code);
  return res;
}
