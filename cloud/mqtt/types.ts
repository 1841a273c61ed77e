/**
 * The device broker: what the rest of the cloud needs from MQTT (issue 7).
 * Two implementations run the one contract suite
 * (test/contract/broker.contract.ts): aedes inside the cloud process
 * (embedded default) and an external Mosquitto 2 with the dynamic security
 * plugin (production, CAMVAULT_MQTT_URL).
 *
 * Topics and payloads are shared/topics.ts and shared/contracts/alerts.ts. A
 * device publishes and subscribes under its own devices/<serial>/ and
 * nowhere else; what it sends is validated here (intake.ts) before any
 * handler sees it, and a payload that fails is dropped and counted, never
 * forwarded.
 */
import type { Alert, DeviceCommand, DeviceStatusPayload } from '../../shared/contracts/alerts.js';

/** an alert that passed the schema, from the device its topic names; receivedAt is the cloud's clock */
export type AlertHandler = (alert: Alert, receivedAt: number) => void;
/** a device's retained status: "online" when it connects, "offline" (its last will, or said on the way out) */
export type StatusHandler = (serial: string, status: DeviceStatusPayload) => void;

/** What the broker adapter dropped before any handler saw it, by reason (counts since start). */
export interface BrokerStats {
  alertsReceived: number;
  statusesReceived: number;
  /** not JSON, or not the schema's allowlist */
  droppedInvalid: number;
  /** the payload's serial is not the one in the topic */
  droppedSerialMismatch: number;
  /** a topic the cloud does not read (devices/<serial>/<other>) */
  droppedUnknownTopic: number;
  /** provision/revoke operations that failed and are being retried */
  pendingRetries: number;
}

export interface DeviceBroker {
  readonly kind: 'aedes' | 'mosquitto';
  /** the URL devices connect to (mqtt:// or mqtts://) */
  readonly publicUrl: string;
  /**
   * After a claim: the device may log in as username = serial, client id =
   * serial, with this password. A credential given earlier stops working and
   * a session that used it is disconnected. Resolves once the broker has it;
   * on failure it rejects and keeps trying in the background.
   */
  provision(serial: string, password: string): Promise<void>;
  /**
   * After an unbind: the credential stops working and a connected device is
   * disconnected. A connected device first gets `farewell` (QoS 1), delivered
   * before the disconnect as far as the broker can tell; an offline device
   * gets nothing (a later owner's session must not inherit it). Rejects on
   * failure and keeps trying in the background.
   */
  revoke(serial: string, farewell?: DeviceCommand): Promise<void>;
  /**
   * QoS 1 to devices/<serial>/commands. Resolves when the broker took it; a
   * device that is offline with a persistent session gets it when it
   * reconnects.
   */
  publishCommand(serial: string, command: DeviceCommand): Promise<void>;
  /** whether the device is connected, as far as this node knows */
  isOnline(serial: string): boolean;
  onAlert(handler: AlertHandler): void;
  onStatus(handler: StatusHandler): void;
  stats(): BrokerStats;
  /** idempotent; after it, every call rejects with BrokerClosedError */
  close(): Promise<void>;
}

/** A call on a broker adapter after close(). */
export class BrokerClosedError extends Error {
  readonly code = 'BROKER_CLOSED';
  constructor() {
    super('the device broker is closed');
    this.name = 'BrokerClosedError';
  }
}

/**
 * What the cloud asks of a device through the broker (AppContext.deviceCommands).
 * Unbinding (DELETE /v1/devices/:serial, and account cancellation for each
 * device) calls unbind after the store has forgotten the device.
 */
export interface DeviceCommands {
  /** the device is told it was unbound (if connected), then its MQTT credential is revoked and it is disconnected */
  unbind(serial: string): Promise<void>;
  /** wake the device's uploader (QoS 1, queued while it is offline) */
  syncNow(serial: string): Promise<void>;
}
