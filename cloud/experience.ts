/**
 * The experience program (DESIGN P7): opt-in. A few product events (a
 * sign-in, a clip viewed, a device bound) are recorded for an account only
 * while its `experience` consent is given: the store checks the consent in
 * the same statement as the insert, so a withdrawal stops collection at once
 * (and deletes what was collected, Store.setConsents). An event holds the
 * account, what happened and when: no IP, no email, no serial, no clip id.
 *
 * Route handlers call it with one line:
 *
 *   await experienceEvent(ctx, req, accountId, 'clip-viewed');
 *
 * It never fails the request it rides on: an error is logged and dropped.
 */
import type { FastifyRequest } from 'fastify';
import type { ExperienceEvent } from '../shared/contracts/account-rights.js';
import type { AppContext } from './context.js';

export async function experienceEvent(
  ctx: Pick<AppContext, 'store' | 'clock'>,
  req: FastifyRequest,
  accountId: string,
  event: ExperienceEvent,
): Promise<void> {
  try {
    await ctx.store.recordExperienceEvent(accountId, event, ctx.clock.now());
  } catch (err) {
    req.log.warn({ err: (err as Error).message, event }, 'experience event not recorded');
  }
}
