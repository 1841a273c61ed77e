import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ulid } from 'ulid';
import {
  ChangePasswordRequest,
  LoginRequest,
  PasswordResetConfirmRequest,
  PasswordResetRequest,
  RegisterRequest,
  VerifyEmailRequest,
  type AccountDetailsResponse,
  type AccountResponse,
  type LoginResponse,
  type PasswordResetConfirmResponse,
  type PasswordResetResponse,
  type RegisterResponse,
  type VerifyEmailResponse,
} from '../../shared/contracts/index.js';
import { CamvaultError } from '../../shared/errors.js';
import { emailCodeHash, emailHash, newEmailCode } from '../auth/email-codes.js';
import { hashPassword, verifyAgainstDummy, verifyPassword } from '../auth/passwords.js';
import { newSecretToken, sha256Hex } from '../auth/tokens.js';
import type { AppContext } from '../context.js';
import { experienceEvent } from '../experience.js';
import { securityLog } from '../security-log.js';
import { requireSubscriber } from '../http/auth.js';
import { enforceRateLimits } from '../http/rate-limit.js';
import { parseInput } from '../http/validate.js';
import { alreadyRegisteredMail, passwordResetMail, sendInBackground, verificationMail } from '../mail/index.js';
import type { AccountRow, EmailCodePurpose, EmailCodeRow } from '../store/types.js';

export function accountJson(account: AccountRow): AccountResponse {
  return {
    accountId: account.id,
    email: account.email,
    plan: account.plan,
    planLapsedAt: account.planLapsedAt != null ? new Date(account.planLapsedAt).toISOString() : null,
    createdAt: new Date(account.createdAt).toISOString(),
  };
}

const REGISTERED: RegisterResponse = { status: 'verification_sent' };
const RESET_SENT: PasswordResetResponse = { status: 'reset_sent' };

/**
 * Accounts and sessions (DESIGN.md, "API sketch"):
 *   POST   /v1/accounts                         register (202, a code is mailed)
 *   POST   /v1/accounts/verify                  {email, code}
 *   POST   /v1/accounts/password-reset          {email} (202, a code is mailed)
 *   POST   /v1/accounts/password-reset/confirm  {email, code, newPassword}; every session ends
 *   POST   /v1/sessions                         log in
 *   DELETE /v1/sessions/current                 log out
 *   GET    /v1/account
 *   PATCH  /v1/account                          {currentPassword, newPassword}; every other session ends
 *
 * No enumeration: register, password reset and login answer byte for byte
 * the same whether or not the email has an account, and do the same work
 * before they answer (the same scrypt, the same store writes, the same rate
 * limit counters); mail goes out after the answer (sendInBackground), so the
 * relay's latency does not show. bench/accounts measures the times.
 */
export async function accountRoutes(app: FastifyInstance, ctx: AppContext): Promise<void> {
  const limits = ctx.config.rateLimits;
  const codeTtlMs = ctx.config.emailCodeTtlMinutes * 60_000;

  const mailLimits = (req: FastifyRequest, reply: FastifyReply, email: string): Promise<void> =>
    enforceRateLimits(ctx, reply, [
      { scope: 'mail-ip', subject: req.ip, limit: limits.mailPerIp },
      { scope: 'mail-email', subject: email, limit: limits.mailPerEmail },
    ]);
  const codeLimits = (req: FastifyRequest, reply: FastifyReply): Promise<void> =>
    enforceRateLimits(ctx, reply, [{ scope: 'code-ip', subject: req.ip, limit: limits.codePerIp }]);

  function codeRow(email: string, purpose: EmailCodePurpose, code: string, now: number): EmailCodeRow {
    const hash = emailHash(email);
    return { emailHash: hash, purpose, codeHash: emailCodeHash(hash, purpose, code), createdAt: now, expiresAt: now + codeTtlMs };
  }

  /** true when `code` is the live code of this address and purpose; it is then spent */
  function useCode(email: string, purpose: EmailCodePurpose, code: string): Promise<boolean> {
    const hash = emailHash(email);
    return ctx.store.useEmailCode(hash, purpose, emailCodeHash(hash, purpose, code), ctx.clock.now(), ctx.config.emailCodeMaxAttempts);
  }

  app.post('/v1/accounts', async (req, reply) => {
    const body = parseInput(RegisterRequest, req.body, 'body');
    await mailLimits(req, reply, body.email);
    // hashed whether or not the email is taken: the same work either way
    const passwordHash = await hashPassword(body.password);
    const now = ctx.clock.now();
    const code = newEmailCode();
    const outcome = await ctx.store.registerAccount(
      { id: ulid(now), email: body.email, passwordHash, plan: null, createdAt: now },
      codeRow(body.email, 'verify', code, now),
    );
    // A verified address's owner gets a notice, not a code: the code stored
    // for it is never mailed, and verifying an address twice changes nothing.
    const mail =
      outcome.status === 'verified'
        ? alreadyRegisteredMail(body.email)
        : verificationMail(body.email, code, ctx.config.emailCodeTtlMinutes);
    sendInBackground(ctx.mailer, mail, req.log);
    if (outcome.status === 'created') req.log.info({ accountId: outcome.accountId }, 'account created');
    return reply.code(202).send(REGISTERED);
  });

  app.post('/v1/accounts/verify', async (req, reply) => {
    const body = parseInput(VerifyEmailRequest, req.body, 'body');
    await codeLimits(req, reply);
    const account = (await useCode(body.email, 'verify', body.code)) ? await ctx.store.getAccountByEmail(body.email) : null;
    if (!account) throw new CamvaultError('CODE_INVALID');
    if (await ctx.store.markEmailVerified(account.id, ctx.clock.now())) req.log.info({ accountId: account.id }, 'email verified');
    const res: VerifyEmailResponse = { status: 'verified' };
    return res;
  });

  app.post('/v1/accounts/password-reset', async (req, reply) => {
    const body = parseInput(PasswordResetRequest, req.body, 'body');
    await mailLimits(req, reply, body.email);
    const now = ctx.clock.now();
    const code = newEmailCode();
    // stored for an unknown address too (it is never mailed, and expires):
    // the same write whether or not the account exists
    await ctx.store.putEmailCode(codeRow(body.email, 'reset', code, now));
    const account = await ctx.store.getAccountByEmail(body.email);
    if (account) sendInBackground(ctx.mailer, passwordResetMail(body.email, code, ctx.config.emailCodeTtlMinutes), req.log);
    return reply.code(202).send(RESET_SENT);
  });

  app.post('/v1/accounts/password-reset/confirm', async (req, reply) => {
    const body = parseInput(PasswordResetConfirmRequest, req.body, 'body');
    await codeLimits(req, reply);
    // hashed before the code is checked: a wrong code takes as long as a right one
    const passwordHash = await hashPassword(body.newPassword);
    const account = (await useCode(body.email, 'reset', body.code)) ? await ctx.store.getAccountByEmail(body.email) : null;
    if (!account) throw new CamvaultError('CODE_INVALID');
    const ended = await ctx.store.changePassword(account.id, passwordHash, null);
    // the code reached the mailbox: the address is proven too
    await ctx.store.markEmailVerified(account.id, ctx.clock.now());
    req.log.info({ accountId: account.id, sessionsEnded: ended }, 'password reset');
    await securityLog(ctx, req, 'password-reset', { accountId: account.id });
    const res: PasswordResetConfirmResponse = { status: 'password_reset' };
    return res;
  });

  app.post('/v1/sessions', async (req, reply) => {
    const body = parseInput(LoginRequest, req.body, 'body');
    // counted by the email as typed, known or not: the limiter answers alike for both
    await enforceRateLimits(ctx, reply, [
      { scope: 'login-ip', subject: req.ip, limit: limits.loginPerIp },
      { scope: 'login-account', subject: body.email, limit: limits.loginPerAccount },
    ]);
    const account = await ctx.store.getAccountByEmail(body.email);
    const ok = account
      ? await verifyPassword(body.password, account.passwordHash)
      : await verifyAgainstDummy(body.password);
    if (!account || !ok) {
      // the same write for a known and an unknown address; an unknown one keeps no trace of the address typed
      await securityLog(ctx, req, 'sign-in-failed', { accountId: account?.id ?? null });
      throw new CamvaultError('INVALID_CREDENTIALS');
    }
    // only after the right password, like EMAIL_NOT_VERIFIED
    if (account.cancelledAt != null) throw new CamvaultError('ACCOUNT_CANCELLED');
    // only after the right password: the caller who registered it may learn it awaits verification
    if (account.emailVerifiedAt == null) throw new CamvaultError('EMAIL_NOT_VERIFIED');
    const token = newSecretToken();
    const now = ctx.clock.now();
    const expiresAt = now + ctx.config.sessionTtlHours * 3600_000;
    await ctx.store.createSession({ tokenHash: sha256Hex(token), accountId: account.id, createdAt: now, expiresAt });
    req.log.info({ accountId: account.id }, 'session opened');
    await securityLog(ctx, req, 'sign-in', { accountId: account.id });
    await experienceEvent(ctx, req, account.id, 'sign-in');
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
    // the account's own clips as the API shows them: expired ones are gone already (P3)
    const clips = await ctx.store.clipSummary(account.id, ctx.clock.now());
    const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());
    const res: AccountDetailsResponse = {
      ...accountJson(account),
      oldestClipAt: iso(clips.oldestStartMs),
      nextExpiryAt: iso(clips.nextExpiresAt),
    };
    return res;
  });

  app.patch('/v1/account', async (req, reply) => {
    const auth = await requireSubscriber(ctx, req);
    const body = parseInput(ChangePasswordRequest, req.body, 'body');
    const account = await ctx.store.getAccountById(auth.accountId);
    if (!account) throw new CamvaultError('UNAUTHENTICATED');
    // a stolen session must not become a way to guess the password: the login limit applies
    await enforceRateLimits(ctx, reply, [{ scope: 'login-account', subject: account.email, limit: limits.loginPerAccount }]);
    if (!(await verifyPassword(body.currentPassword, account.passwordHash))) throw new CamvaultError('CURRENT_PASSWORD_WRONG');
    const ended = await ctx.store.changePassword(account.id, await hashPassword(body.newPassword), auth.tokenHash);
    req.log.info({ accountId: account.id, sessionsEnded: ended }, 'password changed');
    await securityLog(ctx, req, 'password-changed', { accountId: account.id });
    return accountJson(account);
  });
}
