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
import { requireSubscriber } from '../http/auth.js';
import { parseInput } from '../http/validate.js';
import type { ClipFilter, ClipRow } from '../store/types.js';
import { clipJson } from './clip-json.js';

const IdParams = z.object({ id: ClipId }).strict();
/** clips deleted per round of POST /v1/clips/delete: one object-store call and one transaction each */
const DELETE_PAGE = 500;

/** An opaque cursor: the (start, id) of the last clip on the page. */
function encodeCursor(row: ClipRow): string {
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
 * The subscriber's clips. Every route looks a clip up through ownClip, so
 * another account's clip (P2) and an expired one (P3) both answer 404
 * CLIP_NOT_FOUND, exactly like a clip that never existed.
 */
export async function clipRoutes(app: FastifyInstance, ctx: AppContext): Promise<void> {
  async function ownClip(accountId: string, id: string): Promise<ClipRow> {
    const clip = await ctx.store.getClip(id);
    if (!clip || clip.accountId !== accountId || clip.expiresAt <= ctx.clock.now()) {
      throw new CamvaultError('CLIP_NOT_FOUND');
    }
    return clip;
  }

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

  app.get('/v1/clips', async (req) => {
    const auth = await requireSubscriber(ctx, req);
    const q = parseInput(ClipListQuery, req.query, 'query');
    const filter: ClipFilter = {
      accountId: auth.accountId,
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
    return clipJson(await ownClip(auth.accountId, id));
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
    const clip = await ownClip(auth.accountId, id);
    return signedView(clip, download === 'true' || download === '1');
  });

  /** for curl and plain links: a redirect to the signed download URL */
  app.get('/v1/clips/:id/download', async (req, reply) => {
    const auth = await requireSubscriber(ctx, req);
    const { id } = parseInput(IdParams, req.params, 'params');
    const clip = await ownClip(auth.accountId, id);
    const { url } = await signedView(clip, true);
    return reply.header('cache-control', 'no-store').redirect(url, 302);
  });

  app.delete('/v1/clips/:id', async (req, reply) => {
    const auth = await requireSubscriber(ctx, req);
    const { id } = parseInput(IdParams, req.params, 'params');
    const clip = await ownClip(auth.accountId, id);
    await deleteClips([clip]);
    req.log.info({ accountId: auth.accountId, clipId: id }, 'clip deleted');
    return reply.code(204).send();
  });

  app.post('/v1/clips/delete', async (req) => {
    const auth = await requireSubscriber(ctx, req);
    const body = parseInput(DeleteClipsRequest, req.body, 'body');
    const now = ctx.clock.now();
    let deleted = 0;
    if ('ids' in body) {
      const mine: ClipRow[] = [];
      for (const id of new Set(body.ids)) {
        const clip = await ctx.store.getClip(id);
        // not ours, or already expired: skipped as if it did not exist
        if (clip && clip.accountId === auth.accountId && clip.expiresAt > now) mine.push(clip);
      }
      for (let i = 0; i < mine.length; i += DELETE_PAGE) deleted += await deleteClips(mine.slice(i, i + DELETE_PAGE));
    } else {
      const filter: ClipFilter = {
        accountId: auth.accountId,
        serial: body.serial,
        fromMs: Date.parse(body.from),
        toMs: Date.parse(body.to),
        visibleAt: now,
        limit: DELETE_PAGE,
      };
      // each round deletes what it read, so the next round starts from the top again
      for (;;) {
        const page = await ctx.store.listClips(filter);
        if (page.length === 0) break;
        const n = await deleteClips(page);
        deleted += n;
        if (page.length < DELETE_PAGE || n === 0) break;
      }
    }
    req.log.info({ accountId: auth.accountId, deleted }, 'clips deleted');
    const res: DeleteClipsResponse = { deleted };
    return res;
  });
}
