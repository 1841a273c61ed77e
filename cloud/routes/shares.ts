import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import {
  AccountId,
  Serial,
  ShareRequest,
  type Share,
  type ShareResponse,
  type SharesResponse,
} from '../../shared/contracts/index.js';
import { CamvaultError } from '../../shared/errors.js';
import type { AppContext } from '../context.js';
import { ownDevice } from '../http/access.js';
import { requireSubscriber } from '../http/auth.js';
import { parseInput } from '../http/validate.js';
import { securityLog } from '../security-log.js';
import type { ShareRow } from '../store/types.js';

const SerialParams = z.object({ serial: Serial }).strict();
const ShareParams = z.object({ serial: Serial, accountId: AccountId }).strict();

function shareJson(row: ShareRow): Share {
  return {
    serial: row.serial,
    accountId: row.granteeAccountId,
    role: row.role,
    createdAt: new Date(row.createdAt).toISOString(),
  };
}

/**
 * Sharing a device (P2: "those it authorized"). The owner grants another
 * account, named by its account id, the role viewer or manager; granting again
 * changes the role. The owner lists and revokes shares; a grantee may also
 * give up its own share. A revoked share stops working on the next request:
 * every clip route reads the share from the store, nothing is cached. Every
 * other caller gets 404 DEVICE_NOT_FOUND, as for a device that does not exist.
 */
export async function shareRoutes(app: FastifyInstance, ctx: AppContext): Promise<void> {
  app.post('/v1/devices/:serial/shares', async (req, reply) => {
    const auth = await requireSubscriber(ctx, req);
    const { serial } = parseInput(SerialParams, req.params, 'params');
    const body = parseInput(ShareRequest, req.body, 'body');
    await ownDevice(ctx, auth.accountId, serial);
    if (body.accountId === auth.accountId) throw new CamvaultError('SHARE_WITH_OWNER');
    const outcome = await ctx.store.putShare({
      serial,
      granteeAccountId: body.accountId,
      role: body.role,
      grantedBy: auth.accountId,
      createdAt: ctx.clock.now(),
    });
    switch (outcome.status) {
      case 'device-not-found':
        // unbound between the check above and the write
        throw new CamvaultError('DEVICE_NOT_FOUND');
      case 'grantee-not-found':
        throw new CamvaultError('GRANTEE_NOT_FOUND');
      default:
        break;
    }
    req.log.info(
      { accountId: auth.accountId, serial, grantee: body.accountId, role: body.role, status: outcome.status },
      'device shared',
    );
    await securityLog(ctx, req, 'share-granted', { accountId: auth.accountId });
    const res: ShareResponse = { share: shareJson(outcome.share) };
    return reply.code(outcome.status === 'created' ? 201 : 200).send(res);
  });

  app.get('/v1/devices/:serial/shares', async (req) => {
    const auth = await requireSubscriber(ctx, req);
    const { serial } = parseInput(SerialParams, req.params, 'params');
    await ownDevice(ctx, auth.accountId, serial);
    const res: SharesResponse = { shares: (await ctx.store.listDeviceShares(serial)).map(shareJson) };
    return res;
  });

  /** the owner revokes a share, or a grantee gives up its own */
  app.delete('/v1/devices/:serial/shares/:accountId', async (req, reply) => {
    const auth = await requireSubscriber(ctx, req);
    const { serial, accountId } = parseInput(ShareParams, req.params, 'params');
    const mine = accountId === auth.accountId ? await ctx.store.getShare(serial, accountId) : null;
    // once its share is gone, a former grantee is a stranger here: DEVICE_NOT_FOUND
    if (!mine) await ownDevice(ctx, auth.accountId, serial);
    if (!(await ctx.store.deleteShare(serial, accountId))) throw new CamvaultError('SHARE_NOT_FOUND');
    req.log.info({ accountId: auth.accountId, serial, grantee: accountId }, 'share revoked');
    await securityLog(ctx, req, 'share-revoked', { accountId: auth.accountId });
    return reply.code(204).send();
  });
}
