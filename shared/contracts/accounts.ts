import { z } from 'zod';
import { AccountId, Timestamp } from './common.js';

export const Email = z.string().trim().toLowerCase().email().max(254);
export const Password = z.string().min(10, 'password must be at least 10 characters').max(256);
/** A code mailed to verify an address or reset a password: 8 digits. */
export const EmailCode = z
  .string()
  .trim()
  .regex(/^\d{8}$/, 'the code is 8 digits');

export const RegisterRequest = z.object({ email: Email, password: Password }).strict();
export type RegisterRequest = z.infer<typeof RegisterRequest>;
/**
 * POST /v1/accounts answers 202 with this body whatever the email: a new
 * address gets a verification code, a taken one a notice to its owner. The
 * answer never tells the caller which.
 */
export const RegisterResponse = z.object({ status: z.literal('verification_sent') }).strict();
export type RegisterResponse = z.infer<typeof RegisterResponse>;

export const VerifyEmailRequest = z.object({ email: Email, code: EmailCode }).strict();
export type VerifyEmailRequest = z.infer<typeof VerifyEmailRequest>;
export const VerifyEmailResponse = z.object({ status: z.literal('verified') }).strict();
export type VerifyEmailResponse = z.infer<typeof VerifyEmailResponse>;

export const LoginRequest = z.object({ email: Email, password: z.string().min(1).max(256) }).strict();
export type LoginRequest = z.infer<typeof LoginRequest>;
export const LoginResponse = z.object({ token: z.string(), accountId: AccountId, expiresAt: Timestamp });
export type LoginResponse = z.infer<typeof LoginResponse>;

/** PATCH /v1/account: a new password; every other session of the account ends. */
export const ChangePasswordRequest = z
  .object({ currentPassword: z.string().min(1).max(256), newPassword: Password })
  .strict();
export type ChangePasswordRequest = z.infer<typeof ChangePasswordRequest>;

/** POST /v1/accounts/password-reset: answered 202 alike whether or not the email has an account. */
export const PasswordResetRequest = z.object({ email: Email }).strict();
export type PasswordResetRequest = z.infer<typeof PasswordResetRequest>;
export const PasswordResetResponse = z.object({ status: z.literal('reset_sent') }).strict();
export type PasswordResetResponse = z.infer<typeof PasswordResetResponse>;

/** POST /v1/accounts/password-reset/confirm: the mailed code and the new password; every session ends. */
export const PasswordResetConfirmRequest = z.object({ email: Email, code: EmailCode, newPassword: Password }).strict();
export type PasswordResetConfirmRequest = z.infer<typeof PasswordResetConfirmRequest>;
export const PasswordResetConfirmResponse = z.object({ status: z.literal('password_reset') }).strict();
export type PasswordResetConfirmResponse = z.infer<typeof PasswordResetConfirmResponse>;

export const PlanName = z.string().regex(/^[a-z][a-z0-9_-]{0,31}$/);
export const Plan = z.object({
  name: PlanName,
  retentionDays: z.number().int().positive(),
  cameras: z.number().int().positive(),
  storageBytes: z.number().int().positive(),
});
export type Plan = z.infer<typeof Plan>;
export const PlansResponse = z.object({ plans: z.array(Plan) });

/** PUT /v1/account/plan chooses or changes the plan; DELETE /v1/account/plan lets it lapse. */
export const SetPlanRequest = z.object({ plan: PlanName }).strict();
export type SetPlanRequest = z.infer<typeof SetPlanRequest>;

export const AccountResponse = z.object({
  accountId: AccountId,
  email: z.string(),
  plan: PlanName.nullable(),
  /**
   * when the last plan lapsed (null while a plan is active, or if none was
   * ever chosen); clips expire at the latest planGraceDays after it
   */
  planLapsedAt: Timestamp.nullable(),
  createdAt: Timestamp,
});
export type AccountResponse = z.infer<typeof AccountResponse>;

/**
 * GET /v1/account: the account, and where its footage stands against retention
 * (P3). Only clips still visible count: an expired clip is gone for the API at
 * once, whether or not the retention job has deleted it yet.
 */
export const AccountDetailsResponse = AccountResponse.extend({
  /** the start of the oldest clip kept; null when there is none */
  oldestClipAt: Timestamp.nullable(),
  /** when the next clip expires and is deleted; null when there is none */
  nextExpiryAt: Timestamp.nullable(),
});
export type AccountDetailsResponse = z.infer<typeof AccountDetailsResponse>;
