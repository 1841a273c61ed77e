/**
 * A notification's id, derived from the alert itself: every cloud node that
 * receives the same alert (each node subscribes to every device's alerts, and
 * QoS 1 may deliver it twice) computes the same id, so the notifications
 * table keeps it once per account and exactly one node sends the webhook.
 *
 * The event time is normalised to UTC first: "…T10:00:00+02:00" and
 * "…T08:00:00Z" are one event. The serial is part of it, and the broker's
 * ACL proves the serial, so no device can make an id collide with another
 * device's.
 */
import { createHash } from 'node:crypto';
import type { Alert } from '../../shared/contracts/alerts.js';

/** 32 lower-case hex digits (128 bits of SHA-256) */
export const NOTIFICATION_ID_RE = /^[0-9a-f]{32}$/;

export function notificationId(alert: Alert): string {
  const at = new Date(alert.at).toISOString();
  return createHash('sha256')
    .update(['camvault-notification-v1', alert.serial, alert.type, at, alert.clipId ?? ''].join('\n'))
    .digest('hex')
    .slice(0, 32);
}
