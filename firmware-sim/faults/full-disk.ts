/**
 * The full-disk fault: the agent's ring buffer gets a tiny quota
 * (`storage.maxBytes`, CAMVAULT_AGENT_STORAGE_MAX_BYTES), so a few segments
 * fill it. The agent must keep recording, evict clips the cloud has first,
 * and count every clip it had to delete before the cloud had it (`agent
 * status`: footage lost). A disk that is really full (ENOSPC, SQLITE_FULL) is
 * test/integration/disk-full.test.ts, on a small tmpfs.
 *
 * The quota is read when the agent starts: the simulator applies one by
 * (re)starting the agent with it.
 */
import { parseBytes } from './durations.js';

export const STORAGE_MAX_BYTES_ENV = 'CAMVAULT_AGENT_STORAGE_MAX_BYTES';
/** below this even one segment of the smallest picture does not fit */
export const MIN_QUOTA_BYTES = 10_000;

/** `300k`, `2M`, `250000` → bytes; null below MIN_QUOTA_BYTES or unreadable. */
export function parseQuota(text: string): number | null {
  const n = parseBytes(text);
  return n !== null && n >= MIN_QUOTA_BYTES ? n : null;
}

/** The agent config for a quota: only maxBytes; the reserve of free disk stays the agent's default. */
export function quotaConfig(maxBytes: number | undefined): { storage?: { maxBytes: number } } {
  return maxBytes === undefined ? {} : { storage: { maxBytes } };
}
