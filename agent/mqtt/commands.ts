import { DeviceCommand } from '../../shared/contracts/alerts.js';

/**
 * Commands from the cloud on devices/<serial>/commands (issue 7): parsed and
 * checked against the DeviceCommand schema (a strict allowlist) before
 * anything acts on them. Pure. What is refused is described by a reason and,
 * when it looks like one, the command type: never the payload, which comes
 * from the network and could hold anything.
 */
export const MAX_COMMAND_BYTES = 4096;

export type CommandParse =
  | { ok: true; command: DeviceCommand }
  | { ok: false; reason: 'too-large' | 'not-json' | 'invalid'; type?: string };

export function parseCommand(payload: Buffer): CommandParse {
  if (payload.length > MAX_COMMAND_BYTES) return { ok: false, reason: 'too-large' };
  let json: unknown;
  try {
    json = JSON.parse(payload.toString('utf8'));
  } catch {
    return { ok: false, reason: 'not-json' };
  }
  const parsed = DeviceCommand.safeParse(json);
  if (parsed.success) return { ok: true, command: parsed.data };
  const type = (json as { type?: unknown } | null)?.type;
  // a type is named in the log only when it is a short plain word
  return typeof type === 'string' && /^[a-z][a-z-]{0,31}$/.test(type) ? { ok: false, reason: 'invalid', type } : { ok: false, reason: 'invalid' };
}
