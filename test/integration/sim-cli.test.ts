/**
 * `npm run sim -- --cameras 2 --agent …` as a developer runs it, against a
 * real cloud on port 0: two cameras with their agents, claimed through the
 * account's session (the password from CAMVAULT_SIM_PASSWORD), a scheduled
 * power cut on the second, uploads arriving in the cloud, and Ctrl-C (SIGINT
 * to the process group, as a terminal sends it) leaving no process behind.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { descendants, powerCut, processRunning } from '../../firmware-sim/faults/power-cut.js';
import { readJournalClips } from '../helpers/agent-process.js';
import { api, registerAndLogin, setPlan, startTestCloud, type TestAccount, type TestCloud } from '../helpers/cloud.js';
import { waitFor } from '../helpers/media.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SERIALS = ['SIMCLI000001', 'SIMCLI000002'];
let cloud: TestCloud;
let account: TestAccount;
let dir: string;
let simPid: number | undefined;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'camvault-sim-cli-'));
  cloud = await startTestCloud();
  account = await registerAndLogin(cloud.url);
  await setPlan(cloud.url, account.token, 'standard');
});

afterAll(async () => {
  // only if the test failed before its own clean stop
  if (simPid !== undefined && processRunning(simPid)) {
    for (const p of descendants(simPid)) powerCut({ pid: p });
    powerCut({ pid: simPid });
  }
  await cloud?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function cloudClipIds(serial: string): Promise<string[]> {
  const page = await api(cloud.url, 'GET', `/v1/clips?serial=${serial}&limit=100`, { token: account.token });
  expect(page.status).toBe(200);
  return (page.body.clips as { id: string }[]).map((c) => c.id);
}

describe('npm run sim with agents', () => {
  it('starts two cameras and their agents, claims them through the account, rides out a scheduled power cut, uploads, and stops on Ctrl-C leaving no process', async () => {
    const dataDir = join(dir, 'data');
    const child = spawn(
      'npm',
      [
        'run', 'sim', '--',
        '--cameras', '2', '--serial', SERIALS[0] as string,
        '--width', '320', '--height', '180', '--fps', '10', '--gop', '1', '--motion-every', '0',
        '--agent', '--cloud', cloud.url, '--email', account.email,
        '--segment-seconds', '2', '--data-dir', dataDir,
        '--fault', 'power-cut#2@6s+1s',
      ],
      // its own process group: the test's SIGINT reaches it, its npm and tsx as a terminal's Ctrl-C would
      { cwd: ROOT, detached: true, env: { ...process.env, CAMVAULT_SIM_PASSWORD: account.password }, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    simPid = child.pid;
    let out = '';
    child.stdout?.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.stderr?.setEncoding('utf8').on('data', (c: string) => (out += c));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));

    try {
      await waitFor(() => /SIMCLI000002 +power back: agent started again/.test(out), 60_000, 'the power cut and the restart');
      const afterCut = { one: (await cloudClipIds(SERIALS[0] as string)).length, two: (await cloudClipIds(SERIALS[1] as string)).length };
      // both cameras keep uploading, the one that lost power too
      const deadline = Date.now() + 40_000;
      for (;;) {
        const [a, b] = [(await cloudClipIds(SERIALS[0] as string)).length, (await cloudClipIds(SERIALS[1] as string)).length];
        if (a >= afterCut.one + 2 && b >= afterCut.two + 2) break;
        if (Date.now() > deadline) throw new Error(`uploads after the power cut: ${a - afterCut.one} and ${b - afterCut.two}\n${out}`);
        await new Promise((r) => setTimeout(r, 500));
      }
    } catch (err) {
      console.log(out);
      throw err;
    }
    const tree = descendants(child.pid as number);
    // the sim's two camera encoders, two agents and their two ffmpegs at least
    expect(tree.length).toBeGreaterThanOrEqual(6);
    process.kill(-(child.pid as number), 'SIGINT');
    const exit = await Promise.race([exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 45_000))]);
    // npm ends itself with the signal its script got; the simulator's own clean end is its last line
    expect(exit?.code === 0 || exit?.signal === 'SIGINT', JSON.stringify(exit)).toBe(true);
    expect(out.trimEnd().split('\n').at(-1)).toMatch(/stopped: no agent, ffmpeg or camera left running$/);

    // no process left: the whole tree as it was, and anything naming the data folder
    expect(tree.filter(processRunning)).toEqual([]);
    const pgrep = spawnSync('pgrep', ['-f', dataDir], { encoding: 'utf8' });
    expect(pgrep.stdout.trim()).toBe('');

    // one line per event, and never the password
    expect(out).toContain('logged in; 2 bind codes made (one per camera)');
    expect(out).toMatch(/SIMCLI000002 +power cut: SIGKILL to agent pid \d+ and its ffmpeg/);
    expect(out).toMatch(/SIMCLI000001 +clip \w{26} uploaded \(continuous/);
    expect(out).toContain('stopped: no agent, ffmpeg or camera left running');
    expect(out).not.toContain(account.password);

    // what each agent journaled as uploaded is in the cloud, once
    for (const serial of SERIALS) {
      const rows = readJournalClips(join(dataDir, serial));
      const uploaded = rows.filter((r) => r.state === 'uploaded').map((r) => r.id).sort();
      expect(uploaded.length).toBeGreaterThanOrEqual(3);
      expect((await cloudClipIds(serial)).sort()).toEqual(uploaded);
      expect(rows.filter((r) => r.state === 'failed' || r.state === 'lost')).toEqual([]);
    }
    simPid = undefined;
  }, 180_000);
});
