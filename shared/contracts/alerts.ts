/**
 * What travels over MQTT (DESIGN.md, "Identifiers, keys, topics"; P6: push
 * notifications carry device alerts and device information only). Every
 * payload is a strict allowlist: a field that is not named here is refused,
 * so nothing else (a Wi-Fi SSID, an SMTP setting, a log line) can ride along.
 */
import { z } from 'zod';
import { ClipId, Serial, Timestamp } from './common.js';

/** what the camera saw */
export const AlertType = z.enum(['motion']);
export type AlertType = z.infer<typeof AlertType>;

/** device → cloud, on devices/<serial>/alerts (QoS 1) */
export const Alert = z
  .object({
    serial: Serial,
    type: AlertType,
    /** when the event happened, device time */
    at: Timestamp,
    /** the event clip, once the agent knows it */
    clipId: ClipId.optional(),
  })
  .strict();
export type Alert = z.infer<typeof Alert>;

/** device → cloud, on devices/<serial>/status, retained; the last will says "offline" */
export const DeviceStatusPayload = z.enum(['online', 'offline']);
export type DeviceStatusPayload = z.infer<typeof DeviceStatusPayload>;

export const UploadMode = z.enum(['events', 'continuous']);
export type UploadMode = z.infer<typeof UploadMode>;

/** cloud → device, on devices/<serial>/commands (QoS 1) */
export const DeviceCommand = z.discriminatedUnion('type', [
  /** the owner unbound the camera: wipe the device credential, stop uploading */
  z.object({ type: z.literal('unbind'), id: z.string().min(1).max(64) }).strict(),
  /** upload what is queued now (wake the uploader) */
  z.object({ type: z.literal('sync-now'), id: z.string().min(1).max(64) }).strict(),
  /** upload event clips only, or continuous footage too */
  z.object({ type: z.literal('set-upload-mode'), id: z.string().min(1).max(64), mode: UploadMode }).strict(),
]);
export type DeviceCommand = z.infer<typeof DeviceCommand>;

/** cloud → subscriber (SSE on GET /v1/notifications, and the account's webhook): an alert, and the account it is for */
export const Notification = z
  .object({
    id: z.string().min(1),
    serial: Serial,
    type: AlertType,
    at: Timestamp,
    clipId: ClipId.optional(),
    /** when the cloud received it */
    receivedAt: Timestamp,
  })
  .strict();
export type Notification = z.infer<typeof Notification>;
