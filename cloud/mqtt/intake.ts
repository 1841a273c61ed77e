/**
 * What a device published, checked before anyone acts on it (P6: an alert is
 * an allowlist of serial, type, time and clip id). Pure: both broker adapters
 * call it with the topic and the raw payload and count what it drops.
 */
import { Alert, DeviceStatusPayload } from '../../shared/contracts/alerts.js';
import { parseDeviceTopic } from '../../shared/topics.js';
import type { AlertHandler, BrokerStats, StatusHandler } from './types.js';

/** The largest payload read: an alert is ~150 bytes; anything near this is not one. */
export const MAX_PAYLOAD_BYTES = 4096;

export type Inbound =
  | { kind: 'alert'; alert: Alert }
  | { kind: 'status'; serial: string; status: DeviceStatusPayload }
  | { kind: 'dropped'; reason: 'invalid' | 'serial-mismatch' | 'unknown-topic' };

const INVALID: Inbound = { kind: 'dropped', reason: 'invalid' };

/** The meaning of one message on a device topic, or why it is dropped. */
export function readInbound(topic: string, payload: Buffer): Inbound {
  const where = parseDeviceTopic(topic);
  if (!where) return { kind: 'dropped', reason: 'unknown-topic' };
  if (payload.length > MAX_PAYLOAD_BYTES) return INVALID;
  if (where.leaf === 'status') {
    // the status is a bare word (the last will is fixed bytes, set at connect)
    const parsed = DeviceStatusPayload.safeParse(payload.toString('utf8').trim());
    return parsed.success ? { kind: 'status', serial: where.serial, status: parsed.data } : INVALID;
  }
  if (where.leaf !== 'alerts') return { kind: 'dropped', reason: 'unknown-topic' };
  let json: unknown;
  try {
    json = JSON.parse(payload.toString('utf8'));
  } catch {
    return INVALID;
  }
  const parsed = Alert.safeParse(json);
  if (!parsed.success) return INVALID;
  // the broker's ACL proves who published on this topic; the payload's serial must agree
  if (parsed.data.serial !== where.serial) return { kind: 'dropped', reason: 'serial-mismatch' };
  return { kind: 'alert', alert: parsed.data };
}

/** Counters both adapters keep; `count` files one inbound message. */
export class IntakeCounters {
  readonly counts: Omit<BrokerStats, 'pendingRetries'> = {
    alertsReceived: 0,
    statusesReceived: 0,
    droppedInvalid: 0,
    droppedSerialMismatch: 0,
    droppedUnknownTopic: 0,
  };

  count(msg: Inbound): void {
    if (msg.kind === 'alert') this.counts.alertsReceived++;
    else if (msg.kind === 'status') this.counts.statusesReceived++;
    else if (msg.reason === 'invalid') this.counts.droppedInvalid++;
    else if (msg.reason === 'serial-mismatch') this.counts.droppedSerialMismatch++;
    else this.counts.droppedUnknownTopic++;
  }
}

/**
 * The handlers of one adapter, and its counters: `dispatch` reads one
 * message, counts it, and hands it on. A handler that throws is logged by
 * the caller's `onError` and does not stop the others (nor the broker).
 */
export class InboundDispatcher {
  private readonly alertHandlers: AlertHandler[] = [];
  private readonly statusHandlers: StatusHandler[] = [];
  readonly counters = new IntakeCounters();

  constructor(private readonly onError: (err: unknown) => void) {}

  onAlert(handler: AlertHandler): void {
    this.alertHandlers.push(handler);
  }

  onStatus(handler: StatusHandler): void {
    this.statusHandlers.push(handler);
  }

  dispatch(topic: string, payload: Buffer, receivedAt: number): Inbound {
    const msg = readInbound(topic, payload);
    this.counters.count(msg);
    if (msg.kind === 'alert') {
      for (const h of this.alertHandlers) this.guard(() => h(msg.alert, receivedAt));
    } else if (msg.kind === 'status') {
      for (const h of this.statusHandlers) this.guard(() => h(msg.serial, msg.status));
    }
    return msg;
  }

  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.onError(err);
    }
  }
}
