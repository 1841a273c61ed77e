import { describe, expect, it } from 'vitest';
import { rateKey, retryAfterSec, windowStart } from '../../cloud/http/rate-limit.js';

describe('rate limit keys and windows', () => {
  it('a key names its scope and hashes the subject: no email or IP in clear, and scopes never collide', () => {
    const email = 'someone@example.com';
    const k = rateKey('login-account', email);
    expect(k).toMatch(/^login-account:[0-9a-f]{40}$/);
    expect(k).not.toContain('someone');
    expect(rateKey('login-account', email)).toBe(k);
    expect(rateKey('mail-email', email).split(':')[1]).not.toBe(k.split(':')[1]);
    expect(rateKey('login-account', 'someone@example.org')).not.toBe(k);
    expect(rateKey('login-ip', '203.0.113.7')).not.toContain('203.0.113.7');
  });

  it('windows are fixed, aligned to multiples of their length', () => {
    expect(windowStart(120_000, 60_000)).toBe(120_000);
    expect(windowStart(179_999, 60_000)).toBe(120_000);
    expect(windowStart(180_000, 60_000)).toBe(180_000);
    const now = Date.parse('2026-05-05T10:07:30.250Z');
    expect(windowStart(now, 900_000)).toBe(Date.parse('2026-05-05T10:00:00.000Z'));
  });

  it('Retry-After is the whole seconds left in the window, at least 1', () => {
    expect(retryAfterSec(120_000, 60_000)).toBe(60);
    expect(retryAfterSec(120_001, 60_000)).toBe(60);
    expect(retryAfterSec(178_500, 60_000)).toBe(2);
    expect(retryAfterSec(179_999, 60_000)).toBe(1);
  });
});
