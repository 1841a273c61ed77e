import type { MailMessage } from './types.js';

/**
 * The cloud's mails, in plain text. The code stands alone on its own line so
 * a person can copy it and a test or the demo can find it (extractCode).
 */

export function verificationMail(to: string, code: string, ttlMinutes: number): MailMessage {
  return {
    to,
    subject: 'camvault: your verification code',
    text: [
      'Welcome to camvault.',
      '',
      'Your verification code:',
      '',
      `    ${code}`,
      '',
      `It is valid for ${ttlMinutes} minutes. If you did not sign up, ignore this mail: no account is made without the code.`,
    ].join('\n'),
  };
}

/** Sent instead of a code when someone registers an address that already has an account. */
export function alreadyRegisteredMail(to: string): MailMessage {
  return {
    to,
    subject: 'camvault: someone tried to sign up with your address',
    text: [
      'Someone (perhaps you) tried to create a camvault account with this address,',
      'which already has one. Nothing was changed.',
      '',
      'If it was you, log in, or reset your password if you forgot it.',
      'If it was not you, you need not do anything.',
    ].join('\n'),
  };
}

export function passwordResetMail(to: string, code: string, ttlMinutes: number): MailMessage {
  return {
    to,
    subject: 'camvault: your password reset code',
    text: [
      'Someone (perhaps you) asked to reset the password of your camvault account.',
      '',
      'Your reset code:',
      '',
      `    ${code}`,
      '',
      `It is valid for ${ttlMinutes} minutes. Resetting the password logs out every device and browser.`,
      'If you did not ask for it, ignore this mail: your password stays as it is.',
    ].join('\n'),
  };
}

/** The code in one of the mails above, or null. */
export function extractCode(text: string): string | null {
  return /^ {4}(\d{8})$/m.exec(text)?.[1] ?? null;
}
