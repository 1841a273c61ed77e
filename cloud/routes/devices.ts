import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { Serial, type BindCodeResponse, type Device, type DevicesResponse } from '../../shared/contracts/index.js';
import { CamvaultError } from '../../shared/errors.js';
import { newBindCode, sha256Hex } from '../auth/tokens.js';
import type { AppContext } from '../context.js';
import { requireSubscriber } from '../http/auth.js';
import { parseInput } from '../http/validate.js';
import { securityLog } from '../security-log.js';
import type { DeviceRow } from '../store/types.js';

/** A bind code is single use and lives this long (at most 10 minutes, issue 5). */
export const BIND_CODE_TTL_MS = 10 * 60_000;

const SerialParams = z.object({ serial: Serial }).strict();

function deviceJson(d: DeviceRow, role: Device['role']): Device {
  return { serial: d.serial, model: d.model, boundAt: new Date(d.boundAt).toISOString(), role };
}

/** The subscriber's side of devices: bind codes, the device list, unbinding. Sharing is in shares.ts. */
export async function deviceRoutes(app: FastifyInstance, ctx: AppContext): Promise<void> {
  app.post('/v1/devices/bind-codes', async (req, reply) => {
    const auth = await requireSubscriber(ctx, req);
    const code = newBindCode();
    const now = ctx.clock.now();
    const expiresAt = now + BIND_CODE_TTL_MS;
    await ctx.store.createBindCode({ codeHash: sha256Hex(code), accountId: auth.accountId, createdAt: now, expiresAt });
    const res: BindCodeResponse = { code, expiresAt: new Date(expiresAt).toISOString() };
    return reply.code(201).send(res);
  });

  /** my devices, then the devices shared with me (with my role on each) */
  app.get('/v1/devices', async (req) => {
    const auth = await requireSubscriber(ctx, req);
    const [own, shared] = await Promise.all([
      ctx.store.listDevices(auth.accountId),
      ctx.store.listSharedDevices(auth.accountId),
    ]);
    const res: DevicesResponse = {
      devices: [
        ...own.map((d) => deviceJson(d, 'owner')),
        ...shared.map(({ device, share }) => deviceJson(device, share.role)),
      ],
    };
    return res;
  });

  /**
   * Unbinding revokes the device's token at once and ends every share of it;
   * its clips stay with the account (and stop being visible to its grantees).
   */
  app.delete('/v1/devices/:serial', async (req, reply) => {
    const auth = await requireSubscriber(ctx, req);
    const { serial } = parseInput(SerialParams, req.params, 'params');
    if (!(await ctx.store.unbindDevice(serial, auth.accountId))) throw new CamvaultError('DEVICE_NOT_FOUND');
    req.log.info({ accountId: auth.accountId, serial }, 'device unbound');
    // a connected device is told (unbind command), then its MQTT credential is revoked and it is
    // disconnected; a broker that fails now keeps trying in the background (issue 7)
    if (ctx.deviceCommands) {
      try {
        await ctx.deviceCommands.unbind(serial);
      } catch (err) {
        req.log.warn({ serial, err: (err as Error).message }, 'MQTT revocation not confirmed yet; retrying in the background');
      }
    }
    await securityLog(ctx, req, 'device-unbound', { accountId: auth.accountId });
    return reply.code(204).send();
  });
}
