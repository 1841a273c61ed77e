import type { Clock } from '../shared/clock.js';
import type { CloudConfig, PlanLimits } from './config.js';
import type { Mailer } from './mail/types.js';
import type { ObjectStore } from './objects/types.js';
import type { Store } from './store/types.js';

/** What every route needs, handed to each route module by buildApp. */
export interface AppContext {
  config: CloudConfig;
  store: Store;
  objects: ObjectStore;
  clock: Clock;
  /** the cloud's own mail: an SMTP relay, or the development outbox */
  mailer: Mailer;
  /** the server's base URL (known only after listen) */
  publicUrl: () => string;
}

/** The limits of a plan by name; null for no plan or a plan no longer in the configuration. */
export function planLimits(ctx: AppContext, plan: string | null): PlanLimits | null {
  if (plan === null) return null;
  return Object.prototype.hasOwnProperty.call(ctx.config.plans, plan) ? (ctx.config.plans[plan] ?? null) : null;
}
