/**
 * MQTT topics (DESIGN.md, "Identifiers, keys, topics"). A device may publish
 * and subscribe under its own devices/<serial>/ and nowhere else; the serial is
 * checked before it becomes part of a topic.
 */
import { CamvaultError } from './errors.js';
import { isSerial } from './ids.js';

function prefix(serial: string): string {
  if (!isSerial(serial)) throw new CamvaultError('BAD_REQUEST', 'invalid serial');
  return `devices/${serial}/`;
}

/** everything a device may touch: devices/<serial>/# */
export const deviceTopicPattern = (serial: string): string => `${prefix(serial)}#`;
/** device → cloud alerts */
export const alertsTopic = (serial: string): string => `${prefix(serial)}alerts`;
/** device → cloud, retained "online", last will "offline" */
export const statusTopic = (serial: string): string => `${prefix(serial)}status`;
/** cloud → device commands */
export const commandsTopic = (serial: string): string => `${prefix(serial)}commands`;

/** The serial and the leaf of a device topic, or null for any other topic. */
export function parseDeviceTopic(topic: string): { serial: string; leaf: string } | null {
  const m = /^devices\/([^/]+)\/([^/]+)$/.exec(topic);
  if (!m || !isSerial(m[1] as string)) return null;
  return { serial: m[1] as string, leaf: m[2] as string };
}
