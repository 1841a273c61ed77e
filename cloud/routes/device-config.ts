/**
 * GET /v1/device/config (DESIGN.md, "API sketch"): what a bound device needs
 * besides its credentials, today where its MQTT broker is. A device asks at
 * start and whenever it cannot reach the broker it knew (the cloud may have
 * moved from the embedded broker to an external one).
 */
import type { FastifyInstance } from 'fastify';
import type { DeviceConfigResponse } from '../../shared/contracts/devices.js';
import { CamvaultError } from '../../shared/errors.js';
import type { AppContext } from '../context.js';
import { requireDevice } from '../http/auth.js';

export async function deviceConfigRoutes(app: FastifyInstance, ctx: AppContext): Promise<void> {
  app.get('/v1/device/config', async (req) => {
    const device = await requireDevice(ctx, req);
    if (!ctx.broker) throw new CamvaultError('BROKER_UNAVAILABLE');
    const res: DeviceConfigResponse = { serial: device.serial, mqtt: { url: ctx.broker.publicUrl, username: device.serial } };
    return res;
  });
}
