import type { FastifyInstance } from 'fastify';
import { ulid } from 'ulid';
import {
  LoginRequest,
  RegisterRequest,
  type AccountResponse,
  type LoginResponse,
  type RegisterResponse,
} from '../../shared/contracts/index.js';
import { CamvaultError } from '../../shared/errors.js';
import { hashPassword, verifyAgainstDummy, verifyPassword } from '../auth/passwords.js';
import { newSecretToken, sha256Hex } from '../auth/tokens.js';
import type { AppContext } from '../context.js';
import { requireSubscriber } from '../http/auth.js';
import { parseInput } from '../http/validate.js';
import type { AccountRow } from '../store/types.js';

export function accountJson(account: AccountRow): AccountResponse {
  return {
    accountId: account.id,
    email: account.email,
    plan: account.plan,
    createdAt: new Date(account.createdAt).toISOString(),
  };
}

/** Accounts and sessions: POST /v1/accounts, POST /v1/sessions, DELETE /v1/sessions/current, GET /v1/account. */
export async function accountRoutes(app: FastifyInstance, ctx: AppContext): Promise<void> {
  app.post('/v1/accounts', async (req, reply) => {
    const body = parseInput(RegisterRequest, req.body, 'body');
    const row: AccountRow = {
      id: ulid(ctx.clock.now()),
      email: body.email,
      passwordHash: await hashPassword(body.password),
      plan: null,
      createdAt: ctx.clock.now(),
    };
    // TODO(accounts issue): verification mail, and no answer that reveals a taken email
    if (!(await ctx.store.createAccount(row))) throw new CamvaultError('EMAIL_TAKEN');
    req.log.info({ accountId: row.id }, 'account created');
    const res: RegisterResponse = { accountId: row.id };
    return reply.code(201).send(res);
  });

  app.post('/v1/sessions', async (req) => {
    const body = parseInput(LoginRequest, req.body, 'body');
    const account = await ctx.store.getAccountByEmail(body.email);
    const ok = account
      ? await verifyPassword(body.password, account.passwordHash)
      : await verifyAgainstDummy(body.password);
    if (!account || !ok) throw new CamvaultError('INVALID_CREDENTIALS');
    const token = newSecretToken();
    const now = ctx.clock.now();
    const expiresAt = now + ctx.config.sessionTtlHours * 3600_000;
    await ctx.store.createSession({ tokenHash: sha256Hex(token), accountId: account.id, createdAt: now, expiresAt });
    req.log.info({ accountId: account.id }, 'session opened');
    const res: LoginResponse = { token, accountId: account.id, expiresAt: new Date(expiresAt).toISOString() };
    return res;
  });

  app.delete('/v1/sessions/current', async (req, reply) => {
    const auth = await requireSubscriber(ctx, req);
    await ctx.store.deleteSession(auth.tokenHash);
    return reply.code(204).send();
  });

  app.get('/v1/account', async (req) => {
    const auth = await requireSubscriber(ctx, req);
    const account = await ctx.store.getAccountById(auth.accountId);
    if (!account) throw new CamvaultError('UNAUTHENTICATED');
    return accountJson(account);
  });
}
