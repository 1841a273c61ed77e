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
  /** base64 MD5 when the store knows it (the ETag of a single-part S3 object) */
  md5: string | null;
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
  /** start-up check: one clear error when the store is unusable */
  check(): Promise<void>;
  close(): Promise<void>;
}
