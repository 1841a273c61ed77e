import type { Clock } from '../shared/clock.js';
import type { CloudConfig, PlanLimits } from './config.js';
import type { Mailer } from './mail/types.js';
import type { DeviceBroker, DeviceCommands } from './mqtt/types.js';
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
  /** AES-256-GCM key of the security log's IP addresses (cloud/ip-crypto.ts, security-log.ts) */
  securityLogKey: Buffer;
  /** commands to devices over MQTT (issue 7); absent in an app built without a broker: unbinding then relies on the revoked token */
  deviceCommands?: DeviceCommands;
  /** the MQTT broker (issue 7): provisioned at claim; its publicUrl is what devices are told. Absent only in apps built without one (tests) */
  broker?: DeviceBroker;
}

/** The limits of a plan by name; null for no plan or a plan no longer in the configuration. */
export function planLimits(ctx: AppContext, plan: string | null): PlanLimits | null {
  if (plan === null) return null;
  return Object.prototype.hasOwnProperty.call(ctx.config.plans, plan) ? (ctx.config.plans[plan] ?? null) : null;
}
