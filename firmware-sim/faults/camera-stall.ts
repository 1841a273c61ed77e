/**
 * The stall fault: the camera stops sending without closing the connection
 * (SimCamera.stall()), then sends again. The agent's recorder must notice
 * (ffmpeg's read timeout, or its watchdog), restart ffmpeg, count the stall,
 * and record again once data flows (test/integration/recorder-stall.test.ts
 * holds the recorder's side).
 */
import type { SimCamera } from '../camera.js';

/** Stalls the camera now and resumes it after `ms`. The returned function resumes it early (idempotent). */
export function stallFor(camera: Pick<SimCamera, 'stall' | 'resume' | 'stalled'>, ms: number): () => void {
  camera.stall();
  let done = false;
  const resume = (): void => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    if (camera.stalled) camera.resume();
  };
  const timer = setTimeout(resume, ms);
  return resume;
}
