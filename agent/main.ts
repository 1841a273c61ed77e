import { parseArgs } from 'node:util';
import { createLogger } from '../shared/log.js';
import { Agent } from './agent.js';
import { AgentConfigError, loadAgentConfig, type AgentConfig } from './config.js';
import { emailCommand } from './email/cli.js';
import { formatDeviceStatus, readDeviceStatus, type DeviceStatus } from './status.js';

/**
 * npm run agent -- run [--config FILE]
 * npm run agent -- status [--config FILE] [--json]
 * npm run agent -- email set|test|disable [--config FILE] …   (agent/email/cli.ts)
 */
const USAGE = 'usage: npm run agent -- run [--config FILE] | status [--config FILE] [--json] | email set|test|disable [--config FILE]';

function fail(message: string, code: number): never {
  console.error(`agent: ${message}`);
  process.exit(code);
}

function config(file: string | undefined): AgentConfig {
  try {
    return loadAgentConfig({ file, env: process.env });
  } catch (err) {
    if (err instanceof AgentConfigError) fail(err.message, 1);
    throw err;
  }
}

async function run(cfg: AgentConfig): Promise<void> {
  const logger = createLogger({ name: 'agent', level: cfg.logLevel });
  let agent: Agent;
  try {
    agent = await Agent.start({ config: cfg, logger });
  } catch (err) {
    fail(err instanceof Error ? err.message : String(err), 1);
  }
  logger.info({ serial: cfg.serial, channel: cfg.channel, segmentSeconds: cfg.segmentSeconds }, 'agent running');
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    signals += 1;
    if (signals > 1) {
      console.error(`agent: ${sig} again, exiting now`);
      process.exit(130);
    }
    logger.info({ signal: sig }, 'stopping');
    agent.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === 'email') {
    const code = await emailCommand(rest, { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env });
    process.exit(code);
  }
  if (command !== 'run' && command !== 'status') fail(command ? `unknown command ${JSON.stringify(command)}\n${USAGE}` : USAGE, 2);
  let values: { config?: string; json?: boolean };
  try {
    ({ values } = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' }, json: { type: 'boolean' } }, strict: true }));
  } catch (err) {
    fail(`${(err as Error).message}\n${USAGE}`, 2);
  }
  const cfg = config(values.config);
  if (command === 'status') {
    let st: DeviceStatus;
    try {
      st = await readDeviceStatus(cfg);
    } catch (err) {
      fail((err as Error).message, 1);
    }
    console.log(values.json ? JSON.stringify(st) : formatDeviceStatus(st));
    return;
  }
  await run(cfg);
}

void main(process.argv.slice(2));
