import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import {
  CancelAccountRequest,
  ConsentsRequest,
  type AccountExport,
  type CancelAccountResponse,
  type Consent,
  type ConsentsResponse,
} from '../../shared/contracts/account-rights.js';
import { CamvaultError } from '../../shared/errors.js';
import { beginCancellation, CancellationRunners } from '../account-cancel.js';
import { verifyPassword } from '../auth/passwords.js';
import type { AppContext } from '../context.js';
import { requireSubscriber } from '../http/auth.js';
import { enforceRateLimits } from '../http/rate-limit.js';
import { parseInput } from '../http/validate.js';
import { readableEntry, securityLog } from '../security-log.js';
import type { ClipFilter, ConsentPurpose, ConsentRow } from '../store/types.js';
import { clipJson } from './clip-json.js';

/** clips read per page while an export streams */
const EXPORT_PAGE = 1000;

const iso = (ms: number): string => new Date(ms).toISOString();
const isoOrNull = (ms: number | null | undefined): string | null => (ms == null ? null : iso(ms));

function consentsJson(rows: ConsentRow[]): ConsentsResponse {
  const one = (purpose: ConsentPurpose): Consent => {
    const row = rows.find((r) => r.purpose === purpose);
    return row ? { granted: row.granted, updatedAt: iso(row.updatedAt) } : { granted: false, updatedAt: null };
  };
  return { experience: one('experience'), marketing: one('marketing') };
}

/**
 * The account holder's rights (DESIGN P7, P8, P9; issue 6):
 *   DELETE /v1/account           {password}: cancel; 202, erased in the background (cloud/account-cancel.ts)
 *   GET    /v1/account/export    a copy of the account's personal data, as JSON (streamed)
 *   GET    /v1/account/consents  the experience program and marketing consents (both off until given)
 *   PUT    /v1/account/consents  {experience?, marketing?}
 *
 * Cancellations this node started, and at start-up every unfinished one,
 * run in the background here; the job "account-cancellations" (server.ts)
 * picks up what a node that died left.
 */
export async function accountRightsRoutes(app: FastifyInstance, ctx: AppContext): Promise<void> {
  const runners = new CancellationRunners(ctx, app.log);
  app.addHook('onReady', async () => {
    // in the background: a start-up must not wait for an erase
    void runners.resumeAll().then(
      (n) => {
        if (n > 0) app.log.info({ cancellations: n }, 'resuming unfinished account cancellations');
      },
      (err: unknown) => app.log.error({ err: (err as Error).message }, 'unfinished account cancellations not resumed'),
    );
  });
  // before the stores close: a runner ends the step in hand; the rest resumes at the next start or job pass
  app.addHook('preClose', async () => {
    await runners.close();
  });

  /**
   * The password again: a session alone (a stolen token, a shared device)
   * must not erase an account. Counted against the login limit, so a stolen
   * session cannot guess the password here either.
   */
  app.delete('/v1/account', async (req, reply) => {
    const auth = await requireSubscriber(ctx, req);
    const body = parseInput(CancelAccountRequest, req.body, 'body');
    const account = await ctx.store.getAccountById(auth.accountId);
    if (!account) throw new CamvaultError('UNAUTHENTICATED');
    await enforceRateLimits(ctx, reply, [{ scope: 'login-account', subject: account.email, limit: ctx.config.rateLimits.loginPerAccount }]);
    if (!(await verifyPassword(body.password, account.passwordHash))) throw new CamvaultError('CURRENT_PASSWORD_WRONG');
    const now = ctx.clock.now();
    const outcome = await beginCancellation(ctx, account.id, now);
    // a second DELETE that raced the first
    if (outcome === 'already-cancelled') throw new CamvaultError('ACCOUNT_CANCELLED');
    if (outcome === 'not-found') throw new CamvaultError('UNAUTHENTICATED');
    req.log.info({ accountId: account.id }, 'account cancellation started');
    runners.start(account.id);
    const res: CancelAccountResponse = { status: 'cancelling', cancelledAt: iso(now) };
    return reply.code(202).send(res);
  });

  app.get('/v1/account/consents', async (req) => {
    const auth = await requireSubscriber(ctx, req);
    return consentsJson(await ctx.store.getConsents(auth.accountId));
  });

  app.put('/v1/account/consents', async (req) => {
    const auth = await requireSubscriber(ctx, req);
    const body = parseInput(ConsentsRequest, req.body, 'body');
    const changes: { purpose: ConsentPurpose; granted: boolean }[] = [];
    if (body.experience !== undefined) changes.push({ purpose: 'experience', granted: body.experience });
    if (body.marketing !== undefined) changes.push({ purpose: 'marketing', granted: body.marketing });
    const rows = await ctx.store.setConsents(auth.accountId, changes, ctx.clock.now());
    req.log.info({ accountId: auth.accountId, experience: body.experience, marketing: body.marketing }, 'consents changed');
    return consentsJson(rows);
  });

  /**
   * Everything but the clip index is read first (it is small: 30 days of
   * security log, a few devices and shares); the clips follow a page at a
   * time from the same keyset walk GET /v1/clips uses, so an account of a
   * million clips never sits in memory. An error mid-stream cuts the
   * connection: the client sees a truncated document, never a wrong one.
   */
  app.get('/v1/account/export', async (req, reply) => {
    const auth = await requireSubscriber(ctx, req);
    const accountId = auth.accountId;
    await securityLog(ctx, req, 'data-exported', { accountId });
    const account = await ctx.store.getAccountById(accountId);
    if (!account) throw new CamvaultError('UNAUTHENTICATED');
    const now = ctx.clock.now();
    const [consents, own, shared, log, experience] = await Promise.all([
      ctx.store.getConsents(accountId),
      ctx.store.listDevices(accountId),
      ctx.store.listSharedDevices(accountId),
      ctx.store.listSecurityLog(accountId),
      ctx.store.listExperienceEvents(accountId),
    ]);
    const granted = (await Promise.all(own.map((d) => ctx.store.listDeviceShares(d.serial)))).flat();
    const head: Omit<AccountExport, 'clips'> = {
      exportedAt: iso(now),
      profile: {
        accountId: account.id,
        email: account.email,
        emailVerifiedAt: isoOrNull(account.emailVerifiedAt),
        plan: account.plan,
        planLapsedAt: isoOrNull(account.planLapsedAt),
        createdAt: iso(account.createdAt),
      },
      consents: consentsJson(consents),
      devices: own.map((d) => ({ serial: d.serial, model: d.model, boundAt: iso(d.boundAt) })),
      sharedWithMe: shared.map(({ device, share }) => ({ serial: device.serial, model: device.model, role: share.role, sharedAt: iso(share.createdAt) })),
      shares: granted.map((s) => ({ serial: s.serial, accountId: s.granteeAccountId, role: s.role, createdAt: iso(s.createdAt) })),
      securityLog: log.map((row) => {
        const e = readableEntry(ctx.securityLogKey, row);
        return { event: e.event, at: iso(e.at), ip: e.ip };
      }),
      experienceEvents: experience.map((e) => ({ event: e.event, at: iso(e.at) })),
    };

    async function* body(): AsyncGenerator<Buffer> {
      const text = JSON.stringify(head);
      yield Buffer.from(`${text.slice(0, -1)},"clips":[`);
      const filter: ClipFilter = { accountId, visibleAt: now, limit: EXPORT_PAGE };
      let first = true;
      for (;;) {
        const page = await ctx.store.listClips(filter);
        if (page.length > 0) {
          yield Buffer.from((first ? '' : ',') + page.map((c) => JSON.stringify(clipJson(c))).join(','));
          first = false;
        }
        const last = page[page.length - 1];
        if (page.length < EXPORT_PAGE || !last) break;
        filter.after = { startMs: last.startMs, id: last.id };
      }
      yield Buffer.from(']}');
    }

    req.log.info({ accountId }, 'account data exported');
    return reply
      .type('application/json; charset=utf-8')
      .header('content-disposition', `attachment; filename="camvault-export-${iso(now).slice(0, 10)}.json"`)
      .send(Readable.from(body(), { objectMode: false }));
  });
}
