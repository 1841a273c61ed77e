import { describe, expect, it } from 'vitest';
import { alertMessage, emailDue } from '../../../agent/email/alerts.js';
import { EmailSendError, toSendError } from '../../../agent/email/mailer.js';
import { checkPassword, EmailSettingsError, isLoopbackHost, parseEmailSettings } from '../../../agent/email/settings.js';
import { snapshotArgs, testPictureArgs } from '../../../agent/email/snapshot.js';

const base = {
  host: 'smtp.example.com',
  port: 587,
  security: 'starttls',
  user: 'alerts@example.com',
  recipients: ['owner@example.com'],
  from: 'alerts@example.com',
};

function message(input: unknown, development = false): string {
  try {
    parseEmailSettings(input, { development });
  } catch (err) {
    expect(err).toBeInstanceOf(EmailSettingsError);
    return (err as Error).message;
  }
  throw new Error('expected the settings to be refused');
}

describe('email settings', () => {
  it('takes valid settings and defaults the interval to 10 minutes', () => {
    const s = parseEmailSettings(base, { development: false });
    expect(s).toEqual({ ...base, minIntervalMinutes: 10 });
  });

  it('takes 1 to 10 recipients and refuses 0, 11, a duplicate and a non-address, naming the field', () => {
    const ten = Array.from({ length: 10 }, (_, i) => `r${i}@example.com`);
    expect(parseEmailSettings({ ...base, recipients: ten }, { development: false }).recipients).toHaveLength(10);
    expect(message({ ...base, recipients: [] })).toBe('email settings: recipients: must name at least one address');
    expect(message({ ...base, recipients: [...ten, 'x@example.com'] })).toBe('email settings: recipients: must name at most 10 addresses');
    expect(message({ ...base, recipients: ['a@example.com', 'A@example.com'] })).toBe('email settings: recipients: must not name an address twice');
    expect(message({ ...base, recipients: ['owner@example.com', 'not-an-address'] })).toBe('email settings: recipients.1: must be an email address');
  });

  it('never quotes a value in its messages (the user may be an address, the host private)', () => {
    const secretish = 'secret-user\u0007name';
    const msg = message({ ...base, user: secretish });
    expect(msg).toBe('email settings: user: must not contain control characters');
    expect(message({ ...base, host: 'bad host!' })).not.toContain('bad host');
  });

  it('refuses security "none" to a host that is not loopback, unless development', () => {
    const plain = { ...base, security: 'none', port: 25 };
    expect(message(plain)).toMatch(/^email settings: security: "none" sends the password in clear/);
    expect(parseEmailSettings(plain, { development: true }).security).toBe('none');
    for (const host of ['127.0.0.1', '127.1.2.3', 'localhost', '::1']) {
      expect(parseEmailSettings({ ...plain, host }, { development: false }).host).toBe(host);
    }
  });

  it('knows loopback hosts', () => {
    expect(isLoopbackHost('127.0.0.1')).toBe(true);
    expect(isLoopbackHost('LOCALHOST')).toBe(true);
    expect(isLoopbackHost('::1')).toBe(true);
    expect(isLoopbackHost('128.0.0.1')).toBe(false);
    expect(isLoopbackHost('localhost.example.com')).toBe(false);
    expect(isLoopbackHost('10.0.0.1')).toBe(false);
  });

  it('refuses a bad port, security, interval and an unknown field', () => {
    expect(message({ ...base, port: 0 })).toBe('email settings: port: must be 1-65535');
    expect(message({ ...base, port: 70000 })).toBe('email settings: port: must be 1-65535');
    expect(message({ ...base, security: 'ssl' })).toMatch(/^email settings: security: /);
    expect(message({ ...base, minIntervalMinutes: 0 })).toBe('email settings: minIntervalMinutes: must be at least 1');
    expect(message({ ...base, password: 'x' })).toBe('email settings: unknown field "password"');
    expect(message({ ...base, host: undefined })).toBe('email settings: host: is required');
  });

  it('checks the password without quoting it', () => {
    expect(checkPassword('p')).toBe('p');
    expect(() => checkPassword('')).toThrow('the SMTP password is empty');
    expect(() => checkPassword('two\nlines')).toThrow(/line break/);
    expect(() => checkPassword('x'.repeat(1025))).toThrow(/longer than 1024/);
    try {
      checkPassword('hunter2\r');
    } catch (err) {
      expect((err as Error).message).not.toContain('hunter2');
    }
  });
});

describe('email alert pieces', () => {
  it('rate limit: due when never tried, after the interval, or when the clock went back', () => {
    const t = Date.parse('2026-03-01T12:00:00Z');
    expect(emailDue(undefined, t, 10)).toBe(true);
    expect(emailDue(t, t + 9 * 60_000 + 59_999, 10)).toBe(false);
    expect(emailDue(t, t + 10 * 60_000, 10)).toBe(true);
    expect(emailDue(t + 3_600_000, t, 10)).toBe(true);
  });

  it('the alert names the camera, the time and the clip, and no setting', () => {
    const m = alertMessage({ serial: 'CAM00000001', motionAt: Date.parse('2026-03-01T12:34:56.789Z'), clipId: '01JNABCDEFGHJKMNPQRSTVWXYZ', snapshot: true });
    expect(m.subject).toBe('camvault: motion on CAM00000001 at 2026-03-01 12:34:56 UTC');
    expect(m.text).toContain('Clip: 01JNABCDEFGHJKMNPQRSTVWXYZ');
    expect(m.text).toContain('attached picture');
    expect(m.snapshotName).toBe('CAM00000001-2026-03-01T12-34-56-789Z.jpg');
    expect(alertMessage({ serial: 'CAM00000001', motionAt: 0, clipId: null, snapshot: false }).text).toContain('No picture');
  });

  it('ffmpeg takes one JPEG frame at the motion, seeking before the input', () => {
    expect(snapshotArgs('/d/clip.mp4', 2500)).toEqual([
      '-nostdin', '-hide_banner', '-loglevel', 'error', '-ss', '2.500', '-i', '/d/clip.mp4',
      '-map', '0:v:0', '-frames:v', '1', '-q:v', '5', '-f', 'image2', '-c:v', 'mjpeg', 'pipe:1',
    ]);
    expect(snapshotArgs('/d/clip.mp4', -5)[5]).toBe('0.000');
    expect(testPictureArgs()).toContain('testsrc2=size=640x360:rate=1');
  });

  it('a send failure keeps its codes only', () => {
    const e = toSendError(Object.assign(new Error('Invalid login: 535 5.7.8 user alerts@example.com rejected'), { code: 'EAUTH', responseCode: 535, command: 'AUTH PLAIN dXNlcgBwYXNz' }));
    expect(e).toBeInstanceOf(EmailSendError);
    expect(e.message).toBe('EAUTH (SMTP 535 on AUTH PLAIN)');
    expect(e.summary).toBe('EAUTH 535');
    expect(e.message).not.toContain('alerts@example.com');
    expect(toSendError(new Error('weird')).message).toBe('ESEND');
    expect(toSendError({ code: 'not a code with spaces' }).code).toBe('ESEND');
  });
});
