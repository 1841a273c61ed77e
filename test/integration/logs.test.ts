import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../shared/log.js';
import { api, createBindCode, registerAndLogin, setPlan, startTestCloud, type TestCloud } from '../helpers/cloud.js';
import { uploadClip } from '../helpers/upload.js';

describe('P11: the cloud\'s logs hold no personal or secret data', () => {
  let cloud: TestCloud;
  let lines = '';
  beforeAll(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines += chunk.toString();
        done();
      },
    });
    cloud = await startTestCloud({ logger: createLogger({ level: 'trace' }, sink) });
  });
  afterAll(async () => {
    await cloud?.close();
  });

  it('a whole session, upload and view leave no email, password, token, bind code or URL signature in the log', async () => {
    const email = 'private.person@example.com';
    const password = 'my very secret password';
    const acct = await registerAndLogin(cloud.url, { email, password });
    await api(cloud.url, 'POST', '/v1/sessions', { body: { email, password: 'a wrong secret password' } });
    await api(cloud.url, 'POST', '/v1/accounts', { body: { email, password: 7 } });
    await setPlan(cloud.url, acct.token, 'basic');
    const bindCode = await createBindCode(cloud.url, acct.token);
    const claim = await api(cloud.url, 'POST', '/v1/device/claim', { body: { serial: 'LOGCHECK0001', model: 'M', bindCode } });
    const device = { serial: 'LOGCHECK0001', token: claim.body.deviceToken as string, mqtt: claim.body.mqtt as { username: string; password: string } };
    const up = await uploadClip(cloud.url, device, { body: randomBytes(500) });
    expect(up.complete?.status).toBe(200);
    const view = await api(cloud.url, 'GET', `/v1/clips/${up.clipId}/view`, { token: acct.token });
    await (await fetch(view.body.url)).arrayBuffer();

    expect(lines).toContain('clip uploaded');
    const signatures = [up.presign.body.url, view.body.url].map((u: string) => new URL(u).searchParams.get('X-Camvault-Signature'));
    for (const secret of [email, password, bindCode, 'a wrong secret password', acct.token, device.token, device.mqtt.password, ...signatures]) {
      expect(lines).not.toContain(secret as string);
    }
  });
});
