import type { FastifyInstance } from 'fastify';
import { SetPlanRequest, type Plan } from '../../shared/contracts/index.js';
import { CamvaultError } from '../../shared/errors.js';
import { planLimits, type AppContext } from '../context.js';
import { requireSubscriber } from '../http/auth.js';
import { parseInput } from '../http/validate.js';
import { accountJson } from './accounts.js';

/** Plans: GET /v1/plans (public), PUT /v1/account/plan. */
export async function planRoutes(app: FastifyInstance, ctx: AppContext): Promise<void> {
  app.get('/v1/plans', async () => {
    const plans: Plan[] = Object.entries(ctx.config.plans).map(([name, limits]) => ({ name, ...limits }));
    return { plans };
  });

  // TODO(billing issue): a plan change is a purchase; here it is a plain switch
  app.put('/v1/account/plan', async (req) => {
    const auth = await requireSubscriber(ctx, req);
    const body = parseInput(SetPlanRequest, req.body, 'body');
    if (!planLimits(ctx, body.plan)) throw new CamvaultError('PLAN_NOT_FOUND');
    await ctx.store.setAccountPlan(auth.accountId, body.plan);
    req.log.info({ accountId: auth.accountId, plan: body.plan }, 'plan set');
    const account = await ctx.store.getAccountById(auth.accountId);
    if (!account) throw new CamvaultError('UNAUTHENTICATED');
    return accountJson(account);
  });
}
