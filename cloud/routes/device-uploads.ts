import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { z } from 'zod';
import {
  ClipId,
  CompleteRequest,
  PresignRequest,
  type CompleteResponse,
  type PresignResponse,
} from '../../shared/contracts/index.js';
import { CamvaultError } from '../../shared/errors.js';
import { clipObjectKey } from '../../shared/keys.js';
import { planLimits, type AppContext } from '../context.js';
import { requireDevice } from '../http/auth.js';
import { parseInput } from '../http/validate.js';
import type { ClipRow, UploadRow } from '../store/types.js';
import { clipJson } from './clip-json.js';
import { clipExpiresAt } from './plans.js';
import { abortQuietly, completeMultipart, declaredParts, openMultipartUpload, presignParts } from './multipart-uploads.js';

const DAY_MS = 24 * 3600_000;
/**
 * The device's clock is not trusted (DESIGN.md, "What the cloud does not take
 * on trust"): a clip may start at most 7 days before the cloud receives it and
 * 5 minutes after.
 */
export const CLIP_START_MAX_AGE_MS = 7 * DAY_MS;
export const CLIP_START_MAX_AHEAD_MS = 5 * 60_000;

const ClipIdParams = z.object({ clipId: ClipId }).strict();

/**
 * Presign and complete bodies list up to 1024 parts (a 5 GiB clip in 5 MiB
 * parts): about 35 KB and 65 KB of JSON, so these two routes take more than
 * the API's default body limit.
 */
const UPLOAD_BODY_LIMIT = 256 * 1024;

/** The camera's side of uploads: presign, then complete once the object is in the store. */
export async function deviceUploadRoutes(app: FastifyInstance, ctx: AppContext): Promise<void> {
  app.post('/v1/device/uploads', { bodyLimit: Math.max(UPLOAD_BODY_LIMIT, ctx.config.bodyLimitBytes) }, async (req) => {
    const device = await requireDevice(ctx, req);
    const body = parseInput(PresignRequest, req.body, 'body');
    // made only when something is logged: a child logger per request was a
    // measurable share of this hot route (bench/presign)
    let child: FastifyBaseLogger | undefined;
    const log = (): FastifyBaseLogger =>
      (child ??= req.log.child({ accountId: device.accountId, serial: device.serial, clipId: body.clipId }));

    // first, so a device retrying after a lost answer learns its clip is safe
    if (await ctx.store.getClip(body.clipId)) throw new CamvaultError('CLIP_ALREADY_UPLOADED');
    const pending = await ctx.store.getUpload(body.clipId);
    // a clip id is the device's; another device's pending upload is not ours to replace
    if (pending && pending.serial !== device.serial) throw new CamvaultError('CLIP_ALREADY_UPLOADED');

    // Above the threshold a clip goes in parts, so each part's MD5 is checked by
    // the store as it arrives and a broken connection costs one part, not the clip.
    const declared = declaredParts(body);
    const multipart = body.size > ctx.config.multipartThresholdBytes;
    if (multipart && !declared) {
      throw new CamvaultError(
        'MULTIPART_REQUIRED',
        `clips above ${ctx.config.multipartThresholdBytes} bytes must be uploaded in parts: send multipart.partBytes and the MD5 of each part`,
      );
    }

    const account = await ctx.store.getAccountById(device.accountId);
    const plan = planLimits(ctx, account?.plan ?? null);
    if (!account || !plan) throw new CamvaultError('PLAN_REQUIRED');

    const now = ctx.clock.now();
    const startMs = Date.parse(body.start);
    if (startMs < now - CLIP_START_MAX_AGE_MS || startMs > now + CLIP_START_MAX_AHEAD_MS) {
      throw new CamvaultError('CLIP_START_OUT_OF_RANGE');
    }

    // pending uploads count too: their objects may already sit in the store
    const used =
      (await ctx.store.sumClipBytes(account.id, now)) + (await ctx.store.sumPendingUploadBytes(account.id, body.clipId));
    if (used + body.size > plan.storageBytes) throw new CamvaultError('STORAGE_CAP_REACHED');

    const key = clipObjectKey(account.id, device.serial, body.clipId, startMs);
    const row: UploadRow = {
      clipId: body.clipId,
      serial: device.serial,
      accountId: account.id,
      key,
      size: body.size,
      md5: body.md5,
      sha256: body.sha256,
      startMs,
      durationMs: body.durationMs,
      kind: body.kind,
      createdAt: now,
      multipart: null,
    };

    if (multipart && declared) {
      const { uploadId, stored } = await openMultipartUpload(ctx, pending, key, body.size, declared, log());
      row.multipart = { uploadId, ...declared };
      await ctx.store.upsertUpload(row);
      const res: PresignResponse = await presignParts(ctx, body.clipId, key, body.size, row.multipart, stored);
      log().debug({ size: body.size, parts: res.parts.length, stored: stored.size }, 'multipart upload presigned');
      return res;
    }

    if (pending?.multipart) await abortQuietly(ctx, pending.key, pending.multipart.uploadId, log());
    await ctx.store.upsertUpload(row);
    const signed = await ctx.objects.presignPut(key, {
      contentLength: body.size,
      contentMd5: body.md5,
      contentType: 'video/mp4',
      expiresInSec: ctx.config.uploadUrlTtlSec,
    });
    const res: PresignResponse = {
      clipId: body.clipId,
      mode: 'single',
      method: 'PUT',
      url: signed.url,
      headers: signed.headers,
      expiresAt: new Date(signed.expiresAt).toISOString(),
    };
    return res;
  });

  app.post('/v1/device/uploads/:clipId/complete', { bodyLimit: Math.max(UPLOAD_BODY_LIMIT, ctx.config.bodyLimitBytes) }, async (req) => {
    const device = await requireDevice(ctx, req);
    const { clipId } = parseInput(ClipIdParams, req.params, 'params');
    const body = parseInput(CompleteRequest, req.body ?? {}, 'body');
    const log = req.log.child({ accountId: device.accountId, serial: device.serial, clipId });

    const upload = await ctx.store.getUpload(clipId);
    if (!upload || upload.serial !== device.serial || upload.accountId !== device.accountId) {
      // completing twice returns the same clip (the first answer may have been lost)
      const done = await ctx.store.getClip(clipId);
      if (done && done.serial === device.serial && done.accountId === device.accountId) {
        const res: CompleteResponse = { clip: clipJson(done) };
        return res;
      }
      throw new CamvaultError('UPLOAD_NOT_FOUND');
    }

    const account = await ctx.store.getAccountById(device.accountId);
    const plan = planLimits(ctx, account?.plan ?? null);
    const { multipart } = upload;
    if (multipart) {
      if (!plan) {
        // the plan ended between presign and complete: assemble nothing unpaid for
        await abortQuietly(ctx, upload.key, multipart.uploadId, log);
        await ctx.objects.deleteMany([upload.key]);
        await ctx.store.deleteUpload(clipId);
        throw new CamvaultError('PLAN_REQUIRED');
      }
      await completeMultipart(ctx, { ...upload, multipart }, body.parts, log);
    } else {
      if (body.parts) throw new CamvaultError('BAD_REQUEST', 'this upload is a single PUT: complete it without parts');
      const head = await ctx.objects.head(upload.key);
      if (!head) throw new CamvaultError('UPLOAD_OBJECT_MISSING');
      // a store that knows no MD5 (S3 with SSE-KMS) is trusted on size, but an
      // object assembled from parts (an earlier multipart try) is not this PUT
      const md5Ok = head.md5 !== null ? head.md5 === upload.md5 : !(head.etag ?? '').includes('-');
      if (head.size !== upload.size || !md5Ok) {
        await ctx.objects.deleteMany([upload.key]);
        log.warn({ expected: upload.size, stored: head.size }, 'uploaded object does not match its declaration');
        throw new CamvaultError('UPLOAD_MISMATCH');
      }
      if (!plan) {
        // the plan ended between presign and complete: keep nothing unpaid for
        await ctx.objects.deleteMany([upload.key]);
        await ctx.store.deleteUpload(clipId);
        throw new CamvaultError('PLAN_REQUIRED');
      }
    }

    const now = ctx.clock.now();
    // expiry counts from the earlier of the device's stamp and our own clock:
    // a clip stamped in the future must not outlive its plan (the same rule
    // recomputes it when the plan changes: Store.choosePlan)
    const expiresAt = clipExpiresAt(upload.startMs, now, plan.retentionDays);
    const row: ClipRow = {
      id: clipId,
      accountId: upload.accountId,
      serial: upload.serial,
      key: upload.key,
      kind: upload.kind,
      startMs: upload.startMs,
      durationMs: upload.durationMs,
      size: upload.size,
      md5: upload.md5,
      sha256: upload.sha256,
      uploadedAt: now,
      expiresAt,
    };
    const clip = await ctx.store.completeUpload(row);
    log.info({ size: clip.size }, 'clip uploaded');
    const res: CompleteResponse = { clip: clipJson(clip) };
    return res;
  });
}
