/**
 * The embedded broker's ACL (DESIGN.md, "Identifiers, keys, topics"): a
 * device publishes and subscribes under its own devices/<serial>/ and nowhere
 * else. Mosquitto gets the same rule as one dynsec role per device
 * (dynsec.ts), since its plugin does not expand %u or %c.
 */
import { isSerial } from '../../shared/ids.js';

function ownPrefix(serial: string): string | null {
  return isSerial(serial) ? `devices/${serial}/` : null;
}

/** A publish topic (never a wildcard) strictly under the device's own prefix. */
export function mayPublish(serial: string, topic: string): boolean {
  const prefix = ownPrefix(serial);
  return prefix !== null && topic.length > prefix.length && topic.startsWith(prefix) && !topic.includes('+') && !topic.includes('#') && !topic.includes('\u0000');
}

/**
 * A subscription filter that starts with the device's literal prefix: a
 * wildcard after it (devices/<serial>/#) can only match the device's own
 * topics; one before it (devices/+/commands, #) is refused.
 */
export function maySubscribe(serial: string, filter: string): boolean {
  const prefix = ownPrefix(serial);
  return prefix !== null && filter.length > prefix.length && filter.startsWith(prefix) && !filter.includes('\u0000');
}
