/**
 * When the agent tries the MQTT broker again (issue 7). Pure: the connection
 * (mqtt/connection.ts) takes the policy, and the unit tests drive it.
 *
 * Two kinds of failure, two paces:
 * - the network or the broker is down: exponential backoff from a second to
 *   a minute, so a camera notices the broker's return quickly but a fleet of
 *   them does not hammer a broker that is starting up;
 * - the broker refused the credential (CONNACK 4 or 5): a retry cannot fix
 *   that until someone changes the credential (the cloud provisions it a
 *   moment late, or the owner unbound the camera), so minutes apart, never a
 *   hot loop.
 *
 * A connection counts as healthy once it has stayed up for `healthyMs`; only
 * then does the backoff start over. A broker that accepts and then drops the
 * device at once (aedes closes the connection on a refused publish) would
 * otherwise be reconnected to in a tight loop.
 */
export interface ReconnectPolicy {
  minDelayMs: number;
  maxDelayMs: number;
  factor: number;
  /** ± this fraction of the delay, so cameras that lost the broker together do not return together */
  jitter: number;
  refusedMinDelayMs: number;
  refusedMaxDelayMs: number;
  healthyMs: number;
}

export const DEFAULT_RECONNECT_POLICY: ReconnectPolicy = {
  minDelayMs: 1000,
  maxDelayMs: 60_000,
  factor: 2,
  jitter: 0.2,
  refusedMinDelayMs: 60_000,
  refusedMaxDelayMs: 15 * 60_000,
  healthyMs: 30_000,
};

export type ConnectFailure = 'network' | 'refused';

/** The wait before the next attempt, after `failures` (≥ 1) failed or short-lived connections in a row. */
export function reconnectDelayMs(policy: ReconnectPolicy, failures: number, kind: ConnectFailure, random: () => number = Math.random): number {
  const [min, max] = kind === 'refused' ? [policy.refusedMinDelayMs, policy.refusedMaxDelayMs] : [policy.minDelayMs, policy.maxDelayMs];
  const n = Math.max(1, failures);
  // capped before it is raised: factor ** 1000 is Infinity
  const base = Math.min(max, min * policy.factor ** Math.min(n - 1, 64));
  const spread = base * policy.jitter * (2 * random() - 1);
  return Math.max(min * (1 - policy.jitter), Math.round(base + spread));
}
