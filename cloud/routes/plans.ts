import type { FastifyInstance } from 'fastify';
import { SetPlanRequest, type Plan } from '../../shared/contracts/index.js';
import { CamvaultError } from '../../shared/errors.js';
import { planLimits, type AppContext } from '../context.js';
import { requireSubscriber } from '../http/auth.js';
import { parseInput } from '../http/validate.js';
import { accountJson } from './accounts.js';

const DAY_MS = 24 * 3600_000;

/**
 * When a clip expires under a plan: its retention counted from the earlier of
 * the device's start stamp and the cloud's receipt (DESIGN.md, "What the cloud
 * does not take on trust"): a clip stamped in the future must not outlive its
 * plan, one stamped in the past must not vanish on arrival (presign refuses
 * stamps more than 7 days old). Store.choosePlan applies the same rule in SQL.
 */
export function clipExpiresAt(startMs: number, uploadedAtMs: number, retentionDays: number): number {
  return Math.min(startMs, uploadedAtMs) + retentionDays * DAY_MS;
}

/**
 * Plans: GET /v1/plans (public), PUT /v1/account/plan (choose or change),
 * DELETE /v1/account/plan (let it lapse).
 *
 * The expiry of every unexpired clip follows the current plan: choosing or
 * changing a plan sets it to clipExpiresAt(…, new retention), so a downgrade
 * shortens it (a clip past the new retention expires at once) and an upgrade
 * lengthens it. A lapse stops presigning at once (402 PLAN_REQUIRED; the agent
 * parks its queue and keeps its footage) and caps every clip's expiry at
 * lapse + planGraceDays; choosing a plan within the grace recomputes them.
 */
export async function planRoutes(app: FastifyInstance, ctx: AppContext): Promise<void> {
  app.get('/v1/plans', async () => {
    const plans: Plan[] = Object.entries(ctx.config.plans).map(([name, limits]) => ({ name, ...limits }));
    return { plans };
  });

  // TODO(billing issue): a plan change is a purchase; here it is a plain switch
  app.put('/v1/account/plan', async (req) => {
    const auth = await requireSubscriber(ctx, req);
    const body = parseInput(SetPlanRequest, req.body, 'body');
    const limits = planLimits(ctx, body.plan);
    if (!limits) throw new CamvaultError('PLAN_NOT_FOUND');
    const clips = await ctx.store.choosePlan(auth.accountId, body.plan, limits.retentionDays * DAY_MS, ctx.clock.now());
    req.log.info({ accountId: auth.accountId, plan: body.plan, clips }, 'plan set');
    const account = await ctx.store.getAccountById(auth.accountId);
    if (!account) throw new CamvaultError('UNAUTHENTICATED');
    return accountJson(account);
  });

  // Idempotent: lapsing an account without a plan changes nothing (the first lapse time stays).
  app.delete('/v1/account/plan', async (req) => {
    const auth = await requireSubscriber(ctx, req);
    const now = ctx.clock.now();
    const clips = await ctx.store.lapsePlan(auth.accountId, now, now + ctx.config.planGraceDays * DAY_MS);
    req.log.info({ accountId: auth.accountId, clips }, 'plan lapsed');
    const account = await ctx.store.getAccountById(auth.accountId);
    if (!account) throw new CamvaultError('UNAUTHENTICATED');
    return accountJson(account);
  });
}
