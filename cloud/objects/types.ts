/**
 * The object store contract every driver keeps (local, s3). One contract suite
 * (test/contract/object-store.contract.ts) runs against each driver.
 */
export interface PresignedRequest {
  method: 'PUT' | 'GET';
  /** absolute URL */
  url: string;
  /** headers the client must send, exactly */
  headers: Record<string, string>;
  /** epoch ms */
  expiresAt: number;
}

export interface PresignPutOptions {
  contentLength: number;
  /** base64 MD5 of the body */
  contentMd5: string;
  expiresInSec: number;
  contentType?: string;
}

export interface PresignGetOptions {
  expiresInSec: number;
  /** when set, the response carries Content-Disposition: attachment; filename=… */
  downloadName?: string;
}

export interface ObjectHead {
  size: number;
  /** base64 MD5 when the store knows it (the ETag of a single-part S3 object); null for an object assembled from parts */
  md5: string | null;
  /**
   * The entity tag, without quotes: the hex MD5 for a single PUT, "<hex>-<parts>"
   * for an object assembled from parts (shared/multipart.ts, multipartEtag).
   * null when the store gave none.
   */
  etag: string | null;
}

export interface CreateMultipartOptions {
  contentType?: string;
}

export interface PresignPartOptions {
  contentLength: number;
  /** base64 MD5 of the part */
  contentMd5: string;
  expiresInSec: number;
}

export interface CompletedPart {
  partNumber: number;
  /** with or without quotes */
  etag: string;
}

export interface StoredPart {
  partNumber: number;
  /** without quotes */
  etag: string;
  size: number;
}

export interface OpenMultipartUpload {
  key: string;
  uploadId: string;
  /** epoch ms */
  initiatedAt: number;
}

export interface DeleteResult {
  deleted: string[];
  failed: { key: string; error: string }[];
}

export interface ListResult {
  objects: { key: string; size: number; lastModified: number }[];
  nextCursor: string | null;
}

export interface ObjectStore {
  readonly driver: 'local' | 's3';
  presignPut(key: string, opts: PresignPutOptions): Promise<PresignedRequest>;
  presignGet(key: string, opts: PresignGetOptions): Promise<PresignedRequest>;
  /** null when there is no such object */
  head(key: string): Promise<ObjectHead | null>;
  /** at most 1000 keys a call to the backend; missing keys count as deleted */
  deleteMany(keys: string[]): Promise<DeleteResult>;
  list(prefix: string, cursor?: string | null, limit?: number): Promise<ListResult>;

  // Multipart uploads (S3's CreateMultipartUpload / UploadPart / Complete / Abort).
  // The store enforces S3's rules on every driver: parts 1..10000, each PUT
  // through a URL that signs its length and MD5, every part but the last at
  // least 5 MiB. Errors are CamvaultErrors: MULTIPART_UPLOAD_NOT_FOUND for an
  // unknown (aborted, completed) upload, MULTIPART_PART_INVALID for a part list
  // the store refuses.
  /** starts an upload to `key`; the object appears only when it is completed */
  createMultipartUpload(key: string, opts?: CreateMultipartOptions): Promise<string>;
  /** a URL for one part; offline (it does not check that the upload exists) */
  presignUploadPart(key: string, uploadId: string, partNumber: number, opts: PresignPartOptions): Promise<PresignedRequest>;
  /** the parts stored so far, by part number */
  listParts(key: string, uploadId: string): Promise<StoredPart[]>;
  /**
   * Assembles the listed parts, in order, into the object at `key`. Each listed
   * part must be stored with that ETag; parts not listed are dropped. The
   * upload is gone afterwards. Returns the object's ETag, without quotes.
   */
  completeMultipartUpload(key: string, uploadId: string, parts: CompletedPart[]): Promise<{ etag: string }>;
  /** drops the upload and its parts; an unknown upload counts as aborted */
  abortMultipartUpload(key: string, uploadId: string): Promise<void>;
  /** uploads started and neither completed nor aborted, under a prefix (for the orphan sweep) */
  listMultipartUploads(prefix: string): Promise<OpenMultipartUpload[]>;
  /** start-up check: one clear error when the store is unusable */
  check(): Promise<void>;
  close(): Promise<void>;
}
