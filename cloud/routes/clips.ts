import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import {
  ClipId,
  ClipListQuery,
  DeleteClipsRequest,
  ViewQuery,
  type ClipListResponse,
  type DeleteClipsResponse,
  type ViewResponse,
} from '../../shared/contracts/index.js';
import { CamvaultError } from '../../shared/errors.js';
import { isClipId } from '../../shared/ids.js';
import type { AppContext } from '../context.js';
import { accessibleClip, deletableClip, mayDelete, readableClip, shareLookup } from '../http/access.js';
import { requireSubscriber } from '../http/auth.js';
import { parseInput } from '../http/validate.js';
import { experienceEvent } from '../experience.js';
import { securityLog } from '../security-log.js';
import type { ClipFilter, ClipRow } from '../store/types.js';
import { clipJson } from './clip-json.js';

const IdParams = z.object({ id: ClipId }).strict();
/** clips deleted per round of POST /v1/clips/delete: one object-store call and one transaction each */
const DELETE_PAGE = 500;

/** An opaque cursor: the (start, id) of the last clip on the page. Exported for bench/api. */
export function encodeCursor(row: Pick<ClipRow, 'startMs' | 'id'>): string {
  return Buffer.from(JSON.stringify([row.startMs, row.id])).toString('base64url');
}

function decodeCursor(cursor: string): { startMs: number; id: string } {
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (Array.isArray(value) && value.length === 2 && Number.isSafeInteger(value[0]) && isClipId(value[1])) {
      return { startMs: value[0] as number, id: value[1] as string };
    }
  } catch {
    // fall through
  }
  throw new CamvaultError('VALIDATION_FAILED', undefined, [{ path: 'query.cursor', message: 'invalid cursor' }]);
}

/** "20261129T100000Z": a file-name-safe UTC time */
function compactTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}/, '').replace(/[-:]/g, '');
}

/**
 * The subscriber's clips. Every route looks a clip up through http/access.ts:
 * the owner, and the grantees of a share of the clip's camera (a viewer to
 * read, a manager to read and delete), see it; to anyone else, another
 * account's clip (P2) and an expired one (P3) both answer 404 CLIP_NOT_FOUND,
 * exactly like a clip that never existed.
 */
export async function clipRoutes(app: FastifyInstance, ctx: AppContext): Promise<void> {
  /** objects first, then rows; a clip whose object could not be deleted keeps its row, to try again */
  async function deleteClips(clips: ClipRow[]): Promise<number> {
    if (clips.length === 0) return 0;
    const result = await ctx.objects.deleteMany(clips.map((c) => c.key));
    const gone = new Set(result.deleted);
    if (result.failed.length > 0) {
      app.log.error({ failed: result.failed.length }, 'some clip objects could not be deleted');
    }
    const deleted = await ctx.store.deleteClips(clips.filter((c) => gone.has(c.key)).map((c) => c.id));
    if (result.failed.length > 0) throw new CamvaultError('INTERNAL');
    return deleted;
  }

  /**
   * Without ?serial= the caller's own clips. With ?serial= of a camera shared
   * with the caller, that camera's clips owned by the account that shared it;
   * of any other serial, the caller's own clips of it. Either way one
   * account's clips: the query stays on clips_by_account_start, and the
   * cursor's (start, id) order is the same whoever lists.
   */
  app.get('/v1/clips', async (req) => {
    const auth = await requireSubscriber(ctx, req);
    const q = parseInput(ClipListQuery, req.query, 'query');
    const share = q.serial !== undefined ? await ctx.store.getShare(q.serial, auth.accountId) : null;
    const filter: ClipFilter = {
      accountId: share ? share.grantedBy : auth.accountId,
      serial: q.serial,
      fromMs: q.from !== undefined ? Date.parse(q.from) : undefined,
      toMs: q.to !== undefined ? Date.parse(q.to) : undefined,
      kind: q.kind,
      visibleAt: ctx.clock.now(),
      after: q.cursor !== undefined ? decodeCursor(q.cursor) : undefined,
      limit: q.limit + 1,
    };
    const rows = await ctx.store.listClips(filter);
    const page = rows.slice(0, q.limit);
    const last = page[page.length - 1];
    const res: ClipListResponse = {
      clips: page.map(clipJson),
      nextCursor: rows.length > q.limit && last ? encodeCursor(last) : null,
    };
    return res;
  });

  app.get('/v1/clips/:id', async (req) => {
    const auth = await requireSubscriber(ctx, req);
    const { id } = parseInput(IdParams, req.params, 'params');
    return clipJson(await readableClip(ctx, auth.accountId, id));
  });

  /** a short-lived signed GET of the clip's object (P2, P10); as an attachment when asked */
  async function signedView(clip: ClipRow, asDownload: boolean): Promise<ViewResponse> {
    const signed = await ctx.objects.presignGet(clip.key, {
      expiresInSec: ctx.config.viewUrlTtlSec,
      downloadName: asDownload ? `${clip.serial}-${compactTime(clip.startMs)}.mp4` : undefined,
    });
    return { url: signed.url, expiresAt: new Date(signed.expiresAt).toISOString() };
  }

  app.get('/v1/clips/:id/view', async (req) => {
    const auth = await requireSubscriber(ctx, req);
    const { id } = parseInput(IdParams, req.params, 'params');
    const { download } = parseInput(ViewQuery, req.query, 'query');
    const clip = await readableClip(ctx, auth.accountId, id);
    await experienceEvent(ctx, req, auth.accountId, 'clip-viewed');
    return signedView(clip, download === 'true' || download === '1');
  });

  /** for curl and plain links: a redirect to the signed download URL */
  app.get('/v1/clips/:id/download', async (req, reply) => {
    const auth = await requireSubscriber(ctx, req);
    const { id } = parseInput(IdParams, req.params, 'params');
    const clip = await readableClip(ctx, auth.accountId, id);
    await experienceEvent(ctx, req, auth.accountId, 'clip-viewed');
    const { url } = await signedView(clip, true);
    return reply.header('cache-control', 'no-store').redirect(url, 302);
  });

  app.delete('/v1/clips/:id', async (req, reply) => {
    const auth = await requireSubscriber(ctx, req);
    const { id } = parseInput(IdParams, req.params, 'params');
    const clip = await deletableClip(ctx, auth.accountId, id);
    await deleteClips([clip]);
    req.log.info({ accountId: auth.accountId, owner: clip.accountId, clipId: id }, 'clip deleted');
    await securityLog(ctx, req, 'clips-deleted', { accountId: auth.accountId });
    return reply.code(204).send();
  });

  /** every clip of one account's camera that starts in [from, to), a page at a time */
  async function deleteRange(accountId: string, serial: string, fromMs: number, toMs: number): Promise<number> {
    const filter: ClipFilter = { accountId, serial, fromMs, toMs, visibleAt: ctx.clock.now(), limit: DELETE_PAGE };
    let deleted = 0;
    // each round deletes what it read, so the next round starts from the top again
    for (;;) {
      const page = await ctx.store.listClips(filter);
      if (page.length === 0) break;
      const n = await deleteClips(page);
      deleted += n;
      if (page.length < DELETE_PAGE || n === 0) break;
    }
    return deleted;
  }

  /**
   * By ids: the listed clips the caller may delete (its own, and those a
   * manager's share covers); any other id is skipped as if it did not exist.
   * By a serial and a range: the caller's own clips of that camera, plus, when
   * it manages a share of the camera, the sharing owner's clips of it.
   */
  app.post('/v1/clips/delete', async (req) => {
    const auth = await requireSubscriber(ctx, req);
    const body = parseInput(DeleteClipsRequest, req.body, 'body');
    let deleted = 0;
    if ('ids' in body) {
      const shareOf = shareLookup(ctx, auth.accountId);
      const allowed: ClipRow[] = [];
      for (const id of new Set(body.ids)) {
        const found = await accessibleClip(ctx, auth.accountId, id, shareOf);
        if (found && mayDelete(found.access)) allowed.push(found.clip);
      }
      for (let i = 0; i < allowed.length; i += DELETE_PAGE) deleted += await deleteClips(allowed.slice(i, i + DELETE_PAGE));
    } else {
      const [fromMs, toMs] = [Date.parse(body.from), Date.parse(body.to)];
      deleted += await deleteRange(auth.accountId, body.serial, fromMs, toMs);
      const share = await ctx.store.getShare(body.serial, auth.accountId);
      if (share && mayDelete(share.role)) deleted += await deleteRange(share.grantedBy, body.serial, fromMs, toMs);
    }
    req.log.info({ accountId: auth.accountId, deleted }, 'clips deleted');
    if (deleted > 0) await securityLog(ctx, req, 'clips-deleted', { accountId: auth.accountId });
    const res: DeleteClipsResponse = { deleted };
    return res;
  });
}
