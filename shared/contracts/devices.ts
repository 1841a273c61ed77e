import { z } from 'zod';
import { Serial, Timestamp } from './common.js';

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
  mqtt: z.object({ username: Serial, password: z.string() }),
});
export type ClaimResponse = z.infer<typeof ClaimResponse>;

export const Device = z.object({ serial: Serial, model: Model, boundAt: Timestamp });
export type Device = z.infer<typeof Device>;
export const DevicesResponse = z.object({ devices: z.array(Device) });
