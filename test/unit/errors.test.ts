import { describe, expect, it } from 'vitest';
import { ZodError, z } from 'zod';
import { CamvaultError, errorCatalogue, isErrorCode } from '../../shared/errors.js';
import { toCamvaultError } from '../../cloud/http/error-handler.js';

describe('the error catalogue', () => {
  it('gives every code a 4xx or 5xx status and a message', () => {
    for (const [code, entry] of Object.entries(errorCatalogue)) {
      expect(code).toMatch(/^[A-Z][A-Z0-9_]+$/);
      expect(entry.status, code).toBeGreaterThanOrEqual(400);
      expect(entry.status, code).toBeLessThan(600);
      expect(entry.message.length, code).toBeGreaterThan(3);
      expect(isErrorCode(code)).toBe(true);
    }
    expect(isErrorCode('toString')).toBe(false);
    expect(isErrorCode('NOT_A_CODE')).toBe(false);
  });

  it('a CamvaultError carries its code\'s status, and its body holds no stack', () => {
    const err = new CamvaultError('CLIP_NOT_FOUND');
    expect(err.status).toBe(404);
    expect(err.toBody()).toEqual({ error: { code: 'CLIP_NOT_FOUND', message: 'no such clip' } });
  });

  it('maps foreign errors into the catalogue without leaking their message', () => {
    const internal = toCamvaultError(new Error('SQLITE_BUSY at /srv/secret/path.db'));
    expect(internal.code).toBe('INTERNAL');
    expect(internal.message).toBe('internal error');
    expect(toCamvaultError(Object.assign(new Error('x'), { code: 'FST_ERR_CTP_BODY_TOO_LARGE', statusCode: 413 })).code).toBe(
      'BODY_TOO_LARGE',
    );
    expect(toCamvaultError(Object.assign(new Error('x'), { statusCode: 405 })).code).toBe('METHOD_NOT_ALLOWED');
    expect(toCamvaultError(Object.assign(new Error('x'), { statusCode: 418 })).code).toBe('BAD_REQUEST');
    const zod = z.object({ a: z.number() }).safeParse({ a: 'secret' });
    const mapped = toCamvaultError((zod as { error: ZodError }).error);
    expect(mapped.code).toBe('VALIDATION_FAILED');
    expect(JSON.stringify(mapped.toBody())).not.toContain('secret');
  });
});
