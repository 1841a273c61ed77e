import type { FastifyInstance } from 'fastify';
import { ClaimRequest, type ClaimResponse } from '../../shared/contracts/index.js';
import { CamvaultError } from '../../shared/errors.js';
import { newSecretToken, sha256Hex } from '../auth/tokens.js';
import { planLimits, type AppContext } from '../context.js';
import { limitClaim } from '../http/rate-limit.js';
import { parseInput } from '../http/validate.js';

/**
 * POST /v1/device/claim: the camera trades a bind code its owner made for a
 * device token and MQTT credentials. The cloud keeps the serial and model and
 * nothing else about the hardware (P1).
 */
export async function deviceClaimRoutes(app: FastifyInstance, ctx: AppContext): Promise<void> {
  app.post('/v1/device/claim', async (req, reply) => {
    const body = parseInput(ClaimRequest, req.body, 'body');
    await limitClaim(ctx, req, reply, body.serial);
    const deviceToken = newSecretToken();
    const mqttPassword = newSecretToken();
    const outcome = await ctx.store.claimDevice({
      codeHash: sha256Hex(body.bindCode),
      serial: body.serial,
      model: body.model,
      tokenHash: sha256Hex(deviceToken),
      mqttPasswordHash: sha256Hex(mqttPassword),
      nowMs: ctx.clock.now(),
      cameraLimit: (plan) => planLimits(ctx, plan)?.cameras ?? null,
    });
    switch (outcome.status) {
      case 'code-invalid':
        throw new CamvaultError('BIND_CODE_INVALID');
      case 'bound-elsewhere':
        throw new CamvaultError('DEVICE_BOUND_ELSEWHERE');
      case 'camera-limit':
        throw new CamvaultError('CAMERA_LIMIT_REACHED');
      default:
        break;
    }
    req.log.info({ accountId: outcome.accountId, serial: body.serial, status: outcome.status }, 'device claimed');
    const res: ClaimResponse = {
      serial: body.serial,
      deviceToken,
      mqtt: { username: body.serial, password: mqttPassword },
    };
    return res;
  });
}
