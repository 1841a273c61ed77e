import { randomInt } from 'node:crypto';
import type { EmailCodePurpose } from '../store/types.js';
import { sha256Hex } from './tokens.js';

/**
 * Codes mailed to verify an address or reset a password: 8 random digits
 * (10^8), easy to type from a phone. Guessing is bounded by the code itself,
 * not by its length: a code lives emailCodeTtlMinutes, survives
 * emailCodeMaxAttempts wrong tries, is single use, and a new one can be asked
 * for only mailPerEmail times an hour, so an attacker gets a few dozen tries
 * an hour at one in 10^8 each.
 */
export function newEmailCode(): string {
  return String(randomInt(0, 100_000_000)).padStart(8, '0');
}

/**
 * The store key of an address: its SHA-256, never the address, so code rows
 * made for addresses that have no account hold nothing readable.
 */
export function emailHash(normalisedEmail: string): string {
  return sha256Hex(`email\n${normalisedEmail}`);
}

/**
 * A code's stored hash, bound to its address and purpose: the same digits
 * sent to two addresses, or for two purposes, hash differently. A plain hash
 * of 8 digits is no protection against someone holding the database; what
 * protects a code is that it is short-lived and single use.
 */
export function emailCodeHash(addressHash: string, purpose: EmailCodePurpose, code: string): string {
  return sha256Hex(`${purpose}\n${addressHash}\n${code}`);
}
