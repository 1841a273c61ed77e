/**
 * Who may do what with a device and its clips (privacy promise P2: only the
 * account and those it authorized can view, download or delete its clips).
 * Every subscriber route on a device or a clip asks here; nothing is decided
 * on the client.
 *
 * - The owner of a clip (the account its row belongs to) may do everything.
 * - A share of a device covers the clips of that serial that belong to the
 *   account that granted it, while the device is still bound to that account:
 *   a viewer lists, views and downloads them; a manager also deletes them.
 * - Anyone else is told the clip does not exist (404 CLIP_NOT_FOUND, the same
 *   answer, word for word, as for an id that never existed), so no route is an
 *   oracle for another account's clips. A viewer's delete answers the same:
 *   as far as deleting goes, the clip is not there for them.
 * - Owner-only device routes (unbind, shares) answer 404 DEVICE_NOT_FOUND to
 *   everyone but the owner, grantees included.
 */
import { CamvaultError } from '../../shared/errors.js';
import type { AppContext } from '../context.js';
import type { ClipRow, DeviceRow, ShareRow } from '../store/types.js';

export type ClipAccess = 'owner' | 'viewer' | 'manager';

/** What `accountId` may do with a clip it can see; null when the clip is not its business. */
export function clipAccess(clip: ClipRow, accountId: string, share: ShareRow | null): ClipAccess | null {
  if (clip.accountId === accountId) return 'owner';
  if (share && share.granteeAccountId === accountId && share.serial === clip.serial && share.grantedBy === clip.accountId) {
    return share.role;
  }
  return null;
}

export function mayDelete(access: ClipAccess | null): boolean {
  return access === 'owner' || access === 'manager';
}

/**
 * Answers "which share does this account hold on this serial", once per
 * serial: a bulk delete of many clips of one camera asks the store once.
 */
export function shareLookup(ctx: AppContext, accountId: string): (serial: string) => Promise<ShareRow | null> {
  const cache = new Map<string, Promise<ShareRow | null>>();
  return (serial) => {
    let found = cache.get(serial);
    if (!found) {
      found = ctx.store.getShare(serial, accountId);
      cache.set(serial, found);
    }
    return found;
  };
}

/** The visible clip (not expired, P3) and what the caller may do with it; null for "no such clip". */
export async function accessibleClip(
  ctx: AppContext,
  accountId: string,
  id: string,
  shareOf: (serial: string) => Promise<ShareRow | null> = shareLookup(ctx, accountId),
): Promise<{ clip: ClipRow; access: ClipAccess } | null> {
  const clip = await ctx.store.getClip(id);
  if (!clip || clip.expiresAt <= ctx.clock.now()) return null;
  if (clip.accountId === accountId) return { clip, access: 'owner' };
  const access = clipAccess(clip, accountId, await shareOf(clip.serial));
  return access ? { clip, access } : null;
}

/** A clip the caller may list, view or download; 404 CLIP_NOT_FOUND otherwise. */
export async function readableClip(ctx: AppContext, accountId: string, id: string): Promise<ClipRow> {
  const found = await accessibleClip(ctx, accountId, id);
  if (!found) throw new CamvaultError('CLIP_NOT_FOUND');
  return found.clip;
}

/** A clip the caller may delete (owner or manager); 404 CLIP_NOT_FOUND otherwise, a viewer included. */
export async function deletableClip(ctx: AppContext, accountId: string, id: string): Promise<ClipRow> {
  const found = await accessibleClip(ctx, accountId, id);
  if (!found || !mayDelete(found.access)) throw new CamvaultError('CLIP_NOT_FOUND');
  return found.clip;
}

/** A device bound to the caller; 404 DEVICE_NOT_FOUND otherwise (a grantee included). */
export async function ownDevice(ctx: AppContext, accountId: string, serial: string): Promise<DeviceRow> {
  const device = await ctx.store.getDevice(serial);
  if (!device || device.accountId !== accountId) throw new CamvaultError('DEVICE_NOT_FOUND');
  return device;
}
