import { z } from 'zod';
import { AccountId, Timestamp } from './common.js';

export const Email = z.string().trim().toLowerCase().email().max(254);
export const Password = z.string().min(10, 'password must be at least 10 characters').max(256);

export const RegisterRequest = z.object({ email: Email, password: Password }).strict();
export type RegisterRequest = z.infer<typeof RegisterRequest>;
export const RegisterResponse = z.object({ accountId: AccountId });
export type RegisterResponse = z.infer<typeof RegisterResponse>;

export const LoginRequest = z.object({ email: Email, password: z.string().min(1).max(256) }).strict();
export type LoginRequest = z.infer<typeof LoginRequest>;
export const LoginResponse = z.object({ token: z.string(), accountId: AccountId, expiresAt: Timestamp });
export type LoginResponse = z.infer<typeof LoginResponse>;

export const PlanName = z.string().regex(/^[a-z][a-z0-9_-]{0,31}$/);
export const Plan = z.object({
  name: PlanName,
  retentionDays: z.number().int().positive(),
  cameras: z.number().int().positive(),
  storageBytes: z.number().int().positive(),
});
export type Plan = z.infer<typeof Plan>;
export const PlansResponse = z.object({ plans: z.array(Plan) });

export const SetPlanRequest = z.object({ plan: PlanName }).strict();
export type SetPlanRequest = z.infer<typeof SetPlanRequest>;

export const AccountResponse = z.object({
  accountId: AccountId,
  email: z.string(),
  plan: PlanName.nullable(),
  createdAt: Timestamp,
});
export type AccountResponse = z.infer<typeof AccountResponse>;
