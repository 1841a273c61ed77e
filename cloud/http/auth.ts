import type { FastifyRequest } from 'fastify';
import { CamvaultError } from '../../shared/errors.js';
import { isSerial } from '../../shared/ids.js';
import { hexEqual, SECRET_TOKEN_RE, sha256Hex } from '../auth/tokens.js';
import { credentialDigest } from '../account-cancel.js';
import type { AppContext } from '../context.js';
import type { DeviceRow } from '../store/types.js';

export interface SubscriberAuth {
  accountId: string;
  tokenHash: string;
}

/** `Authorization: Bearer <session token>`; 401 UNAUTHENTICATED otherwise. */
export async function requireSubscriber(ctx: AppContext, req: FastifyRequest): Promise<SubscriberAuth> {
  const m = /^Bearer ([^\s]+)$/.exec(req.headers.authorization ?? '');
  const token = m?.[1];
  if (!token || !SECRET_TOKEN_RE.test(token)) throw new CamvaultError('UNAUTHENTICATED');
  const tokenHash = sha256Hex(token);
  const now = ctx.clock.now();
  const session = await ctx.store.getSession(tokenHash, now);
  // a cancelled account's session: 410 while its rows exist, and from its tombstone afterwards
  if (session?.accountCancelledAt != null) throw new CamvaultError('ACCOUNT_CANCELLED');
  if (!session) {
    if (await ctx.store.isCredentialCancelled(credentialDigest(tokenHash), now)) throw new CamvaultError('ACCOUNT_CANCELLED');
    throw new CamvaultError('UNAUTHENTICATED');
  }
  return { accountId: session.accountId, tokenHash };
}

/**
 * `Authorization: Device <serial>:<token>`; 401 DEVICE_UNAUTHENTICATED
 * otherwise. An unbound device has no row, so its token stops working the
 * moment its owner unbinds it.
 */
export async function requireDevice(ctx: AppContext, req: FastifyRequest): Promise<DeviceRow> {
  const m = /^Device ([^:\s]+):([^\s]+)$/.exec(req.headers.authorization ?? '');
  const serial = m?.[1];
  const token = m?.[2];
  if (!serial || !token || !isSerial(serial) || !SECRET_TOKEN_RE.test(token)) {
    throw new CamvaultError('DEVICE_UNAUTHENTICATED');
  }
  const device = await ctx.store.getDevice(serial);
  const tokenHash = sha256Hex(token);
  if (!device || !hexEqual(device.tokenHash, tokenHash)) {
    // a device of a cancelled account: its token was revoked with a tombstone (only the refusal path asks)
    if (await ctx.store.isCredentialCancelled(credentialDigest(tokenHash), ctx.clock.now())) throw new CamvaultError('ACCOUNT_CANCELLED');
    throw new CamvaultError('DEVICE_UNAUTHENTICATED');
  }
  return device;
}
