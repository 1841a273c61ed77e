import { describe, expect, it } from 'vitest';
import { parseRetryAfter, errorCodeFromBody } from '../../../agent/cloud-client.js';
import { restartDelayMs, DEFAULT_RESTART_POLICY } from '../../../agent/recorder/recorder.js';
import { classifyFailure, DEFAULT_RETRY_POLICY, isNetworkFailure, retryDelayMs, type RetryPolicy } from '../../../agent/uploader/retry-policy.js';

const policy: RetryPolicy = { ...DEFAULT_RETRY_POLICY, minDelayMs: 1000, maxDelayMs: 30_000, factor: 2, jitter: 0 };

describe('upload retry delays', () => {
  it('double from the minimum and stop at the maximum', () => {
    expect([1, 2, 3, 4, 5, 6, 7].map((n) => retryDelayMs(policy, n))).toEqual([1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
  });

  it('are jittered downwards within the jitter fraction, never above the schedule', () => {
    const p = { ...policy, jitter: 0.5 };
    expect(retryDelayMs(p, 3, undefined, () => 0)).toBe(4000);
    expect(retryDelayMs(p, 3, undefined, () => 1)).toBe(2000);
    expect(retryDelayMs(p, 3, undefined, () => 0.5)).toBe(3000);
  });

  it('wait at least as long as Retry-After asks when the policy honours it', () => {
    expect(retryDelayMs(policy, 1, 7)).toBe(7000);
    // a shorter Retry-After never shortens the backoff
    expect(retryDelayMs(policy, 4, 1)).toBe(8000);
    expect(retryDelayMs({ ...policy, honourRetryAfter: false }, 1, 7)).toBe(1000);
  });

  it('cap an absurd Retry-After', () => {
    expect(retryDelayMs({ ...policy, maxRetryAfterMs: 600_000 }, 1, 86_400)).toBe(600_000);
  });
});

describe('what a failure leads to', () => {
  const c = (status: number, code: string) => classifyFailure(DEFAULT_RETRY_POLICY, { status, code });

  it('retries network trouble and the retryable statuses', () => {
    expect(c(0, 'NETWORK_ERROR')).toBe('retry');
    expect(c(0, 'TIMEOUT')).toBe('retry');
    for (const s of [408, 425, 429, 500, 502, 503, 504]) expect(c(s, `HTTP_${s}`)).toBe('retry');
    expect(c(409, 'UPLOAD_OBJECT_MISSING')).toBe('retry');
  });

  it('presigns again when the URL expired, and counts an existing clip as uploaded', () => {
    expect(c(403, 'URL_EXPIRED')).toBe('represign');
    expect(c(409, 'CLIP_ALREADY_UPLOADED')).toBe('done');
  });

  it('presigns again when the store lost a multipart upload (S3 NoSuchUpload, or the local driver\'s code)', () => {
    expect(c(404, 'NoSuchUpload')).toBe('represign');
    expect(c(404, 'MULTIPART_UPLOAD_NOT_FOUND')).toBe('represign');
  });

  it('parks the queue on refusals about the account or device', () => {
    expect(c(402, 'PLAN_REQUIRED')).toBe('park');
    expect(c(410, 'ACCOUNT_CANCELLED')).toBe('park');
    expect(c(401, 'DEVICE_UNAUTHENTICATED')).toBe('park');
    expect(c(403, 'STORAGE_CAP_REACHED')).toBe('park');
  });

  it('gives up on a clip the cloud refuses for good, and on a file that is gone', () => {
    expect(c(400, 'CLIP_START_OUT_OF_RANGE')).toBe('fail');
    expect(c(400, 'VALIDATION_FAILED')).toBe('fail');
    expect(c(404, 'HTTP_404')).toBe('fail');
    expect(c(0, 'FILE_MISSING')).toBe('lost');
    expect(c(0, 'ABORTED')).toBe('abort');
  });

  it('checks the file again when the store refuses the body as not the one signed', () => {
    expect(c(400, 'CONTENT_MD5_MISMATCH')).toBe('verify');
    expect(c(400, 'BadDigest')).toBe('verify');
    expect(c(400, 'IncompleteBody')).toBe('verify');
    expect(c(422, 'UPLOAD_MISMATCH')).toBe('verify');
    expect(c(400, 'CONTENT_LENGTH_MISMATCH')).toBe('verify');
  });

  it('follows retryableStatuses as data', () => {
    const p = { ...DEFAULT_RETRY_POLICY, retryableStatuses: [418] };
    expect(classifyFailure(p, { status: 418, code: 'HTTP_418' })).toBe('retry');
    expect(classifyFailure(p, { status: 503, code: 'HTTP_503' })).toBe('fail');
  });
});

describe('failures that pause the whole queue', () => {
  it('are the network, a refused certificate and a cloud that is down; never a refusal of one clip', () => {
    for (const f of [
      { status: 0, code: 'NETWORK_ERROR' },
      { status: 0, code: 'TIMEOUT' },
      { status: 0, code: 'TLS_CERT_INVALID' },
      { status: 502, code: 'BAD_GATEWAY' },
      { status: 503, code: 'SHUTTING_DOWN' },
      { status: 504, code: 'GATEWAY_TIMEOUT' },
    ]) {
      expect(isNetworkFailure(f), JSON.stringify(f)).toBe(true);
    }
    for (const f of [
      { status: 0, code: 'FILE_MISSING' },
      { status: 500, code: 'INTERNAL' },
      { status: 429, code: 'RATE_LIMITED' },
      { status: 400, code: 'CONTENT_MD5_MISMATCH' },
      { status: 409, code: 'UPLOAD_OBJECT_MISSING' },
    ]) {
      expect(isNetworkFailure(f), JSON.stringify(f)).toBe(false);
    }
  });
});

describe('Retry-After and error bodies', () => {
  it('reads delta-seconds and HTTP dates', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(parseRetryAfter('120', now)).toBe(120);
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:30 GMT', now)).toBe(30);
    expect(parseRetryAfter('Wed, 31 Dec 2025 23:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter(null, now)).toBeUndefined();
  });

  it('finds the code in the API JSON and in S3 XML, mapping an expired S3 URL to URL_EXPIRED', () => {
    expect(errorCodeFromBody(402, '{"error":{"code":"PLAN_REQUIRED","message":"x"}}')).toBe('PLAN_REQUIRED');
    expect(errorCodeFromBody(403, '<?xml version="1.0"?><Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>')).toBe(
      'URL_EXPIRED',
    );
    expect(errorCodeFromBody(400, '<Error><Code>BadDigest</Code></Error>')).toBe('BadDigest');
    expect(errorCodeFromBody(502, '<html>bad gateway</html>')).toBe('HTTP_502');
  });
});

describe('recorder restart backoff', () => {
  it('doubles from 0.5 s to 30 s', () => {
    expect([0, 1, 2, 3, 6, 7, 20].map((n) => restartDelayMs(DEFAULT_RESTART_POLICY, n))).toEqual([500, 1000, 2000, 4000, 30_000, 30_000, 30_000]);
  });
});
