import { z } from 'zod';
import { AccountId, Serial, Timestamp } from './common.js';

/** Bind codes: 10 characters of Crockford base32 = 50 bits. */
export const BindCode = z.string().regex(/^[0-9A-HJKMNP-TV-Z]{10}$/, 'bind code must be 10 characters');

export const BindCodeResponse = z.object({ code: BindCode, expiresAt: Timestamp });
export type BindCodeResponse = z.infer<typeof BindCodeResponse>;

export const Model = z.string().regex(/^[A-Za-z0-9 ._-]{1,64}$/, 'model must be 1-64 plain characters');

export const ClaimRequest = z.object({ serial: Serial, model: Model, bindCode: BindCode }).strict();
export type ClaimRequest = z.infer<typeof ClaimRequest>;
export const ClaimResponse = z.object({
  serial: Serial,
  deviceToken: z.string(),
  mqtt: z.object({
    username: Serial,
    password: z.string(),
    /** where the device connects (mqtt:// or mqtts://); this cloud always sends it, older ones did not */
    url: z.string().optional(),
  }),
});
export type ClaimResponse = z.infer<typeof ClaimResponse>;

/**
 * GET /v1/device/config: what a bound device needs to know besides its
 * credentials. The MQTT URL can change (a move to an external broker), so
 * the device asks again when it cannot connect.
 */
export const DeviceConfigResponse = z.object({
  serial: Serial,
  mqtt: z.object({ url: z.string(), username: Serial }),
});
export type DeviceConfigResponse = z.infer<typeof DeviceConfigResponse>;

/** What a share lets its grantee do: a viewer lists, views and downloads the clips; a manager also deletes them. */
export const ShareRole = z.enum(['viewer', 'manager']);
export type ShareRole = z.infer<typeof ShareRole>;

/** The caller's relation to a device in GET /v1/devices: its owner, or a grantee with that role. */
export const DeviceRole = z.enum(['owner', 'viewer', 'manager']);
export type DeviceRole = z.infer<typeof DeviceRole>;

export const Device = z.object({ serial: Serial, model: Model, boundAt: Timestamp, role: DeviceRole });
export type Device = z.infer<typeof Device>;
/** the caller's own devices first (by bind time), then the devices shared with it (by share time) */
export const DevicesResponse = z.object({ devices: z.array(Device) });
export type DevicesResponse = z.infer<typeof DevicesResponse>;

/**
 * POST /v1/devices/:serial/shares. The grantee is named by account id (GET
 * /v1/account shows it), not by email: an answer to an email would tell the
 * owner whether that address has an account here.
 */
export const ShareRequest = z.object({ accountId: AccountId, role: ShareRole }).strict();
export type ShareRequest = z.infer<typeof ShareRequest>;

export const Share = z.object({ serial: Serial, accountId: AccountId, role: ShareRole, createdAt: Timestamp });
export type Share = z.infer<typeof Share>;
export const ShareResponse = z.object({ share: Share });
export type ShareResponse = z.infer<typeof ShareResponse>;
export const SharesResponse = z.object({ shares: z.array(Share) });
export type SharesResponse = z.infer<typeof SharesResponse>;
