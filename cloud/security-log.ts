/**
 * The security log (DESIGN P8): sign-ins, failed sign-ins, password changes,
 * binding, sharing, deletions and exports, each with the client's address,
 * kept 30 days. Route handlers of every module write it with one line:
 *
 *   await securityLog(ctx, req, 'sign-in', { accountId });
 *
 * The address is req.ip (through the proxies CAMVAULT_TRUST_PROXY names),
 * encrypted with AES-256-GCM before it reaches the store (cloud/ip-crypto.ts).
 * An entry names its own account and nothing else: no serial, no other
 * account's id, no email. So cancelling one account never has to rewrite
 * another's log, and the log cannot be read for who shared with whom.
 *
 * A failed sign-in for an address that has no account is kept with no
 * account and no trace of the address typed (neither the email nor a hash of
 * it): it is not the personal data of a user, and a hash would let anyone
 * holding the database test guesses. What is left, the client's address and
 * the time, is what abuse investigations need, for 30 days.
 */
import type { FastifyRequest } from 'fastify';
import type { SecurityEvent } from '../shared/contracts/account-rights.js';
import type { AppContext } from './context.js';
import { decryptIp, encryptIp } from './ip-crypto.js';
import type { SecurityLogRow, Store } from './store/types.js';

/** How long an entry is kept (DESIGN P8). */
export const SECURITY_LOG_DAYS = 30;
const DAY_MS = 24 * 3600_000;
/** entries erased per statement: a big backlog goes in steps, not one long transaction */
const ERASE_BATCH = 10_000;

export async function securityLog(
  ctx: Pick<AppContext, 'store' | 'clock' | 'securityLogKey'>,
  req: FastifyRequest,
  event: SecurityEvent,
  who: { accountId: string | null },
): Promise<void> {
  await ctx.store.appendSecurityLog({
    accountId: who.accountId,
    event,
    at: ctx.clock.now(),
    ip: encryptIp(ctx.securityLogKey, req.ip),
  });
}

/** An entry as its owner sees it: the address decrypted (null when this key cannot read it). */
export function readableEntry(key: Buffer, row: SecurityLogRow): { event: string; at: number; ip: string | null } {
  return { event: row.event, at: row.at, ip: decryptIp(key, row.ip) };
}

/**
 * Erases every entry older than 30 days, of every account (and of none), in
 * batches; returns how many went. The job "security-log-erase" runs it hourly
 * (server.ts), so an entry lives at most 30 days and an hour.
 */
export async function eraseOldSecurityLog(store: Store, nowMs: number, signal?: AbortSignal): Promise<number> {
  const before = nowMs - SECURITY_LOG_DAYS * DAY_MS;
  let erased = 0;
  for (;;) {
    const n = await store.eraseSecurityLogBefore(before, ERASE_BATCH);
    erased += n;
    if (n < ERASE_BATCH || signal?.aborted) return erased;
  }
}
