import type { FastifyInstance } from 'fastify';
import { ClaimRequest, type ClaimResponse } from '../../shared/contracts/index.js';
import { CamvaultError } from '../../shared/errors.js';
import { newSecretToken, sha256Hex } from '../auth/tokens.js';
import { planLimits, type AppContext } from '../context.js';
import { limitClaim } from '../http/rate-limit.js';
import { parseInput } from '../http/validate.js';
import { experienceEvent } from '../experience.js';
import { securityLog } from '../security-log.js';

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
    await securityLog(ctx, req, 'device-bound', { accountId: outcome.accountId });
    await experienceEvent(ctx, req, outcome.accountId, 'device-bound');
    // the MQTT credential (issue 7): a broker that cannot take it now keeps trying in the background,
    // and the device retries its MQTT connection; the claim itself stands (its bind code is spent)
    if (ctx.broker) {
      try {
        await ctx.broker.provision(body.serial, mqttPassword);
      } catch (err) {
        req.log.warn({ serial: body.serial, err: (err as Error).message }, 'MQTT credential not provisioned yet; retrying in the background');
      }
    }
    const res: ClaimResponse = {
      serial: body.serial,
      deviceToken,
      mqtt: { username: body.serial, password: mqttPassword, ...(ctx.broker ? { url: ctx.broker.publicUrl } : {}) },
    };
    return res;
  });
}
