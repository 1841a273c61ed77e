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

/**
 * GET /v1/notifications asked for JSON (no `Accept: text/event-stream`): the
 * account's newest notifications, newest first, from the days the cloud keeps.
 */
export const NotificationsResponse = z.object({ notifications: z.array(Notification) });
export type NotificationsResponse = z.infer<typeof NotificationsResponse>;

/**
 * PUT /v1/account/webhook: every notification for the account is also POSTed
 * to `url`, signed with HMAC-SHA256 under `secret` (X-Camvault-Signature). The
 * cloud checks the URL further (https://, a public host) and answers
 * WEBHOOK_URL_INVALID.
 */
export const WebhookRequest = z
  .object({
    url: z.string().url().max(2048),
    secret: z.string().regex(/^[\x21-\x7e]{16,256}$/, 'secret must be 16-256 printable ASCII characters without spaces'),
  })
  .strict();
export type WebhookRequest = z.infer<typeof WebhookRequest>;

/** the webhook as the cloud keeps it; the secret is never sent back */
export const WebhookResponse = z.object({ webhook: z.object({ url: z.string(), createdAt: Timestamp }) });
export type WebhookResponse = z.infer<typeof WebhookResponse>;
