/**
 * The clock-skew fault: the agent's clock off by a fixed amount, as a camera
 * that booted without a real-time clock and before NTP. The agent runs with
 * config `clockSkewMs` (CAMVAULT_AGENT_CLOCK_SKEW_MS), which it accepts only
 * with `development: true`: everything it stamps moves with it (segment start
 * times, motion, the journal). A skew the cloud cannot take (more than 5
 * minutes ahead, or more than 7 days behind) makes presign answer
 * CLIP_START_OUT_OF_RANGE; the agent then holds its uploads, keeps the clips
 * queued and says so in `agent status` (agent/agent.ts, "the device clock").
 *
 * The skew is set when the agent starts: the simulator applies a new one by
 * restarting the agent, as a camera whose clock NTP sets at boot.
 */
import { formatDuration, parseSignedDuration } from './durations.js';

export const CLOCK_SKEW_ENV = 'CAMVAULT_AGENT_CLOCK_SKEW_MS';
/** the agent's config refuses more */
export const MAX_SKEW_MS = 365 * 86_400_000;

/** `+2h`, `-8d`, `0` → ms; null when it is not a skew the agent takes. */
export function parseSkew(text: string): number | null {
  const ms = parseSignedDuration(text);
  if (ms === null || Math.abs(ms) > MAX_SKEW_MS) return null;
  return ms;
}

/** What the cloud makes of a skew: accepted, or refused (the window is 5 minutes ahead to 7 days behind). */
export function describeSkew(ms: number): string {
  if (ms === 0) return 'the right time';
  const sign = ms > 0 ? '+' : '';
  const refused = ms > 5 * 60_000 || ms < -7 * 86_400_000;
  return `${sign}${formatDuration(ms)} (${refused ? 'the cloud refuses clip times this far off' : 'within what the cloud accepts'})`;
}
