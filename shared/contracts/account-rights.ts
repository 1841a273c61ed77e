/**
 * The account holder's rights (DESIGN P7, P8, P9; issue 6): cancellation,
 * a copy of the account's data, and the consents.
 */
import { z } from 'zod';
import { AccountId, Serial, Timestamp } from './common.js';
import { Clip } from './clips.js';
import { ShareRole } from './devices.js';

/** DELETE /v1/account: the password, entered again (a session alone cannot cancel an account). */
export const CancelAccountRequest = z.object({ password: z.string().min(1).max(256) }).strict();
export type CancelAccountRequest = z.infer<typeof CancelAccountRequest>;

/**
 * 202: the cancellation is under way. From this answer on, the account's
 * sessions, its devices and a login to it are answered 410 ACCOUNT_CANCELLED;
 * its clips, devices' bindings, tokens and personal data are erased in the
 * background, and a crash resumes where it stopped.
 */
export const CancelAccountResponse = z
  .object({ status: z.literal('cancelling'), cancelledAt: Timestamp })
  .strict();
export type CancelAccountResponse = z.infer<typeof CancelAccountResponse>;

export const ConsentPurpose = z.enum(['experience', 'marketing']);
export type ConsentPurpose = z.infer<typeof ConsentPurpose>;

/** One consent: off until given; updatedAt is when it was last given or withdrawn (null: never set). */
export const Consent = z.object({ granted: z.boolean(), updatedAt: Timestamp.nullable() }).strict();
export type Consent = z.infer<typeof Consent>;

export const ConsentsResponse = z.object({ experience: Consent, marketing: Consent }).strict();
export type ConsentsResponse = z.infer<typeof ConsentsResponse>;

/**
 * PUT /v1/account/consents: the consents to change, one or both (a consent
 * left out stays as it is). Withdrawing `experience` stops collection at
 * once and deletes what was collected; `marketing` is recorded with its time
 * (nothing sends marketing).
 */
export const ConsentsRequest = z.object({ experience: z.boolean().optional(), marketing: z.boolean().optional() }).strict();
export type ConsentsRequest = z.infer<typeof ConsentsRequest>;

/** What the security log records (DESIGN P8). */
export const SecurityEvent = z.enum([
  'sign-in',
  'sign-in-failed',
  'password-changed',
  'password-reset',
  'device-bound',
  'device-unbound',
  'share-granted',
  'share-revoked',
  'clips-deleted',
  'data-exported',
]);
export type SecurityEvent = z.infer<typeof SecurityEvent>;

/** What the experience program collects, only while its consent is given (DESIGN P7). */
export const ExperienceEvent = z.enum(['sign-in', 'clip-viewed', 'device-bound']);
export type ExperienceEvent = z.infer<typeof ExperienceEvent>;

/**
 * GET /v1/account/export: a copy of the account's personal data. The clip
 * index comes last and is streamed, so an account of a million clips costs
 * the server a page of them at a time.
 */
export const AccountExport = z
  .object({
    exportedAt: Timestamp,
    profile: z
      .object({
        accountId: AccountId,
        email: z.string(),
        emailVerifiedAt: Timestamp.nullable(),
        plan: z.string().nullable(),
        planLapsedAt: Timestamp.nullable(),
        createdAt: Timestamp,
      })
      .strict(),
    consents: ConsentsResponse,
    /** the account's own cameras */
    devices: z.array(z.object({ serial: Serial, model: z.string(), boundAt: Timestamp }).strict()),
    /** cameras other accounts share with this one */
    sharedWithMe: z.array(z.object({ serial: Serial, model: z.string(), role: ShareRole, sharedAt: Timestamp }).strict()),
    /** the shares this account granted on its cameras */
    shares: z.array(z.object({ serial: Serial, accountId: AccountId, role: ShareRole, createdAt: Timestamp }).strict()),
    /** the last 30 days; ip is null when this node's key cannot read the entry */
    securityLog: z.array(z.object({ event: z.string(), at: Timestamp, ip: z.string().nullable() }).strict()),
    experienceEvents: z.array(z.object({ event: z.string(), at: Timestamp }).strict()),
    /** every clip still kept, newest first */
    clips: z.array(Clip),
  })
  .strict();
export type AccountExport = z.infer<typeof AccountExport>;
