import type { FastifyReply, FastifyRequest } from 'fastify';
import { CamvaultError } from '../../shared/errors.js';
import { sha256Hex } from '../auth/tokens.js';
import type { RateLimit } from '../config.js';
import type { AppContext } from '../context.js';

/**
 * Rate limits with fixed windows, counted in the metadata store
 * (Store.hitRateLimit): cloud nodes share nothing in memory, so a counter
 * kept in one node's memory would let an attacker spread tries over nodes.
 *
 * A fixed window lets through at most 2 × max around a window boundary; that
 * is enough to stop guessing, and it costs one row per key.
 */

export interface RateRule {
  /** what is limited, e.g. 'login-ip'; part of the key in clear */
  scope: string;
  /** who is limited: an IP, an email, a serial. Only its hash reaches the store. */
  subject: string;
  limit: RateLimit;
}

/**
 * The store key of a rule: the scope, then a hash of scope and subject. Keys
 * never hold an email or an IP in clear (P8, P11); a hash of an email is
 * still personal data in law, so these rows live one window and no longer.
 */
export function rateKey(scope: string, subject: string): string {
  return `${scope}:${sha256Hex(`${scope}\n${subject}`).slice(0, 40)}`;
}

/** The start of the fixed window of windowMs that contains nowMs (as Store.hitRateLimit counts). */
export function windowStart(nowMs: number, windowMs: number): number {
  return nowMs - (((nowMs % windowMs) + windowMs) % windowMs);
}

/** Retry-After for a window that is full: whole seconds until it ends, at least 1. */
export function retryAfterSec(nowMs: number, windowMs: number): number {
  return Math.max(1, Math.ceil((windowStart(nowMs, windowMs) + windowMs - nowMs) / 1000));
}

/**
 * Counts one hit on every rule (all of them, so the work is the same whatever
 * the outcome), then answers 429 RATE_LIMITED with Retry-After when any is
 * over its limit: the longest wait of those over.
 */
export async function enforceRateLimits(ctx: AppContext, reply: FastifyReply, rules: readonly RateRule[]): Promise<void> {
  const now = ctx.clock.now();
  let wait = 0;
  for (const rule of rules) {
    const windowMs = rule.limit.windowSec * 1000;
    const count = await ctx.store.hitRateLimit(rateKey(rule.scope, rule.subject), windowMs, now);
    if (count > rule.limit.max) wait = Math.max(wait, retryAfterSec(now, windowMs));
  }
  if (wait > 0) {
    void reply.header('retry-after', String(wait));
    throw new CamvaultError('RATE_LIMITED');
  }
}

/** POST /v1/device/claim: per client IP and per serial. */
export function limitClaim(ctx: AppContext, req: FastifyRequest, reply: FastifyReply, serial: string): Promise<void> {
  const limits = ctx.config.rateLimits;
  return enforceRateLimits(ctx, reply, [
    { scope: 'claim-ip', subject: req.ip, limit: limits.claimPerIp },
    { scope: 'claim-serial', subject: serial, limit: limits.claimPerSerial },
  ]);
}
